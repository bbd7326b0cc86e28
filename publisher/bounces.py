"""Bounce and complaint reports that come back by mail, read into findings. Pure: no store, no config.

An operator who sends through SMTP gets its bounces as delivery status notifications (RFC 3464,
multipart/report; report-type=delivery-status) and its complaints as feedback reports (RFC 5965,
report-type=feedback-report) in the envelope sender's mailbox. `parse_report` turns one such message
into findings; the caller decides whose status changes (see publisher/pipeline/bounces.py).

Conservative on purpose: a finding is a bounce only when the report says the *address* is gone.
"550 5.7.1 rejected as spam" or "5.7.26 unauthenticated" is about us, not the reader; acting on it
would unsubscribe every reader at a mailbox provider that blocks us for a day. Anything the parser
cannot read with confidence is "not understood" and changes nothing.
"""

from __future__ import annotations

import enum
import mailbox
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser, HeaderParser
from functools import partial
from pathlib import Path


class Verdict(enum.StrEnum):
    BOUNCE = "bounce"  # the mailbox or domain does not exist: stop sending to it
    COMPLAINT = "complaint"  # the reader reported the message as spam (ARF Feedback-Type: abuse)
    IGNORED = "ignored"  # delayed, temporary, delivered, or feedback that is not a complaint
    REFUSED = "refused"  # a permanent refusal about us or the message (policy, spam, size): address kept
    NOT_UNDERSTOOD = "not-understood"


@dataclass(frozen=True)
class OurMessageId:
    """A returned Message-ID of our form <digest.{digest_id}.{delivery_id}.{tag}@domain>, not yet verified."""

    digest_id: int
    delivery_id: int
    local_part: str  # "digest.3.17.0a1b2c3d4e5f": compare with the one we would have made


@dataclass(frozen=True)
class Finding:
    verdict: Verdict
    report: str  # "dsn" (standard or plain-text bounce) or "arf"
    addresses: tuple[str, ...] = ()  # whom it names, best first: Final-Recipient, Original-Recipient
    message_ids: tuple[OurMessageId, ...] = ()  # our Message-IDs quoted in the returned message
    detail: str = ""


@dataclass(frozen=True)
class MailboxMessage:
    name: str  # the file, relative to the folder, or "box.mbox#3"
    read: Callable[[], bytes]


_OUR_MESSAGE_ID = re.compile(r"<\s*(digest\.(\d{1,18})\.(\d{1,18})\.[0-9a-f]{12})@[^<>\s]+\s*>", re.IGNORECASE)
_ADDRESS = re.compile(r"^[^@\s<>;,\"]+@[^@\s<>;,\"]+\.[^@\s<>;,\"]+$")
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# An SMTP reply quoted at the start of a line, as Exim and qmail print it: "550 5.1.1 ...", "550-...".
_SMTP_PERMANENT = re.compile(r"^[ \t]*(?:Remote host said:[ \t]*)?5\d\d[ -]", re.MULTILINE)
# RFC 3463 codes that say the address itself is gone: bad mailbox (5.1.1), bad domain (5.1.2, 5.1.10
# null MX / Microsoft's RecipientNotFound), bad syntax (5.1.3), ambiguous (5.1.6), mailbox disabled
# (5.2.1), domain that cannot be routed (5.4.4). The same codes as a refusal at send time, plus 5.4.4,
# which only a relay's DSN reports.
_ADDRESS_GONE = {(1, 1), (1, 2), (1, 3), (1, 6), (1, 10), (2, 1), (4, 4)}
# Without a usable enhanced code (5.0.0, or a plain "550"), only these words make it a bounce.
_ADDRESS_GONE_WORDS = re.compile(
    r"user unknown|unknown user|unknown recipient|no such (user|mailbox|recipient)|"
    r"mailbox (does not exist|not found|unavailable)|(account|address) (does not exist|is disabled)|"
    r"recipient (address )?rejected: (user unknown|undeliverable)|invalid recipient",
    re.IGNORECASE,
)
Fields = dict[str, list[str]]  # a field block: lower-cased name -> every value, in order
_RETURNED_TYPES = {"message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers"}
_STATUS_TYPES = {"message/delivery-status", "message/global-delivery-status"}


def parse_report(data: bytes) -> list[Finding]:
    """Everything one message reports, one finding per recipient. Never raises."""
    try:
        message = BytesParser(policy=policy.compat32).parsebytes(data)
        return _classify(message)
    except Exception as exc:  # a malformed message is reported, never fatal to an import
        return [Finding(Verdict.NOT_UNDERSTOOD, "", detail=f"unreadable message: {type(exc).__name__}: {exc}")]


def address_failure(status: str, diagnostic: str) -> Verdict:
    """BOUNCE when a permanent failure is about the address, REFUSED when it is about us or the message."""
    codes = [(int(c), int(s), int(d)) for c, s, d in _ENHANCED.findall(f"{status} {diagnostic}")]
    if any(c == 5 and s == 7 for c, s, _ in codes):
        return Verdict.REFUSED  # security or policy, whatever else is said
    specific = [(s, d) for c, s, d in codes if c == 5 and (s, d) != (0, 0)]
    if specific:
        return Verdict.BOUNCE if specific[0] in _ADDRESS_GONE else Verdict.REFUSED
    return Verdict.BOUNCE if _ADDRESS_GONE_WORDS.search(diagnostic) else Verdict.REFUSED


def our_message_ids(text: str) -> tuple[OurMessageId, ...]:
    found = {m.group(1).lower(): OurMessageId(int(m.group(2)), int(m.group(3)), m.group(1).lower())
             for m in _OUR_MESSAGE_ID.finditer(text)}
    return tuple(found.values())


def read_mailbox(path: Path) -> Iterator[MailboxMessage]:
    """The messages of a Maildir (cur/ and new/), a folder of .eml files, an mbox file, or one .eml."""
    if path.is_dir():
        if (path / "cur").is_dir() or (path / "new").is_dir():
            files = [f for sub in ("cur", "new") if (path / sub).is_dir() for f in sorted((path / sub).iterdir())]
        else:
            files = sorted(f for f in path.iterdir() if f.suffix.lower() == ".eml")
        for file in files:
            if file.is_file() and not file.name.startswith("."):
                yield MailboxMessage(str(file.relative_to(path)), file.read_bytes)
        return
    with path.open("rb") as handle:
        is_mbox = handle.read(5) == b"From "
    if not is_mbox:
        yield MailboxMessage(path.name, path.read_bytes)
        return
    box = mailbox.mbox(path, create=False)
    try:
        for number, key in enumerate(box.keys(), start=1):
            data = box.get_bytes(key)  # now: the box is closed when the caller is done iterating
            yield MailboxMessage(f"{path.name}#{number}", partial(bytes, data))
    finally:
        box.close()


# --- classification --------------------------------------------------------------------------------


def _classify(message: Message) -> list[Finding]:
    parts = list(_parts(message))
    types = {part.get_content_type() for part in parts}
    message_ids = _returned_message_ids(parts)
    feedback = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if feedback is not None:
        return [_feedback(feedback, message_ids)]
    status = next((p for p in parts if p.get_content_type() in _STATUS_TYPES), None)
    if status is not None:
        return _delivery_status(status, message_ids)
    if "multipart/report" in types:
        return [Finding(Verdict.NOT_UNDERSTOOD, "", detail="a report with neither delivery-status nor feedback part")]
    return _plain_text_bounce(parts) or [Finding(Verdict.NOT_UNDERSTOOD, "", detail="not a delivery report")]


def _parts(message: Message) -> Iterator[Message]:
    """The message and its MIME parts, without descending into a returned (message/*) message."""
    yield message
    if message.get_content_maintype() == "multipart":
        for part in _submessages(message):
            yield from _parts(part)


def _submessages(message: Message) -> list[Message]:
    payload = message.get_payload()
    return [part for part in payload if isinstance(part, Message)] if isinstance(payload, list) else []


def _feedback(part: Message, message_ids: tuple[OurMessageId, ...]) -> Finding:
    fields = _field_blocks(part)
    merged: Fields = {}
    for block in fields:
        for name, values in block.items():
            merged.setdefault(name, []).extend(values)
    feedback_type = _first(merged, "feedback-type").lower()
    recipients = (_address(value) for value in merged.get("original-rcpt-to", []))
    addresses = tuple(dict.fromkeys(a for a in recipients if a))
    if not feedback_type:
        return Finding(Verdict.NOT_UNDERSTOOD, "arf", addresses, message_ids, "feedback report without Feedback-Type")
    detail = f"feedback {feedback_type} from {_first(merged, 'user-agent') or 'an unnamed reporter'}"
    verdict = Verdict.COMPLAINT if feedback_type == "abuse" else Verdict.IGNORED
    return Finding(verdict, "arf", addresses, message_ids, detail)


def _delivery_status(part: Message, message_ids: tuple[OurMessageId, ...]) -> list[Finding]:
    blocks = _field_blocks(part)
    recipients = [block for block in blocks if "final-recipient" in block or "action" in block]
    # Gmail names the returned message in the per-message block as well.
    quoted = " ".join(v for block in blocks for v in block.get("x-original-message-id", []))
    message_ids = tuple(dict.fromkeys(message_ids + our_message_ids(quoted)))
    if not recipients:
        return [Finding(Verdict.NOT_UNDERSTOOD, "dsn", (), message_ids, "delivery-status without recipients")]
    return [_recipient(block, message_ids) for block in recipients]


def _recipient(block: Fields, message_ids: tuple[OurMessageId, ...]) -> Finding:
    final = _address(_first(block, "final-recipient"))
    original = _address(_first(block, "original-recipient"))
    addresses = tuple(dict.fromkeys(a for a in (final, original) if a))
    action = (_first(block, "action").split() or [""])[0].lower()
    status_match = _ENHANCED.search(_first(block, "status"))
    diagnostic = _first(block, "diagnostic-code")
    status = status_match.group(0) if status_match else ""
    detail = " ".join(filter(None, (action, status, diagnostic)))[:400]
    if not final:
        return Finding(Verdict.NOT_UNDERSTOOD, "dsn", addresses, message_ids, f"no usable Final-Recipient: {detail}")
    if action in ("delayed", "delivered", "relayed", "expanded"):
        return Finding(Verdict.IGNORED, "dsn", addresses, message_ids, detail)
    if action != "failed" or not status:
        return Finding(Verdict.NOT_UNDERSTOOD, "dsn", addresses, message_ids, f"unexpected Action/Status: {detail}")
    if not status.startswith("5."):
        # Postfix gives up after its queue lifetime with "failed" and the last temporary status.
        return Finding(Verdict.IGNORED, "dsn", addresses, message_ids, detail)
    return Finding(address_failure(status, diagnostic), "dsn", addresses, message_ids, detail)


def _plain_text_bounce(parts: list[Message]) -> list[Finding]:
    """Exim's and qmail's bounces without a delivery-status part; only their exact, well-known wording."""
    text = next((_text(p) for p in parts if p.get_content_type() == "text/plain"), "")
    returned = "\n".join(_text(p) for p in parts if p.get_content_type() in _RETURNED_TYPES)
    if "This message was created automatically by mail delivery software" in text:
        head, _, copy = text.partition("------ This is a copy of the message")
        if "has not yet been delivered" in head:
            return [Finding(Verdict.IGNORED, "dsn", detail="Exim delay warning")]
        if "This is a permanent error" not in head or "following address(es) failed:" not in head:
            return []
        blocks = _address_blocks(head.split("following address(es) failed:", 1)[1], r"^ {2}(\S+@\S+)\s*$")
        origin = "Exim"
    elif text.startswith("Hi. This is the qmail-send program") and "This is a permanent error" in text:
        head, _, copy = text.partition("--- Below this line is a copy of the message.")
        blocks = _address_blocks(head, r"^<(\S+@\S+)>:\s*$")
        origin = "qmail"
    else:
        return []
    message_ids = our_message_ids(_message_id_lines(copy + "\n" + returned))
    findings = []
    for address, reason in blocks:
        has_reply = bool(_SMTP_PERMANENT.search(reason))
        reason = " ".join(reason.split())
        if not has_reply or not (clean := _address(address)):
            detail = f"{origin} bounce for {address} without an SMTP 5xx answer: {reason[:300]}"
            findings.append(Finding(Verdict.NOT_UNDERSTOOD, "dsn", (), message_ids, detail))
            continue
        verdict = address_failure("", reason)
        findings.append(Finding(verdict, "dsn", (clean,), message_ids, f"{origin} bounce: {reason[:300]}"))
    return findings


def _address_blocks(text: str, address_line: str) -> list[tuple[str, str]]:
    """(address, the lines explaining it) for each address alone on its line, up to a blank line."""
    blocks: list[tuple[str, str]] = []
    pattern = re.compile(address_line)
    current: list[str] | None = None
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            current = []
            blocks.append((match.group(1), ""))
        elif current is not None and line.strip():
            current.append(line)
            blocks[-1] = (blocks[-1][0], "\n".join(current))
        elif current is not None and not line.strip() and current:
            current = None
    return blocks


# --- fields and text -------------------------------------------------------------------------------


def _field_blocks(part: Message) -> list[Fields]:
    """The header-like field blocks of a delivery-status or feedback-report part, names lower-cased."""
    blocks: list[Fields] = []
    if isinstance(part.get_payload(), list):  # Python parsed it as embedded messages: headers, maybe a body
        for sub in _submessages(part):
            blocks.append(_fields(sub))
            body = sub.get_payload()
            if isinstance(body, str) and body.strip():
                blocks.extend(_blocks_from_text(body))
    else:
        blocks.extend(_blocks_from_text(_text(part)))
    return [block for block in blocks if block]


def _blocks_from_text(text: str) -> list[Fields]:
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text)
    return [_fields(HeaderParser(policy=policy.compat32).parsestr(chunk.strip() + "\n")) for chunk in chunks if chunk.strip()]


def _fields(message: Message) -> Fields:
    fields: Fields = {}
    for name, value in message.items():
        fields.setdefault(name.strip().lower(), []).append(" ".join(str(value).split()))
    return fields


def _first(fields: Fields, name: str) -> str:
    return (fields.get(name) or [""])[0]


def _address(value: str) -> str | None:
    """ "rfc822; <Reader@Example.org>" -> "reader@example.org"; None when it is not one address."""
    if ";" in value:
        kind, value = value.split(";", 1)
        if kind.strip().lower() not in ("rfc822", "utf-8"):
            return None
    value = value.strip().strip("<>").strip()
    return value.lower() if _ADDRESS.match(value) else None


def _text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):  # message/rfc822: its headers are what we want
        return "\n".join(f"{k}: {v}" for sub in _submessages(part) for k, v in sub.items())
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return str(payload or "")
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, "replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", "replace")


def _message_id_lines(text: str) -> str:
    return "\n".join(re.findall(r"(?im)^message-id:[ \t]*(.*(?:\n[ \t].*)?)$", text))


def _returned_message_ids(parts: list[Message]) -> tuple[OurMessageId, ...]:
    returned = "\n".join(_text(p) for p in parts if p.get_content_type() in _RETURNED_TYPES)
    return our_message_ids(_message_id_lines(returned))
