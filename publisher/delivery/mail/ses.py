"""Amazon SES (API v2) delivery: SendEmail with our finished bytes as Content.Raw, one message per call.

botocore (a runtime dependency of this module only) builds and SigV4-signs the request, so nothing of
AWS's signing is reimplemented here. Each message goes with FromEmailAddress (the envelope sender),
Destination.ToAddresses (the envelope recipient), the configuration set when one is configured (it is
what publishes bounces and complaints to SNS), and an EmailTag carrying our delivery id, so an SES
event can be traced back to its ledger row. SES answers {"MessageId": ...} per accepted message.

Why one message per call (max_batch = 1): SendEmail takes one message. SendBulkEmail takes up to 50
destinations but only with an SES template, not our finished MIME. A crash mid-send can therefore
duplicate at most the one message in flight.

botocore's own retries are switched off: its retry of a timed-out or 5xx call would resend a message
SES may already have accepted without the ledger knowing. Throttling is waited out once, briefly, in
place; everything else is reported and the pipeline retries with its backoff.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import botocore.session
from botocore.config import Config as BotocoreConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from publisher.config import SesSettings
from publisher.delivery.mail.base import (
    MailTransport,
    accepted,
    envelope_problem,
    refused,
    refused_recipient,
    send_each,
)
from publisher.delivery.mail.http import retry_after_seconds
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SendReport, SendResult

log = logging.getLogger(__name__)

CREDENTIALS_HINT = "check mail.transport.access_key_id and mail.transport.secret_access_key in config.yaml"
THROTTLE_WAIT = 1.0  # SES rates are per second: one second later the next message usually passes
DELIVERY_TAG = "publisher_delivery"

# SES error codes that say the account or its setup, not this message, is the problem: stop sending,
# keep every delivery pending, tell the operator what to fix.
_ACCOUNT_PROBLEMS = {
    "AccountSuspendedException": "SES has suspended sending for this account; see the SES console "
    "(Account dashboard) and contact AWS support",
    "SendingPausedException": "sending is paused for this account or configuration set; resume it in "
    "the SES console (or check mail.transport.configuration_set)",
    "MailFromDomainNotVerifiedException": "the sending (MAIL FROM) domain is not verified in SES; verify it "
    "in the SES console or change the edition's from address",
    "LimitExceededException": "an SES sending limit (usually the 24-hour quota) is used up; wait for it "
    "to reset or request a higher quota",
    "NotFoundException": "SES does not know a resource named in the request; check "
    "mail.transport.configuration_set and mail.transport.region in config.yaml",
}
_CREDENTIAL_PROBLEMS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
    "AccessDeniedException",
}
_THROTTLED = {"TooManyRequestsException", "Throttling", "ThrottlingException", "RequestLimitExceeded"}


class SesTransport(MailTransport):
    """Sends each finished message with SES v2 SendEmail (raw content)."""

    name = "ses"
    max_batch = 1  # one message per SendEmail call: see the module docstring

    def __init__(
        self,
        settings: SesSettings,
        *,
        client: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """client: a botocore sesv2 client to use instead of one built from the settings (tests)."""
        self.settings = settings
        self.sleep = sleep
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:  # built on first use: creating a botocore client costs ~50 ms
            config = BotocoreConfig(
                region_name=self.settings.region,
                connect_timeout=self.settings.timeout,
                read_timeout=self.settings.timeout,
                retries={"total_max_attempts": 1},
                user_agent_extra="publisher",
            )
            self._client = botocore.session.Session().create_client(
                "sesv2",
                region_name=self.settings.region,
                endpoint_url=self.settings.base_url,  # None: the real regional endpoint
                aws_access_key_id=self.settings.access_key_id,
                aws_secret_access_key=self.settings.secret_access_key,
                config=config,
            )
        return self._client

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport:
        return send_each(batch, self._deliver, provider="SES")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # close never raises
                client.close()

    # --- one message -----------------------------------------------------------------------------

    def request(self, message: OutgoingMessage) -> dict[str, Any]:
        """The SendEmail parameters for one message."""
        params: dict[str, Any] = {
            "Destination": {"ToAddresses": [message.recipient]},
            "Content": {"Raw": {"Data": message.data}},
            "EmailTags": [{"Name": DELIVERY_TAG, "Value": str(message.delivery_id)}],
        }
        if message.sender:
            params["FromEmailAddress"] = message.sender
        if self.settings.configuration_set:
            params["ConfigurationSetName"] = self.settings.configuration_set
        return params

    def _deliver(self, message: OutgoingMessage) -> SendResult:
        problem = envelope_problem(message)
        if problem:
            return refused(message, problem, temporary=False)
        params = self.request(message)
        outcome = self._call(message, params)
        if isinstance(outcome, _Throttled):
            # SES's own Retry-After when it sends one (honoured as every provider's is: waited in place
            # up to max_retry_after, else the retry is due no sooner); without one, a second at most
            if outcome.retry_after is not None and outcome.retry_after > self.settings.max_retry_after:
                return refused(message, outcome.error, temporary=True, retry_after=outcome.retry_after)
            wait = outcome.retry_after if outcome.retry_after is not None else min(THROTTLE_WAIT, self.settings.max_retry_after)
            log.info("SES throttled us: waiting %.1f s once", wait)
            self.sleep(wait)
            outcome = self._call(message, params)
            if isinstance(outcome, _Throttled):
                return refused(message, outcome.error, temporary=True, retry_after=outcome.retry_after)
        return outcome

    def _call(self, message: OutgoingMessage, params: dict[str, Any]) -> SendResult | _Throttled:
        where = self.settings.base_url or f"SES in {self.settings.region}"
        try:
            answer = self.client.send_email(**params)
        except ClientError as exc:
            return self._refusal(message, exc)
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise TransportUnavailable(
                f"cannot connect to {where}: {exc}; check mail.transport.region (and base_url) in config.yaml "
                "and the network"
            ) from None
        except ReadTimeoutError:
            # SES may have accepted it; the pipeline's retry may then duplicate, the lesser harm
            return refused(message, f"no answer from {where} within {self.settings.timeout:g} s "
                           "(mail.transport.timeout)", temporary=True)
        except ParamValidationError as exc:
            return refused(message, f"SES refuses this message's parameters: {exc}", temporary=False)
        except BotoCoreError as exc:
            return refused(message, f"SES call failed: {exc}", temporary=True)
        # accepted without a MessageId: sent all the same, known by our own Message-ID
        return accepted(message, str(answer.get("MessageId") or message.message_id))

    def _refusal(self, message: OutgoingMessage, exc: ClientError) -> SendResult | _Throttled:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        text = str(error.get("Message", "")) or code
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        detail = f"SES {code or 'error'} (HTTP {status}): {text}"
        if code in _CREDENTIAL_PROBLEMS or status in (401, 403):
            hint = CREDENTIALS_HINT
            if code == "AccessDeniedException":
                hint += "; the key needs ses:SendEmail on the sender's identity"
            raise TransportUnavailable(f"{detail} (hint: {hint})")
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders") or {}
        retry_after = retry_after_seconds({"Retry-After": str(headers.get("retry-after", ""))})
        if code in _THROTTLED or status == 429:
            if "quota" in text.lower():  # "Daily message quota exceeded": no message passes until it resets
                raise TransportUnavailable(f"{detail} (hint: {_ACCOUNT_PROBLEMS['LimitExceededException']})")
            return _Throttled(detail, retry_after)
        if status == 404:  # no such operation here: base_url is not the SES API (or names a missing resource)
            raise TransportUnavailable(f"{detail} (hint: check mail.transport.base_url, and {_ACCOUNT_PROBLEMS['NotFoundException']})")
        if code in _ACCOUNT_PROBLEMS:
            raise TransportUnavailable(f"{detail} (hint: {_ACCOUNT_PROBLEMS[code]})")
        if status >= 500 or status == 408:
            return refused(message, detail, temporary=True, retry_after=retry_after)
        if _about_recipient(text, message.recipient):
            return refused_recipient(message, "SES", detail)
        # MessageRejected, BadRequestException and the like: this message, as it is, will not pass
        return refused(message, detail, temporary=False)


class _Throttled:
    def __init__(self, error: str, retry_after: float | None) -> None:
        self.error = error
        self.retry_after = retry_after


def _about_recipient(text: str, recipient: str) -> bool:
    """SES names the refused destination address; a sandbox's "not verified" is about the account."""
    lowered = text.lower()
    return "not verified" not in lowered and (recipient.lower() in lowered or "recipient" in lowered)
