"""Mailgun delivery through its raw-MIME call: POST /v3/{domain}/messages.mime, one message per call.

Our message is finished bytes (personalized headers, List-Unsubscribe and List-Unsubscribe-Post,
DKIM-ready), so it goes up as it is, as the `message` file of a multipart/form-data request with the
envelope recipient in `to`. Mailgun answers 200 {"id": "<...@domain>", "message": "Queued. Thank you."}
per accepted message; its id is what its events and logs name the message by.

Why one message per call (max_batch = 1): messages.mime takes exactly one MIME document. Mailgun's
batch form (/messages with recipient-variables, up to 1,000 recipients) would have Mailgun rebuild the
message from parts, losing our exact bytes, and one bad address there refuses the whole request. With
one message per call, a crash mid-send can duplicate at most the one message in flight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import requests

from publisher.config import MailgunSettings
from publisher.delivery.mail.base import (
    MailTransport,
    accepted,
    envelope_problem,
    refused,
    refused_recipient,
    send_each,
)
from publisher.delivery.mail.http import ProviderAnswer, ProviderClient
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SendReport, SendResult

log = logging.getLogger(__name__)

API_BY_REGION = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}
CREDENTIALS_HINT = "mail.transport.api_key (and mail.transport.region: an EU domain needs region: eu)"


class MailgunTransport(MailTransport):
    """Sends each finished message with Mailgun's messages.mime call."""

    name = "mailgun"
    max_batch = 1  # one MIME document per call: see the module docstring

    def __init__(
        self,
        settings: MailgunSettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.base_url = (settings.base_url or API_BY_REGION[settings.region]).rstrip("/")
        self.client = ProviderClient(
            provider="Mailgun",
            base_url=self.base_url,
            timeout=settings.timeout,
            max_retry_after=settings.max_retry_after,
            credentials_hint=CREDENTIALS_HINT,
            # Mailgun's 404 is "Domain not found" as often as a wrong address
            address_hint="mail.transport.base_url, mail.transport.domain and mail.transport.region",
            session=session,
            sleep=sleep,
        )
        self.client.session.auth = ("api", settings.api_key)  # basic auth; never logged
        self._path = f"/v3/{settings.domain}/messages.mime"

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport:
        return send_each(batch, self._deliver, provider="Mailgun")

    def close(self) -> None:
        self.client.session.close()

    def _deliver(self, message: OutgoingMessage) -> SendResult:
        problem = envelope_problem(message)
        if problem:
            return refused(message, problem, temporary=False)
        answer = self.client.request(
            "POST",
            self._path,
            data={"to": message.recipient},
            files={"message": ("message.eml", message.data, "message/rfc822")},
        )
        if answer.ok:
            provider_id = answer.body.get("id") if isinstance(answer.body, dict) else None
            return accepted(message, str(provider_id or message.message_id))
        if answer.unreachable:
            raise TransportUnavailable(
                f"{answer.error} (hint: check mail.transport.base_url / region in config.yaml and the network)"
            )
        if not answer.temporary and _about_recipient(answer, message.recipient):
            return refused_recipient(message, "Mailgun", _error(answer))
        return refused(message, _error(answer), temporary=answer.temporary, retry_after=answer.retry_after)


def _error(answer: ProviderAnswer) -> str:
    return answer.error or f"Mailgun answered HTTP {answer.status}"


def _about_recipient(answer: ProviderAnswer, recipient: str) -> bool:
    """A 400 about the `to` field ("'to' parameter is not a valid address") or naming the address."""
    text = str(answer.body.get("message", "")) if isinstance(answer.body, dict) else ""
    return answer.status == 400 and ("'to'" in text or recipient.lower() in text.lower())
