"""Finished message bytes read back into the fields an HTTP provider's JSON API wants.

SMTP, the outbox, Mailgun's MIME endpoint and SES take the bytes as they are. SendGrid and Postmark
have no raw-MIME call: they get the same message as subject, parts and headers, parsed here once per
message (about a millisecond for a 100 KB digest; an HTTP call costs far more).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses

from publisher.models import OutgoingMessage

# Headers a provider must pass through unchanged (RFC 8058 one-click unsubscribe, threading, language).
PASSED_HEADERS = ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "Content-Language")


@dataclass(frozen=True)
class Mailbox:
    address: str
    name: str = ""


@dataclass(frozen=True)
class ParsedMessage:
    sender: Mailbox
    to: Mailbox
    subject: str
    text: str
    html: str
    message_id: str
    reply_to: Mailbox | None = None
    headers: dict[str, str] = field(default_factory=dict)  # the PASSED_HEADERS present, unfolded


def _mailbox(value: str | None) -> Mailbox | None:
    if not value:
        return None
    pairs = getaddresses([value])
    if not pairs or not pairs[0][1]:
        return None
    name, address = pairs[0]
    return Mailbox(address, name)


def _unfold(value: str) -> str:
    return " ".join(value.split())


def parse_message(message: OutgoingMessage) -> ParsedMessage:
    """Read subject, addresses, both bodies and the list headers back out of the finished bytes."""
    parsed = message_from_bytes(message.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    text_part = parsed.get_body(("plain",))
    html_part = parsed.get_body(("html",))
    sender = _mailbox(str(parsed.get("From", ""))) or Mailbox(message.sender)
    return ParsedMessage(
        sender=sender,
        to=_mailbox(str(parsed.get("To", ""))) or Mailbox(message.recipient),
        subject=_unfold(str(parsed.get("Subject", ""))),
        text=text_part.get_content() if text_part is not None else "",
        html=html_part.get_content() if html_part is not None else "",
        message_id=message.message_id,
        reply_to=_mailbox(str(parsed.get("Reply-To", ""))),
        headers={name: _unfold(str(parsed[name])) for name in PASSED_HEADERS if parsed.get(name) is not None},
    )
