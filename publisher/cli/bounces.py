"""`publisher bounces import PATH`: bounces and complaints that came back by mail, applied to subscribers.

Read-only on the mailbox. Status changes go through the same rule as the provider webhooks
(publisher.web.webhooks.apply_event), so importing a folder twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import click

from publisher.bounces import Finding, MailboxMessage, Verdict, parse_report, read_mailbox
from publisher.cli.common import (
    config_option,
    console,
    err_console,
    handles_errors,
    load,
    main_group,
    open_store,
)
from publisher.config import Config
from publisher.pipeline.send import LinkMaker
from publisher.store import Store
from publisher.store.bounces import DeliveryLookup

SHOWN_NAMES = 50  # file names listed per category; the counts are always complete


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
        # Imported here: the web package costs ~50 ms at startup, which no other command should pay.
        from publisher.web.webhooks import MailEvent, apply_event

        kind = "complaint" if finding.verdict is Verdict.COMPLAINT else "bounce"
        if apply_event(self.store, MailEvent(provider=finding.report, email=email, kind=kind, detail=finding.detail)):
            if kind == "complaint":
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


@main_group.group()
def bounces() -> None:
    """Bounces (DSN) and complaints (ARF) that came back by mail."""


@bounces.command("import")
@config_option
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@handles_errors
def import_(config_path: Path, path: Path) -> None:
    """Read a Maildir, a folder of .eml files or an mbox file; mark hard bounces and complaints.

    A hard bounce (the address does not exist) marks the subscriber bounced; an abuse report marks
    them complained. Delays, temporary failures and policy refusals ("5.7.1 rejected as spam": about
    us, not the address) change nothing. The mailbox is only read; importing it again is harmless.
    """
    config = load(config_path)
    store = open_store(config)
    try:
        summary = BounceImporter(store, link_maker(config)).import_messages(read_mailbox(path))
    except OSError as exc:
        err_console.print(f"cannot read {path}: {exc} (hint: check the path and its permissions)", markup=False)
        raise SystemExit(1) from exc
    print_summary(summary)


def print_summary(summary: ImportSummary) -> None:
    lines = [
        ("messages read", summary.messages),
        ("bounces applied", summary.bounces),
        ("complaints applied", summary.complaints),
        ("already recorded (no change)", summary.unchanged),
        ("ignored (delayed, temporary, not a complaint)", summary.ignored),
        ("refused for policy or content (address kept)", summary.refused),
        ("unknown addresses", len(summary.unknown)),
        ("not understood", len(summary.not_understood)),
    ]
    for label, count in lines:
        console.print(f"{label}: {count}", highlight=False, markup=False)
    for title, names in (("unknown addresses", summary.unknown), ("not understood", summary.not_understood)):
        if names:
            console.print(f"{title}:", highlight=False, markup=False)
            for name in names[:SHOWN_NAMES]:
                console.print(f"  {name}", highlight=False, markup=False, soft_wrap=True)
            if len(names) > SHOWN_NAMES:
                console.print(f"  ... and {len(names) - SHOWN_NAMES} more", highlight=False, markup=False)
    if summary.refused:
        console.print(
            "hint: policy refusals usually mean a blocklist or failing SPF/DKIM/DMARC for the sending domain",
            highlight=False, markup=False,
        )


__all__ = ["BounceImporter", "ImportSummary", "bounces", "link_maker"]
