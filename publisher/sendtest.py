"""One real digest to one address, marked as a test ("[TEST]" subject, X-Publisher-Test header),
through the configured transport and outside the delivery ledger: nothing is written to the store
but the articles collected."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from email.utils import make_msgid, parseaddr

from publisher.config import Config, EditionSettings
from publisher.delivery.mail import build_transport
from publisher.models import OutgoingMessage, Recipient, SendResult
from publisher.pipeline import message_template, select_digest
from publisher.store import Store

TEST_HEADER = b"X-Publisher-Test"
_SUBJECT = re.compile(rb"^Subject:[ \t]?", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class SendTestOutcome:
    edition: str
    day: date
    articles: int
    transport: str
    result: SendResult | None  # None: no articles, nothing sent


def mark_as_test(data: bytes) -> bytes:
    """Prefix the Subject with "[TEST] " and add X-Publisher-Test, in the header block only."""
    head, separator, body = data.partition(b"\r\n\r\n")
    match = _SUBJECT.search(head)
    if match is None:
        head += b"\r\nSubject: [TEST]"
    else:
        head = head[: match.start()] + TEST_HEADER + b": yes\r\nSubject: [TEST] " + head[match.end() :]
    return head + separator + body


def send_test(config: Config, store: Store, edition: EditionSettings, day: date, address: str) -> SendTestOutcome:
    """Raises ValueError for an address that cannot be sent to; transport errors propagate."""
    selected = select_digest(config, store, edition, day, dry_run=True)
    transport_kind = config.mail.transport.kind
    if not selected.articles:
        return SendTestOutcome(edition.id, day, 0, transport_kind, None)
    template = message_template(config, edition, selected, None)
    public = config.site.public_url.rstrip("/")
    domain = config.mail.message_id_domain or (
        parseaddr(edition.from_address)[1].rpartition("@")[2] or "localhost"
    )
    message_id = make_msgid("test", domain=domain)
    recipient = Recipient(
        0, address, "", message_id, f"{public}/unsubscribe/TEST", f"{public}/preferences/TEST"
    )
    data = mark_as_test(template.personalize(recipient))
    message = OutgoingMessage(0, parseaddr(edition.from_address)[1], address, message_id, data)
    with build_transport(config.mail.transport, base_dir=config.base_dir) as transport:
        report = transport.send([message])
    return SendTestOutcome(edition.id, day, len(selected.articles), transport_kind, report.results[0])
