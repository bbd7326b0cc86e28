"""Bounces and complaints that came back by mail, applied to subscribers: the stage behind
`publisher bounces import`.

Read-only on the mailbox. Status changes go through the one rule (publisher.subscriber_status) that
the send engine and the provider webhooks use, so importing a folder twice changes nothing the
second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from publisher.bounces import Finding, MailboxMessage, Verdict, parse_report
from publisher.config import Config
from publisher.models import SubscriberStatus
from publisher.pipeline.compose import LinkMaker
from publisher.store import Store
from publisher.store.bounces import DeliveryLookup
from publisher.subscriber_status import apply_status


@dataclass
class ImportSummary:
    messages: int = 0
    bounces: int = 0
    complaints: int = 0
    unchanged: int = 0  # the subscriber already had that status (or a stronger one): a re-import
    ignored: int = 0  # delayed, temporary, delivered, feedback other than abuse
    refused: int = 0  # permanent refusals about us or the message, not the address
    not_understood: list[str] = field(default_factory=list)  # "file: why"
    unknown: list[str] = field(default_factory=list)  # "file: address" for addresses not on the list


class BounceImporter:
    """Resolves each finding to a subscriber and applies it."""

    def __init__(self, store: Store, links: LinkMaker) -> None:
        self.store = store
        self.links = links
        self.lookup = DeliveryLookup(store.engine)

    def import_messages(self, messages: Iterable[MailboxMessage]) -> ImportSummary:
        summary = ImportSummary()
        for message in messages:
            summary.messages += 1
            try:
                data = message.read()
            except OSError as exc:
                summary.not_understood.append(f"{message.name}: cannot read: {exc.strerror or exc}")
                continue
            findings = parse_report(data)
            actionable = [f for f in findings if f.verdict in (Verdict.BOUNCE, Verdict.COMPLAINT)]
            for finding in findings:
                self._apply(message.name, finding, summary, only_one=len(actionable) == 1)
        return summary

    def _apply(self, name: str, finding: Finding, summary: ImportSummary, *, only_one: bool) -> None:
        if finding.verdict is Verdict.NOT_UNDERSTOOD:
            summary.not_understood.append(f"{name}: {finding.detail}")
            return
        if finding.verdict is Verdict.IGNORED:
            summary.ignored += 1
            return
        if finding.verdict is Verdict.REFUSED:
            summary.refused += 1
            return
        email = self._subscriber_email(finding, only_one=only_one)
        if email is None:
            named = ", ".join(finding.addresses) or "no address, and no Message-ID of ours naming a delivery"
            summary.unknown.append(f"{name}: {named}")
            return
        complaint = finding.verdict is Verdict.COMPLAINT
        wanted = SubscriberStatus.COMPLAINED if complaint else SubscriberStatus.BOUNCED
        subscriber = self.store.subscribers.by_email(email)
        reason = f"{finding.report}: {finding.detail}"
        if subscriber is not None and apply_status(self.store.subscribers, subscriber, wanted, reason):
            if complaint:
                summary.complaints += 1
            else:
                summary.bounces += 1
        else:
            summary.unchanged += 1

    def _subscriber_email(self, finding: Finding, *, only_one: bool) -> str | None:
        for address in finding.addresses:
            if self.store.subscribers.by_email(address) is not None:
                return address
        if not only_one:
            # Our Message-ID names the message, not which of several failed recipients it means.
            return None
        named = {
            delivered.email
            for mid in finding.message_ids
            if self._is_ours(mid.digest_id, mid.delivery_id, mid.local_part)
            and (delivered := self.lookup.recipient_of(mid.digest_id, mid.delivery_id)) is not None
        }
        return named.pop() if len(named) == 1 else None

    def _is_ours(self, digest_id: int, delivery_id: int, local_part: str) -> bool:
        # The tag is an HMAC of our secret: a made-up or altered Message-ID names nobody.
        return self.links.message_id(digest_id, delivery_id)[1:].split("@", 1)[0].lower() == local_part


def link_maker(config: Config) -> LinkMaker:
    # Only the local part (digest, delivery, tag) is compared: the domain may have changed since.
    return LinkMaker(config.site, config.mail.message_id_domain or "unused.invalid")


__all__ = ["BounceImporter", "ImportSummary", "link_maker"]
