"""POST /webhooks/sendgrid: SendGrid's signed Event Webhook (bounces, spam reports, unsubscribes).

SendGrid signs each POST with ECDSA (P-256, SHA-256) over the X-Twilio-Email-Event-Webhook-Timestamp
header followed by the raw body, and sends the DER signature base64-encoded in
X-Twilio-Email-Event-Webhook-Signature; the verification key (base64 DER, shown under Mail Settings ->
Signed Event Webhook) goes into mail.transport.webhook_public_key. Nothing is believed before the
signature checks out; without a key every POST is refused (403), since an unsigned event could
unsubscribe anyone.

The body is a JSON array of events. What changes a subscriber (through apply_event, as for every
provider): "bounce" (not of type "blocked", which is SendGrid's soft block), "dropped" because the
address bounced, complained or unsubscribed before, "spamreport", "unsubscribe", "group_unsubscribe".
Deliveries, opens, clicks, deferrals are acknowledged and ignored.

Replays: a POST is accepted only within MAX_AGE_SECONDS (minutes) of its signed timestamp, and its
signature is claimed in the store for that long; each event's sg_event_id is claimed for a day
(SendGrid's retry horizon), so a retried or replayed event changes nothing, after a restart too.
An event whose custom args name one of our deliveries must name that delivery's recipient.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.config import SendGridSettings
from publisher.web.context import WebContext
from publisher.web.webhooks import (
    MailEvent,
    MessageRef,
    RecipientCheck,
    Replays,
    apply_event,
    delivery_number,
    event_address,
    event_detail,
    read_json,
    until,
)

log = logging.getLogger(__name__)

PATH = "/webhooks/sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# A signed POST older than this is refused as a replay. SendGrid signs each POST (a retry too) when it
# makes it, so a window of minutes loses nothing but what a slow clock would.
MAX_AGE_SECONDS = 10 * 60
MAX_FUTURE_SECONDS = 120
# SendGrid retries a failed POST for up to 24 hours: its events' ids are remembered a little longer.
EVENT_ID_DAYS = 25 * 3600

_DROPPED_REASONS = {
    "bounced address": "bounce",
    "spam reporting address": "complaint",
    "unsubscribed address": "unsubscribe",
}


class SignatureError(ValueError):
    """The POST is not provably from SendGrid."""


def verify_signature(public_key: str, signature: str, timestamp: str, payload: bytes, *,
                     now: float | None = None) -> None:
    """Raise SignatureError unless `signature` is SendGrid's ECDSA signature of timestamp + payload."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key
    except ImportError as exc:  # a runtime dependency; say which
        raise SignatureError("the 'cryptography' package is needed to verify SendGrid signatures (pip install cryptography)") from exc
    if not (timestamp.isascii() and timestamp.strip().isdigit() and len(timestamp.strip()) <= 12):
        raise SignatureError("missing or malformed timestamp header")
    if not signature.isascii() or len(signature) > 400:
        raise SignatureError("malformed signature")
    age = (now if now is not None else time.time()) - int(timestamp)
    if age > MAX_AGE_SECONDS or age < -MAX_FUTURE_SECONDS:
        raise SignatureError(f"timestamp {timestamp} is outside the accepted window")
    try:
        text = public_key.strip()
        key = (load_pem_public_key(text.encode()) if text.startswith("-----BEGIN")
               else load_der_public_key(base64.b64decode(text, validate=True)))
        signature_bytes = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise SignatureError(f"malformed key or signature: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureError("mail.transport.webhook_public_key is not an elliptic-curve key")
    try:
        key.verify(signature_bytes, timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError("signature does not match") from None


def event_for(item: Any) -> MailEvent | None:
    """Our MailEvent for one SendGrid event, or None when it changes nothing."""
    if not isinstance(item, dict):
        return None
    email = event_address(item.get("email"))
    if email is None:
        return None
    name = str(item.get("event", ""))
    reason = str(item.get("reason") or item.get("response") or "")
    kind: str | None = None
    if name == "bounce" and item.get("type") != "blocked":
        kind = "bounce"
    elif name == "dropped":
        kind = _DROPPED_REASONS.get(reason.strip().lower())
    elif name == "spamreport":
        kind = "complaint"
    elif name in ("unsubscribe", "group_unsubscribe"):
        kind = "unsubscribe"
    if kind is None:
        return None
    detail = f"{name} {item.get('sg_message_id', '')} {reason}"
    return MailEvent("sendgrid", email, kind, event_detail(detail))


def message_ref(item: dict[str, Any]) -> MessageRef:
    """Our custom args come back on every event: delivery_id and message_id (see the transport)."""
    message_id = item.get("message_id")
    return MessageRef(message_id=message_id if isinstance(message_id, str) else None,
                      delivery_id=delivery_number(item.get("delivery_id")))


@dataclass
class Outcome:
    applied: int = 0
    repeated: int = 0
    refused: int = 0


def apply_events(web: WebContext, replays: Replays, items: list[Any]) -> Outcome:
    outcome = Outcome()
    check = RecipientCheck(web)
    for item in items:
        event = event_for(item)
        if event is None:
            continue
        assert isinstance(item, dict)
        problem = check.problem(event.email, message_ref(item))
        if problem is not None:
            log.warning("SendGrid %s event refused: %s", event.kind, problem)
            outcome.refused += 1
            continue
        event_id = item.get("sg_event_id")
        if not isinstance(event_id, str) or not event_id:
            outcome.applied += apply_event(web.store, event)
            continue
        fresh, applied = replays.applying(event_id, until(EVENT_ID_DAYS), partial(apply_event, web.store, event))
        outcome.repeated += not fresh
        outcome.applied += bool(applied)
    return outcome


class SendGridWebhook:
    def __init__(self, web: WebContext, *, clock: Callable[[], float] = time.time) -> None:
        self.web = web
        self.clock = clock
        self.events = Replays(web, "sendgrid")
        self.posts = Replays(web, "sendgrid-post")

    async def receive(self, request: Request) -> Response:
        settings = self.web.config.mail.transport
        if not isinstance(settings, SendGridSettings):
            return PlainTextResponse("SendGrid is not this site's mail transport\n", status_code=404)
        if not settings.webhook_public_key:
            log.error("refused a SendGrid event POST: set mail.transport.webhook_public_key in config.yaml "
                      "(SendGrid: Mail Settings -> Signed Event Webhook -> verification key)")
            return PlainTextResponse("event signing key not configured\n", status_code=403)
        payload = await request.body()
        try:
            verify_signature(settings.webhook_public_key, request.headers.get(SIGNATURE_HEADER, ""),
                             request.headers.get(TIMESTAMP_HEADER, ""), payload, now=self.clock())
        except SignatureError as exc:
            log.warning("refused a SendGrid event POST from %s: %s", request.client.host if request.client else "?", exc)
            return PlainTextResponse("invalid signature\n", status_code=403)
        try:
            items = read_json(payload)
        except ValueError:
            return PlainTextResponse("body is not JSON\n", status_code=400)
        if not isinstance(items, list):
            return PlainTextResponse("expected a JSON array of events\n", status_code=400)
        stamp = request.headers.get(TIMESTAMP_HEADER, "").strip()
        keep_until = until(int(stamp) - self.clock() + MAX_AGE_SECONDS + MAX_FUTURE_SECONDS)
        # what was signed, not the signature: an ECDSA signature has other valid encodings (s or n - s)
        post_id = hashlib.sha256(stamp.encode("ascii") + b"\n" + payload).hexdigest()
        if not await run_in_threadpool(self.posts.first_time, post_id, keep_until=keep_until):
            return JSONResponse({"received": len(items), "applied": 0, "already_received": True})
        try:
            outcome = await run_in_threadpool(apply_events, self.web, self.events, items)
        except Exception:
            await run_in_threadpool(self.posts.release, post_id)
            raise
        return JSONResponse({"received": len(items), "applied": outcome.applied, "repeated": outcome.repeated,
                             "refused": outcome.refused})


def routes(web: WebContext) -> list[BaseRoute]:
    return [Route(PATH, SendGridWebhook(web).receive, methods=["POST"])]
