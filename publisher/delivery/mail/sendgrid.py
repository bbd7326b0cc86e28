"""SendGrid v3 Mail Send (POST /v3/mail/send): one finished message per request.

SendGrid has no raw-MIME call, so each message is read back into subject, both parts and the headers
that must survive (List-Unsubscribe, List-Unsubscribe-Post, List-Id, Content-Language) plus our own
Message-ID; they travel as custom headers, which SendGrid passes on unchanged (it refuses only
x-sg-id, x-sg-eid, received, dkim-signature, Content-Type, Content-Transfer-Encoding, To, From,
Subject, Reply-To, CC and BCC, none of which we set that way).

Why one message per request, not up to 1,000 personalizations: our messages arrive finished and
personalized (unsubscribe link, preferences link, Message-ID differ per subscriber), SendGrid answers
a whole request with one status, and one bad personalization rejects all of them with a 400 that does
not say cleanly which one. One per request makes every answer belong to exactly one ledger row: a 400
is that message's permanent failure, a 202's X-Message-Id is that message's id, and a crash can
duplicate at most the one message in flight. The cost is one HTTPS round trip per message over a
kept-alive connection: measured ~190 messages/s against a local server (parsing a 25 KB message back
takes ~2.6 ms of that); against the real API expect roughly one message per network round trip.

Our Message-ID goes as a custom header and, with the delivery id, in custom_args, which SendGrid
returns in every Event Webhook event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from publisher.config import SendGridSettings
from publisher.delivery.mail.base import (
    MailTransport,
    accepted,
    envelope_problem,
    refused,
    refused_recipient,
    send_each,
)
from publisher.delivery.mail.http import ProviderAnswer, ProviderClient
from publisher.delivery.mail.parsed import Mailbox, ParsedMessage, parse_message
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SendReport, SendResult

log = logging.getLogger(__name__)

API_URL = "https://api.sendgrid.com"
SEND_PATH = "/v3/mail/send"
CREDENTIALS_HINT = "mail.transport.api_key (and that each edition's from address is a verified SendGrid sender)"


def _address(mailbox: Mailbox) -> dict[str, str]:
    return {"email": mailbox.address, "name": mailbox.name} if mailbox.name else {"email": mailbox.address}


def mail_send_body(message: OutgoingMessage, parsed: ParsedMessage) -> dict[str, Any]:
    """The JSON SendGrid wants for one finished message (text/plain first, then text/html, as
    SendGrid requires that order)."""
    headers = dict(parsed.headers)
    if message.message_id:
        headers["Message-ID"] = message.message_id
    personalization: dict[str, Any] = {
        "to": [_address(parsed.to)],
        # Reported back in every Event Webhook event, so an event can be tied to a ledger row.
        "custom_args": {"delivery_id": str(message.delivery_id), "message_id": message.message_id},
    }
    if headers:
        personalization["headers"] = headers
    body: dict[str, Any] = {"personalizations": [personalization], "from": _address(parsed.sender)}
    if parsed.subject:
        body["subject"] = parsed.subject
    if parsed.reply_to is not None:
        body["reply_to"] = _address(parsed.reply_to)
    content = [{"type": kind, "value": value} for kind, value in (("text/plain", parsed.text), ("text/html", parsed.html)) if value]
    if content:
        body["content"] = content
    return body


class SendGridTransport(MailTransport):
    """Sends each message with its own POST /v3/mail/send. provider_message_id: the X-Message-Id."""

    name = "sendgrid"
    # One message per call: the request holds one message, so a crash between SendGrid's 202 and our
    # ledger write can duplicate only that one, and the pipeline records every answer at once.
    max_batch = 1

    def __init__(
        self,
        settings: SendGridSettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.client = ProviderClient(
            provider="SendGrid",
            base_url=settings.base_url or API_URL,
            timeout=settings.timeout,
            max_retry_after=settings.max_retry_after,
            credentials_hint=CREDENTIALS_HINT,
            session=session,
            sleep=sleep,
        )
        self.client.session.headers.update({"Authorization": f"Bearer {settings.api_key}"})

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport:
        return send_each(batch, self._deliver, provider="SendGrid")

    def close(self) -> None:
        self.client.session.close()

    def _deliver(self, message: OutgoingMessage) -> SendResult:
        problem = envelope_problem(message)
        if problem:
            return refused(message, problem, temporary=False)
        try:
            parsed = parse_message(message)
        except Exception as exc:  # bytes we cannot read back are this message's problem only
            return refused(message, f"cannot read the message back for SendGrid: {exc}", temporary=False)
        answer = self.client.request("POST", SEND_PATH, json=mail_send_body(message, parsed))
        if answer.ok:
            # a 202 without X-Message-Id is still an acceptance: sent, known by our own Message-ID
            return accepted(message, (answer.headers or {}).get("X-Message-Id") or message.message_id)
        if answer.unreachable:
            raise TransportUnavailable(f"{answer.error} (hint: check mail.transport.base_url and the network)")
        error = answer.error or f"SendGrid answered HTTP {answer.status}"
        if answer.status == 429:
            error += _rate_limit_note(answer.headers)
        if not answer.temporary and _about_recipient(answer):
            return refused_recipient(message, "SendGrid", error)
        return refused(message, error, temporary=answer.temporary, retry_after=answer.retry_after)


def _about_recipient(answer: ProviderAnswer) -> bool:
    """A 400 whose errors[] point at the to address (field personalizations.N.to.N.email)."""
    errors = answer.body.get("errors") if isinstance(answer.body, dict) else None
    return isinstance(errors, list) and any(
        isinstance(error, dict) and ".to." in f".{error.get('field') or ''}." for error in errors
    )


def _rate_limit_note(headers: Any) -> str:
    if not headers:
        return ""
    limit, remaining, reset = (headers.get(f"X-RateLimit-{name}") for name in ("Limit", "Remaining", "Reset"))
    return f" (rate limit {limit}, remaining {remaining}, resets at {reset})" if limit or reset else ""
