"""POST /webhooks/ses: Amazon SES bounce and complaint notifications, delivered by Amazon SNS.

SES publishes events (through the configuration set's SNS destination, or the identity's feedback
notifications) to an SNS topic; the topic posts them here. Nothing is believed before:
- TopicArn equals mail.transport.sns_topic_arn (anything else is refused before any download);
- SigningCertURL is https on sns.<the topic's region>.amazonaws.com and ends in .pem;
- the message's RSA signature (SignatureVersion 1: SHA1, 2: SHA256) over SNS's canonical string
  verifies with that certificate, which must be within its validity dates.
A SubscriptionConfirmation is confirmed by fetching its SubscribeURL only after all of that and only
if that URL is https on the same SNS host: no arbitrary URL is ever fetched.

What changes a subscriber (through apply_event, like every provider): a Permanent bounce -> bounce
for each bounced recipient; a complaint (other than feedback type "not-spam") -> complaint.
Transient and undetermined bounces, deliveries, sends, opens and clicks are acknowledged and ignored.
A message whose signed Timestamp is more than MAX_AGE old (or MAX_FUTURE ahead) is refused; a
MessageId is claimed in the store until then, so SNS's retries and any replay answer 200 "already
received" and change nothing, after a restart too. A bounce or complaint naming one of our deliveries
(the publisher_delivery tag, our Message-ID, or SES's message id in the ledger) is applied only to
that delivery's recipient.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.config import SesSettings
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

PATH = "/webhooks/ses"
FETCH_TIMEOUT = 10.0
# SNS retries an HTTPS delivery for about a minute by its default policy; a topic with a longer delivery
# policy should keep it within this window.
MAX_AGE = 60 * 60
MAX_FUTURE = 5 * 60
DELIVERY_TAG = "publisher_delivery"
_SNS_HOST = re.compile(r"^sns\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

Fetcher = Callable[[str], bytes]


class SnsRejected(Exception):
    """The message is not a genuine SNS message for our topic; the text says why (logged, not shown)."""


def fetch_url(url: str) -> bytes:
    """GET an SNS URL (certificate, subscription confirmation). Only ever called on checked hosts."""
    response = requests.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False)
    response.raise_for_status()
    return response.content


def canonical_string(message: dict[str, Any]) -> bytes:
    """What SNS signs: "Name\\nvalue\\n" for each signed field present, in this order."""
    fields = _SIGNED_FIELDS[message["Type"]]
    return "".join(f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None).encode("utf-8")


def sns_host_ok(url: str, region: str) -> bool:
    parts = urlsplit(url)
    match = _SNS_HOST.match(parts.hostname or "")
    return parts.scheme == "https" and match is not None and match["region"] == region and parts.port in (None, 443)


def topic_region(topic_arn: str) -> str:
    """arn:aws:sns:eu-west-1:123456789012:name -> eu-west-1."""
    parts = topic_arn.split(":")
    return parts[3] if len(parts) >= 6 else ""


class SnsVerifier:
    """Checks SNS messages for one topic; downloaded certificates are kept (they rarely change)."""

    def __init__(self, fetch: Fetcher | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._fetch = fetch
        self.clock = clock
        self._certificates: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def fetch(self, url: str) -> bytes:
        return (self._fetch or fetch_url)(url)  # looked up per call: tests replace fetch_url

    def verify(self, message: dict[str, Any], topic_arn: str) -> None:
        kind = message.get("Type")
        if kind not in _SIGNED_FIELDS:
            raise SnsRejected(f"unknown SNS message type {kind!r}")
        missing = [name for name in _SIGNED_FIELDS[kind] if name != "Subject" and not isinstance(message.get(name), str)]
        if missing:
            raise SnsRejected(f"{kind} without {', '.join(missing)}")
        if message["TopicArn"] != topic_arn:
            raise SnsRejected(f"topic {message['TopicArn']!r} is not mail.transport.sns_topic_arn")
        algorithm = _HASHES.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            raise SnsRejected(f"unsupported SignatureVersion {message.get('SignatureVersion')!r}")
        url = str(message.get("SigningCertURL", ""))
        if not sns_host_ok(url, topic_region(topic_arn)) or not urlsplit(url).path.endswith(".pem"):
            raise SnsRejected(f"SigningCertURL {url!r} is not an SNS certificate of the topic's region")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SnsRejected("Signature is not base64") from exc
        key = self._certificate(url).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsRejected("the signing certificate does not hold an RSA key")
        try:
            key.verify(signature, canonical_string(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature as exc:
            raise SnsRejected("the SNS signature does not verify") from exc

    def _certificate(self, url: str) -> x509.Certificate:
        with self._lock:
            certificate = self._certificates.get(url)
        if certificate is None:
            try:
                certificate = x509.load_pem_x509_certificate(self.fetch(url))
            except (requests.RequestException, OSError, ValueError) as exc:
                raise SnsRejected(f"cannot load the signing certificate {url}: {exc}") from exc
            with self._lock:
                self._certificates[url] = certificate
        now = self.clock()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SnsRejected(f"the signing certificate {url} is not valid now")
        return certificate


def events_for(notification: dict[str, Any]) -> list[MailEvent]:
    """Our events for one SES notification (identity notifications or configuration-set events)."""
    kind = notification.get("eventType") or notification.get("notificationType")
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        if bounce.get("bounceType") != "Permanent":
            return []
        return [
            MailEvent("ses", address, "bounce",
                      event_detail(f"{bounce.get('bounceSubType', '')}: {r.get('diagnosticCode') or r.get('status') or ''}"))
            for r in _list(bounce.get("bouncedRecipients"))
            if isinstance(r, dict) and (address := event_address(r.get("emailAddress")))
        ]
    if kind == "Complaint":
        complaint = notification.get("complaint") or {}
        if complaint.get("complaintFeedbackType") == "not-spam":
            return []
        detail = str(complaint.get("complaintFeedbackType") or "complaint")
        return [
            MailEvent("ses", address, "complaint", event_detail(detail))
            for r in _list(complaint.get("complainedRecipients"))
            if isinstance(r, dict) and (address := event_address(r.get("emailAddress")))
        ]
    return []


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def message_ref(notification: dict[str, Any]) -> MessageRef:
    """What the notification's "mail" object says about which message of ours it is."""
    mail = notification.get("mail")
    if not isinstance(mail, dict):
        return MessageRef()
    tags = mail.get("tags")
    delivery = delivery_number(tags.get(DELIVERY_TAG)) if isinstance(tags, dict) else None
    headers = mail.get("commonHeaders")
    message_id = headers.get("messageId") if isinstance(headers, dict) else None
    provider_id = mail.get("messageId")
    return MessageRef(
        message_id=message_id if isinstance(message_id, str) else None,
        delivery_id=delivery,
        provider_message_id=provider_id if isinstance(provider_id, str) else None,
    )


def signed_at(message: dict[str, Any]) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(str(message.get("Timestamp", "")).replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else None


class SesWebhook:
    def __init__(self, web: WebContext, verifier: SnsVerifier | None = None) -> None:
        self.web = web
        self.verifier = verifier or SnsVerifier()
        self.replays = Replays(web, "ses")
        self.recipients = RecipientCheck(web)

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.receive, methods=["POST"])]

    async def receive(self, request: Request) -> Response:
        settings = self.web.config.mail.transport
        if not isinstance(settings, SesSettings):
            return PlainTextResponse("SES is not the configured mail transport\n", status_code=404)
        if not settings.sns_topic_arn:
            log.error("an SNS notification arrived but mail.transport.sns_topic_arn is not set: refused")
            return PlainTextResponse("SNS topic not configured\n", status_code=403)
        try:
            message = read_json(await request.body())  # SNS posts JSON as text/plain
            if not isinstance(message, dict):
                raise TypeError("not a JSON object")
        except (ValueError, TypeError) as exc:
            return PlainTextResponse(f"not an SNS message: {exc}\n", status_code=400)
        header_type = request.headers.get("x-amz-sns-message-type")
        if header_type is not None and header_type != message.get("Type"):
            return PlainTextResponse("x-amz-sns-message-type does not match the body\n", status_code=400)
        try:
            # may download the certificate once: off the event loop
            await run_in_threadpool(self.verifier.verify, message, settings.sns_topic_arn)
        except SnsRejected as exc:
            log.warning("SNS message refused: %s", exc)
            return PlainTextResponse("refused\n", status_code=403)
        stamp = signed_at(message)
        now = self.verifier.clock()
        if stamp is None or not -MAX_FUTURE <= (now - stamp).total_seconds() <= MAX_AGE:
            return PlainTextResponse("message timestamp too old or in the future\n", status_code=403)
        keep_until = until(MAX_AGE + MAX_FUTURE, start=stamp)
        message_id = str(message["MessageId"])
        if not await run_in_threadpool(self.replays.first_time, message_id, keep_until=keep_until):
            return PlainTextResponse("already received\n")
        try:
            if message["Type"] == "SubscriptionConfirmation":
                answer = await run_in_threadpool(self._confirm, message, settings.sns_topic_arn)
            elif message["Type"] == "UnsubscribeConfirmation":
                log.warning("SNS topic %s unsubscribed this endpoint", message["TopicArn"])
                answer = PlainTextResponse("noted\n")
            else:
                answer = await run_in_threadpool(self._notification, message)
        except Exception:
            await run_in_threadpool(self._forget, message_id)
            raise
        if answer.status_code >= 300:
            await run_in_threadpool(self._forget, message_id)  # a failed confirmation may come again
        return answer

    def _forget(self, message_id: str) -> None:
        try:
            self.replays.release(message_id)
        except Exception:
            log.error("SNS message %s could not be forgotten: its retry will be refused", message_id[:60])

    def _confirm(self, message: dict[str, Any], topic_arn: str) -> Response:
        url = str(message["SubscribeURL"])
        if not sns_host_ok(url, topic_region(topic_arn)):
            log.warning("SNS SubscribeURL %r is not on the topic's SNS host: not fetched", url)
            return PlainTextResponse("SubscribeURL not on an SNS host\n", status_code=400)
        try:
            self.verifier.fetch(url)
        except (requests.RequestException, OSError) as exc:
            log.error("confirming the SNS subscription to %s failed: %s", topic_arn, exc)
            return PlainTextResponse("confirmation failed; send it again\n", status_code=502)
        log.info("confirmed the SNS subscription to %s", topic_arn)
        return PlainTextResponse("subscription confirmed\n")

    def _notification(self, message: dict[str, Any]) -> Response:
        try:
            notification = read_json(message["Message"])
        except ValueError:
            return PlainTextResponse("ignored: the notification is not SES JSON\n")
        if not isinstance(notification, dict):
            return PlainTextResponse("ignored\n")
        events = events_for(notification)
        ref = message_ref(notification)
        believed = []
        for event in events:
            problem = self.recipients.problem(event.email, ref)
            if problem is None:
                believed.append(event)
            else:
                log.warning("SES %s event refused: %s", event.kind, problem)
        applied = sum(apply_event(self.web.store, event) for event in believed)
        refused = len(events) - len(believed)
        return PlainTextResponse(f"{len(events)} event(s), {applied} applied, {refused} refused\n")



def routes(web: WebContext) -> list[BaseRoute]:
    return SesWebhook(web).routes()
