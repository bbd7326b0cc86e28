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
Deliveries, opens, clicks, deferrals are acknowledged and ignored. Replays change nothing new:
apply_event only ever moves a subscriber to the status the event already implies.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.config import SendGridSettings
from publisher.store import Store
from publisher.web.context import WebContext
from publisher.web.webhooks import MailEvent, apply_event

log = logging.getLogger("publisher.web.webhooks.sendgrid")

PATH = "/webhooks/sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# A signed POST older than this is refused as a replay. SendGrid retries failed POSTs for up to
# 24 hours; each POST is signed when it is made, so a generous day plus clock skew loses nothing.
MAX_AGE_SECONDS = 25 * 3600
MAX_FUTURE_SECONDS = 300

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
    if not timestamp.strip().isdigit():
        raise SignatureError("missing or malformed timestamp header")
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
    if not isinstance(item, dict) or not isinstance(item.get("email"), str):
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
    detail = f"{name} {item.get('sg_message_id', '')} {reason}".strip()
    return MailEvent("sendgrid", item["email"], kind, detail[:400])


def apply_events(store: Store, items: list[Any]) -> int:
    applied = 0
    for item in items:
        event = event_for(item)
        if event is not None and apply_event(store, event):
            applied += 1
    return applied


class SendGridWebhook:
    def __init__(self, web: WebContext, *, clock: Callable[[], float] = time.time) -> None:
        self.web = web
        self.clock = clock

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
            items = json.loads(payload)
        except ValueError:
            return PlainTextResponse("body is not JSON\n", status_code=400)
        if not isinstance(items, list):
            return PlainTextResponse("expected a JSON array of events\n", status_code=400)
        applied = await run_in_threadpool(apply_events, self.web.store, items)
        return JSONResponse({"received": len(items), "applied": applied})


def routes(web: WebContext) -> list[BaseRoute]:
    return [Route(PATH, SendGridWebhook(web).receive, methods=["POST"])]
