"""Postmark batch sending (POST /email/batch): up to max_batch finished messages per request.

Postmark has no raw-MIME call, so each message is read back into subject, bodies and the headers that
must survive (List-Unsubscribe, List-Unsubscribe-Post, List-Id, Content-Language, our Message-ID),
sent in the Headers array. Newsletters go on the broadcast message stream named in settings.

The batch call answers HTTP 200 even when some messages were refused: the answer is an array in
request order, one entry per message, each with its own ErrorCode (0 = accepted, with a MessageID).
A message is reported accepted only on its own ErrorCode 0.

Why 50 per request (Postmark allows 500 and 50 MB): a digest message is 25-100 KB, so 50 make a 1-5 MB
request, which already spreads the round trip over many messages; the pipeline records the answers
only after the request returns, so a crash or a timeout mid-request can duplicate at most the 50 in
flight. 500 would risk ten times that for little more speed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from email.utils import parseaddr
from typing import Any

import requests

from publisher.config import PostmarkSettings
from publisher.delivery.mail.base import MailTransport, accepted, envelope_problem, refused, refused_recipient
from publisher.delivery.mail.http import ProviderAnswer, ProviderClient
from publisher.delivery.mail.parsed import Mailbox, ParsedMessage, parse_message
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SendReport, SendResult

log = logging.getLogger(__name__)

API_URL = "https://api.postmarkapp.com"
BATCH_PATH = "/email/batch"
BATCH_LIMIT = 500  # Postmark's own ceiling per /email/batch call
CREDENTIALS_HINT = "mail.transport.server_token"

# Postmark API error codes (https://postmarkapp.com/developer/api/overview#error-codes).
# Worth trying again later: maintenance, rate limit.
TEMPORARY_CODES = {100, 429}
# About our account or sender, not the recipient: no message can go until the operator acts.
ACCOUNT_CODES = {
    10: "bad or missing server token",
    400: "sender signature not found",
    401: "sender signature not confirmed",
    405: "not allowed to send (account out of credits?)",
    412: "account pending approval",
    413: "account may not send",
    1235: "message stream not found",
}
ACCOUNT_HINT = (
    "check mail.transport.server_token and mail.transport.message_stream in config.yaml, and that the "
    "edition's from address has a confirmed Postmark sender signature"
)
# About this one recipient: 300 invalid address, 406 inactive recipient. A 406 means Postmark already
# suppresses the address after a hard bounce, complaint or unsubscribe; the subscriber's status changes
# when the matching webhook arrives, not here. Every other code is also that message's own permanent
# failure.
RECIPIENT_CODES = {300, 406}


def _mailbox_text(mailbox: Mailbox) -> str:
    """'"Name" <address>' as Postmark's From/To/ReplyTo take it; the name quoted so commas and
    non-ASCII letters (Arabic names) need no further encoding in JSON."""
    if not mailbox.name:
        return mailbox.address
    quoted = mailbox.name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{mailbox.address}>'


def batch_entry(message: OutgoingMessage, parsed: ParsedMessage, stream: str) -> dict[str, Any]:
    """One element of the /email/batch array for one finished message."""
    headers = [{"Name": name, "Value": value} for name, value in parsed.headers.items()]
    if message.message_id:
        headers.append({"Name": "Message-ID", "Value": message.message_id})
    entry: dict[str, Any] = {
        "From": _mailbox_text(parsed.sender),
        "To": _mailbox_text(parsed.to),
        "Subject": parsed.subject,
        "Headers": headers,
        "MessageStream": stream,
        # Returned in every webhook event for this message, so an event can be tied to a ledger row.
        "Metadata": {"delivery_id": str(message.delivery_id)},
    }
    if parsed.text:
        entry["TextBody"] = parsed.text
    if parsed.html:
        entry["HtmlBody"] = parsed.html
    if parsed.reply_to is not None:
        entry["ReplyTo"] = _mailbox_text(parsed.reply_to)
    return entry


class PostmarkTransport(MailTransport):
    """Sends batches through POST /email/batch. provider_message_id: Postmark's MessageID."""

    name = "postmark"
    max_batch = 50
    chunk_size = BATCH_LIMIT  # messages per /email/batch request when a caller passes more

    def __init__(
        self,
        settings: PostmarkSettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.client = ProviderClient(
            provider="Postmark",
            base_url=settings.base_url or API_URL,
            timeout=settings.timeout,
            max_retry_after=settings.max_retry_after,
            credentials_hint=CREDENTIALS_HINT,
            session=session,
            sleep=sleep,
        )
        self.client.session.headers.update({"X-Postmark-Server-Token": settings.server_token, "Accept": "application/json"})

    def close(self) -> None:
        self.client.session.close()

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport:
        outcome: dict[int, SendResult] = {}  # index in batch -> result
        to_send: list[tuple[int, OutgoingMessage]] = []
        entries: list[dict[str, Any]] = []
        for index, message in enumerate(batch):
            problem = envelope_problem(message)
            if problem is None:
                try:
                    entries.append(batch_entry(message, parse_message(message), self.settings.message_stream))
                    to_send.append((index, message))
                    continue
                except Exception as exc:  # bytes we cannot read back are this message's problem only
                    problem = f"cannot read the message back for Postmark: {exc}"
            outcome[index] = refused(message, problem, temporary=False)
        size = max(1, min(self.chunk_size, BATCH_LIMIT))
        for start in range(0, len(entries), size):  # one request unless a caller passes more than a chunk
            chunk = to_send[start : start + size]
            sent_before = any(result.ok for result in outcome.values())
            try:
                answer = self.client.request("POST", BATCH_PATH, json=entries[start : start + size])
                outcome.update(self._read_answer(answer, chunk, nothing_accepted_yet=not sent_before))
            except TransportUnavailable as exc:
                if not sent_before:
                    raise
                # an earlier chunk was accepted: it stays sent; this one and the rest wait
                log.warning("Postmark unavailable mid-send; %d message(s) left pending: %s", len(to_send) - start, exc)
                reason = f"not attempted, Postmark unavailable: {exc}"
                outcome.update({index: refused(message, reason, temporary=True) for index, message in to_send[start:]})
                break
        return SendReport([outcome[index] for index in range(len(batch))])

    # --- answers ---------------------------------------------------------------------------------

    def _read_answer(
        self, answer: ProviderAnswer, chunk: list[tuple[int, OutgoingMessage]], *, nothing_accepted_yet: bool
    ) -> dict[int, SendResult]:
        if answer.ok and isinstance(answer.body, list):
            entries = answer.body
            messages = [message for _, message in chunk]
            if len(entries) != len(chunk):
                log.warning("Postmark answered %d entries for %d messages; matching them by recipient",
                            len(entries), len(chunk))
                entries = _match_by_recipient(entries, messages)
            elif not _in_request_order(entries, messages):
                # documented as request order; an entry naming another recipient says otherwise, and a
                # MessageID given to the wrong reader would tie their bounces to someone else
                log.warning("Postmark's answer is not in request order; matching its entries by recipient")
                entries = _match_by_recipient(entries, messages)
            codes = {entry.get("ErrorCode") if isinstance(entry, dict) else None for entry in entries}
            if nothing_accepted_yet and len(codes) == 1 and (code := next(iter(codes))) in ACCOUNT_CODES:
                raise TransportUnavailable(f"Postmark refused every message: error {code}, {ACCOUNT_CODES[code]} "
                                           f"(hint: {ACCOUNT_HINT})")
            return {index: _entry_result(message, entry) for (index, message), entry in zip(chunk, entries, strict=True)}
        if answer.ok:
            # 200 without the array: we cannot tell what was taken; sending again may duplicate
            error = f"Postmark answered 200 without per-message results: {str(answer.body)[:200]}"
            return {index: refused(message, error, temporary=True) for index, message in chunk}
        if answer.unreachable and nothing_accepted_yet:
            raise TransportUnavailable(f"{answer.error} (hint: check mail.transport.base_url and the network)")
        code = answer.body.get("ErrorCode") if isinstance(answer.body, dict) else None
        if code in ACCOUNT_CODES and nothing_accepted_yet:
            raise TransportUnavailable(f"{answer.error} (hint: {ACCOUNT_HINT})")
        error = answer.error or f"Postmark answered HTTP {answer.status}"
        temporary = answer.temporary or code in TEMPORARY_CODES or code in ACCOUNT_CODES
        if not temporary and len(chunk) > 1:
            # A refusal of the whole request (invalid JSON, too many messages) is about the request,
            # not about any one recipient: keep them for a retry (bounded by mail.retry) and say so.
            log.error("Postmark refused a whole batch of %d: %s", len(chunk), error)
            temporary = True
        wait = answer.retry_after if temporary else None
        return {index: refused(message, error, temporary=temporary, retry_after=wait) for index, message in chunk}


def _entry_result(message: OutgoingMessage, entry: Any) -> SendResult:
    """Our result for one entry of Postmark's batch answer (None: Postmark gave none for it)."""
    if not isinstance(entry, dict):
        return refused(message, "Postmark gave no result for this message; it may or may not have been sent", temporary=True)
    code = entry.get("ErrorCode")
    text = str(entry.get("Message", ""))[:300]
    if code == 0 and entry.get("MessageID"):
        return accepted(message, str(entry["MessageID"]))
    if code == 0:
        # accepted without an id: sent (a retry would duplicate it), known by our own Message-ID
        log.warning("Postmark accepted delivery %d without a MessageID", message.delivery_id)
        return accepted(message, message.message_id)
    if code in RECIPIENT_CODES:
        # Named per recipient: the pipeline stops a send after ten identical refusals in a row (the
        # sign of a server-wide problem), which ten suppressed readers in a row must not trigger.
        return refused_recipient(message, "Postmark", f"error {code}: {text}")
    return refused(message, f"Postmark error {code}: {text}", temporary=code in TEMPORARY_CODES or code in ACCOUNT_CODES)


def _recipient(entry: Any) -> str | None:
    """The address an answer entry names in its To, lower-cased (None: it names none)."""
    if not isinstance(entry, dict) or not entry.get("To"):
        return None
    return parseaddr(str(entry["To"]))[1].lower()


def _in_request_order(entries: list[Any], messages: list[OutgoingMessage]) -> bool:
    """Every entry that names its recipient names the message at its own position."""
    return all(
        (address := _recipient(entry)) is None or address == message.recipient.lower()
        for entry, message in zip(entries, messages, strict=True)
    )


def _match_by_recipient(entries: list[Any], messages: list[OutgoingMessage]) -> list[Any]:
    """Postmark's entries re-ordered to our messages by their To address; None where none matches."""
    by_address: dict[str, list[Any]] = {}
    for entry in entries:
        if (address := _recipient(entry)) is not None:
            by_address.setdefault(address, []).append(entry)
    matched: list[Any] = []
    for message in messages:
        candidates = by_address.get(message.recipient.lower())
        matched.append(candidates.pop(0) if candidates else None)
    return matched
