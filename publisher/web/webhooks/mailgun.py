"""POST /webhooks/mailgun: Mailgun's event webhooks (permanent failures, complaints, unsubscribes).

Mailgun posts one JSON event per request: {"signature": {"timestamp", "token", "signature"},
"event-data": {"event", "recipient", "severity", "reason", ...}}. The signature is the hex
HMAC-SHA256 of timestamp + token under the domain's HTTP webhook signing key
(mail.transport.webhook_signing_key); nothing is believed before it checks out. A token is accepted
once (replays answer 200 and change nothing), and a timestamp older than MAX_AGE is refused.

What changes a subscriber (through apply_event, like every provider):
- failed with severity permanent (a hard bounce, or an address Mailgun already suppresses for a
  bounce) -> bounce; suppressed for an earlier complaint or unsubscribe -> complaint / unsubscribe;
- complained -> complaint; unsubscribed (Mailgun's own unsubscribe link) -> unsubscribe.
Temporary failures, deliveries, opens and clicks are acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.config import MailgunSettings
from publisher.web.context import WebContext
from publisher.web.webhooks import MailEvent, SeenIds, apply_event

log = logging.getLogger("publisher.web.webhooks.mailgun")

PATH = "/webhooks/mailgun"
MAX_AGE = 12 * 3600  # Mailgun retries a failed webhook for 8 hours; older signatures are refused
MAX_FUTURE = 300  # clock skew allowed
SEEN_TOKENS = 10_000

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
    expected = hmac.new(signing_key.encode("utf-8"), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.lower())


def event_for(data: dict[str, Any]) -> MailEvent | None:
    """Our event for Mailgun's event-data, or None when it changes nothing."""
    event = str(data.get("event", ""))
    email = str(data.get("recipient", "")).strip()
    if not email:
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
        return MailEvent("mailgun", email, kind, " ".join(detail.split()))
    return None


class MailgunWebhook:
    def __init__(self, web: WebContext, *, clock: Any = time.time) -> None:
        self.web = web
        self.clock = clock
        self._seen = SeenIds(SEEN_TOKENS)

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
            payload = json.loads(await request.body())
            signature = payload["signature"]
            timestamp, token = str(signature["timestamp"]), str(signature["token"])
            given = str(signature["signature"])
            data = payload["event-data"]
            if not isinstance(data, dict):
                raise TypeError("event-data is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            return PlainTextResponse(f"not a Mailgun webhook payload: {exc}\n", status_code=400)
        if not signature_ok(settings.webhook_signing_key, timestamp, token, given):
            log.warning("Mailgun webhook with a bad signature refused")
            return PlainTextResponse("bad signature\n", status_code=403)
        if not timestamp.isdigit() or not -MAX_FUTURE <= self.clock() - int(timestamp) <= MAX_AGE:
            return PlainTextResponse("signature timestamp too old or in the future\n", status_code=403)
        if token in self._seen:
            return PlainTextResponse("already received\n")
        event = event_for(data)
        applied = False
        if event is not None:
            # a store error raises here (503): the token is not remembered, so Mailgun's retry applies it
            applied = await run_in_threadpool(apply_event, self.web.store, event)
        self._seen.add(token)
        return PlainTextResponse("ignored\n" if event is None else "applied\n" if applied else "no change\n")



def routes(web: WebContext) -> list[BaseRoute]:
    return MailgunWebhook(web).routes()
