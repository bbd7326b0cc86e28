"""`publisher bounces import PATH`: bounces and complaints that came back by mail, applied to subscribers.

The work is the pipeline's (publisher.pipeline.bounces); this face reads the path and prints the summary.
"""

from __future__ import annotations

from pathlib import Path

import click

from publisher.bounces import read_mailbox
from publisher.cli.common import (
    config_option,
    console,
    err_console,
    handles_errors,
    load,
    main_group,
    open_store,
)
from publisher.pipeline.bounces import BounceImporter, ImportSummary, link_maker

SHOWN_NAMES = 50  # file names listed per category; the counts are always complete


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


__all__ = ["bounces"]
