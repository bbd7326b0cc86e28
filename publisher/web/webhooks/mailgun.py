"""POST /webhooks/mailgun: Mailgun's event webhooks (permanent failures, complaints, unsubscribes).

Mailgun posts one JSON event per request: {"signature": {"timestamp", "token", "signature"},
"event-data": {"event", "recipient", "severity", "reason", "message": {"headers": {"message-id"}}}}.
The signature is the hex HMAC-SHA256 of timestamp + token under the domain's HTTP webhook signing key
(mail.transport.webhook_signing_key); nothing is believed before it checks out.

That signature does not cover the event, so a captured one must not be usable again:
- the timestamp must be within MAX_AGE (minutes) of our clock;
- the token is claimed in the store (replay_ids) until the timestamp leaves that window: a replay
  answers 200 "already received" and changes nothing, after a restart too;
- an event whose Message-ID names one of our deliveries must name that delivery's recipient
  (a Message-ID we did not make, or another recipient, is refused with 406, which Mailgun does not retry).

What changes a subscriber (through apply_event, like every provider):
- failed with severity permanent (a hard bounce, or an address Mailgun already suppresses for a
  bounce) -> bounce; suppressed for an earlier complaint or unsubscribe -> complaint / unsubscribe;
- complained -> complaint; unsubscribed (Mailgun's own unsubscribe link) -> unsubscribe.
Temporary failures, deliveries, opens and clicks are acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.config import MailgunSettings
from publisher.web.context import WebContext
from publisher.web.webhooks import (
    MailEvent,
    MessageRef,
    RecipientCheck,
    Replays,
    apply_event,
    event_address,
    event_detail,
    read_json,
    until,
)

log = logging.getLogger(__name__)

PATH = "/webhooks/mailgun"
MAX_AGE = 10 * 60  # a signature older than this is refused: the window a captured one could be tried in
MAX_FUTURE = 120  # clock skew allowed
MAX_TOKEN = 200
_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")

# permanent failure reason -> our event kind; other permanent reasons ("old", "espblock") say more
# about the path than about the address and are ignored.
_PERMANENT_REASONS = {
    "bounce": "bounce",
    "suppress-bounce": "bounce",
    "generic": "bounce",
    "suppress-complaint": "complaint",
    "suppress-unsubscribe": "unsubscribe",
}


def signature_ok(signing_key: str, timestamp: str, token: str, signature: str) -> bool:
    """Whether `signature` is Mailgun's; False (never an error) for any other text, non-ASCII included."""
    if not _HEX_SIGNATURE.fullmatch(signature) or not (timestamp + token).isascii():
        return False
    expected = hmac.new(signing_key.encode("utf-8"), f"{timestamp}{token}".encode("ascii"), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("ascii"))


def event_for(data: dict[str, Any]) -> MailEvent | None:
    """Our event for Mailgun's event-data, or None when it changes nothing."""
    event = str(data.get("event", ""))
    email = event_address(data.get("recipient"))
    if email is None:
        return None
    if event == "complained":
        return MailEvent("mailgun", email, "complaint", "complained")
    if event == "unsubscribed":
        return MailEvent("mailgun", email, "unsubscribe", "unsubscribed at Mailgun")
    if event == "failed" and data.get("severity") == "permanent":
        reason = str(data.get("reason", ""))
        kind = _PERMANENT_REASONS.get(reason)
        if kind is None:
            return None
        status = data.get("delivery-status")
        if not isinstance(status, dict):
            status = {}
        detail = f"{reason}: {status.get('code', '')} {status.get('description') or status.get('message') or ''}"
        return MailEvent("mailgun", email, kind, event_detail(detail))
    return None


def message_ref(data: dict[str, Any]) -> MessageRef:
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    message_id = headers.get("message-id") if isinstance(headers, dict) else None
    named = message_id if isinstance(message_id, str) else None
    # ours (Message-IDs of our digests) or, for anything else, what the ledger keeps as Mailgun's id
    return MessageRef(message_id=named, provider_message_id=named)


class MailgunWebhook:
    def __init__(self, web: WebContext, *, clock: Any = time.time) -> None:
        self.web = web
        self.clock = clock
        self.replays = Replays(web, "mailgun")
        self.recipients = RecipientCheck(web)

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.receive, methods=["POST"])]

    async def receive(self, request: Request) -> Response:
        settings = self.web.config.mail.transport
        if not isinstance(settings, MailgunSettings):
            return PlainTextResponse("Mailgun is not the configured mail transport\n", status_code=404)
        if not settings.webhook_signing_key:
            log.error("a Mailgun webhook arrived but mail.transport.webhook_signing_key is not set: refused")
            return PlainTextResponse("webhook signing key not configured\n", status_code=403)
        try:
            payload = read_json(await request.body())
            signature = payload["signature"]
            timestamp, token, given = signature["timestamp"], signature["token"], signature["signature"]
            if not all(isinstance(value, str | int) and not isinstance(value, bool) for value in (timestamp, token, given)):
                raise TypeError("signature fields must be strings")
            timestamp, token, given = str(timestamp), str(token), str(given)
            data = payload["event-data"]
            if not isinstance(data, dict):
                raise TypeError("event-data is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            return PlainTextResponse(f"not a Mailgun webhook payload: {type(exc).__name__}\n", status_code=400)
        if len(token) > MAX_TOKEN or not signature_ok(settings.webhook_signing_key, timestamp, token, given):
            log.warning("Mailgun webhook with a bad signature refused")
            return PlainTextResponse("bad signature\n", status_code=403)
        now = self.clock()
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or not (
            -MAX_FUTURE <= now - int(timestamp) <= MAX_AGE
        ):
            return PlainTextResponse("signature timestamp too old or in the future\n", status_code=403)
        keep_until = until(int(timestamp) - now + MAX_AGE + MAX_FUTURE)
        return await run_in_threadpool(self._apply, token, keep_until, data)

    def _apply(self, token: str, keep_until: Any, data: dict[str, Any]) -> Response:
        event = event_for(data)
        if event is not None:
            problem = self.recipients.problem(event.email, message_ref(data))
            if problem is not None:
                log.warning("Mailgun %s event refused: %s", event.kind, problem)
                return PlainTextResponse(f"refused: {problem}\n", status_code=406)
        fresh, applied = self.replays.applying(
            token, keep_until, lambda: apply_event(self.web.store, event) if event is not None else False
        )
        if not fresh:
            return PlainTextResponse("already received\n")
        return PlainTextResponse("ignored\n" if event is None else "applied\n" if applied else "no change\n")


def routes(web: WebContext) -> list[BaseRoute]:
    return MailgunWebhook(web).routes()
