"""POST /webhooks/postmark: Postmark's bounce, spam complaint and subscription change webhooks.

Postmark does not sign webhook POSTs; it sends the credentials put into the webhook URL
(https://user:password@host/webhooks/postmark) as HTTP Basic auth. They must match
mail.transport.webhook_username / webhook_password; without them configured every POST is refused,
since an unauthenticated event could unsubscribe anyone.

One JSON object per POST, told apart by RecordType:
- Bounce: Type HardBounce or BadEmailAddress -> bounce; SpamComplaint -> complaint; Unsubscribe (a
  recipient's unsubscribe reply) -> unsubscribe. Soft bounces, transient failures, auto-replies and
  the rest change nothing.
- SpamComplaint -> complaint.
- SubscriptionChange with SuppressSending true (broadcast streams report unsubscribes this way):
  SuppressionReason HardBounce -> bounce, SpamComplaint -> complaint, ManualSuppression (the recipient
  used Postmark's unsubscribe link, or someone suppressed the address) -> unsubscribe. A reactivation
  (SuppressSending false) changes nothing: coming back takes our own confirmed opt-in.
- Delivery, Open, Click and anything else: acknowledged, ignored.

Postmark sends no timestamp to check. Each record is claimed in the store for REMEMBER_DAYS (by its ID,
else by a hash of the body), so a retry or a replay changes nothing, after a restart too; a record
naming one of our deliveries (Metadata delivery_id, or Postmark's MessageID in the ledger) must name
that delivery's recipient.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.config import PostmarkSettings
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

PATH = "/webhooks/postmark"
REMEMBER_DAYS = 7

_BOUNCE_KINDS = {"HardBounce": "bounce", "BadEmailAddress": "bounce", "SpamComplaint": "complaint", "Unsubscribe": "unsubscribe"}
_SUPPRESSION_KINDS = {"HardBounce": "bounce", "SpamComplaint": "complaint", "ManualSuppression": "unsubscribe"}


def credentials_match(header: str, username: str, password: str) -> bool:
    """Whether an Authorization header carries exactly these Basic credentials (compared in constant time)."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (ValueError, binascii.Error):
        return False
    expected = f"{username}:{password}".encode()
    return hmac.compare_digest(given, expected)


def event_for(record: Any) -> MailEvent | None:
    """Our MailEvent for one Postmark webhook record, or None when it changes nothing."""
    if not isinstance(record, dict):
        return None
    record_type = record.get("RecordType")
    kind: str | None = None
    email: Any = None
    detail = ""
    if record_type == "Bounce":
        kind = _BOUNCE_KINDS.get(str(record.get("Type")))
        email = record.get("Email")
        detail = f"bounce {record.get('Type')}: {record.get('Description') or ''} {record.get('Details') or ''}"
    elif record_type == "SpamComplaint":
        kind, email = "complaint", record.get("Email")
        detail = "spam complaint"
    elif record_type == "SubscriptionChange" and record.get("SuppressSending") is True:
        kind = _SUPPRESSION_KINDS.get(str(record.get("SuppressionReason")))
        email = record.get("Recipient")
        detail = f"suppressed on stream {record.get('MessageStream')}: {record.get('SuppressionReason')} by {record.get('Origin')}"
    address = event_address(email)
    if kind is None or address is None:
        return None
    return MailEvent("postmark", address, kind, event_detail(f"{detail} (message {record.get('MessageID')})"))


def message_ref(record: dict[str, Any]) -> MessageRef:
    metadata = record.get("Metadata")
    delivery = delivery_number(metadata.get("delivery_id")) if isinstance(metadata, dict) else None
    provider_id = record.get("MessageID")
    return MessageRef(delivery_id=delivery, provider_message_id=provider_id if isinstance(provider_id, str) else None)


def replay_id(record: dict[str, Any], body: bytes) -> str:
    record_id = record.get("ID")
    if isinstance(record_id, int | str) and not isinstance(record_id, bool) and str(record_id).isascii():
        return f"{record.get('RecordType')}:{record_id}"[:200]
    return "sha256:" + hashlib.sha256(body).hexdigest()


class PostmarkWebhook:
    def __init__(self, web: WebContext) -> None:
        self.web = web
        self.replays = Replays(web, "postmark")
        self.recipients = RecipientCheck(web)

    async def receive(self, request: Request) -> Response:
        settings = self.web.config.mail.transport
        if not isinstance(settings, PostmarkSettings):
            return PlainTextResponse("Postmark is not this site's mail transport\n", status_code=404)
        if not settings.webhook_username or not settings.webhook_password:
            log.error("refused a Postmark webhook POST: set mail.transport.webhook_username and webhook_password in "
                      "config.yaml and put them into the webhook URL at Postmark (https://user:password@host%s)", PATH)
            return PlainTextResponse("webhook credentials not configured\n", status_code=403)
        if not credentials_match(request.headers.get("authorization", ""), settings.webhook_username,
                                 settings.webhook_password):
            log.warning("refused a Postmark webhook POST from %s: wrong or missing credentials",
                        request.client.host if request.client else "?")
            return PlainTextResponse("authentication required\n", status_code=401,
                                     headers={"WWW-Authenticate": 'Basic realm="publisher webhooks"'})
        body = await request.body()
        try:
            record = read_json(body)
        except ValueError:
            return PlainTextResponse("body is not JSON\n", status_code=400)
        if not isinstance(record, dict):
            return PlainTextResponse("expected a JSON object\n", status_code=400)
        return await run_in_threadpool(self._apply, record, body)

    def _apply(self, record: dict[str, Any], body: bytes) -> Response:
        record_type = record.get("RecordType") if isinstance(record.get("RecordType"), str) else None
        event = event_for(record)
        if event is not None:
            problem = self.recipients.problem(event.email, message_ref(record))
            if problem is not None:
                log.warning("Postmark %s record refused: %s", event.kind, problem)
                return JSONResponse({"record_type": record_type, "applied": False, "refused": problem})
        fresh, applied = self.replays.applying(
            replay_id(record, body), until(REMEMBER_DAYS * 86400),
            lambda: apply_event(self.web.store, event) if event is not None else False,
        )
        if not fresh:
            return JSONResponse({"record_type": record_type, "applied": False, "already_received": True})
        return JSONResponse({"record_type": record_type, "applied": bool(applied)})


def routes(web: WebContext) -> list[BaseRoute]:
    return [Route(PATH, PostmarkWebhook(web).receive, methods=["POST"])]
