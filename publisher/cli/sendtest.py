"""`publisher send-test`: see the real digest in your own mailbox before anyone else does."""

from __future__ import annotations

from pathlib import Path

import click

from publisher.cli.common import config_option, handles_errors, load, main_group, open_store, parse_day
from publisher.pipeline import collect
from publisher.sendtest import send_test as send_one


@main_group.command("send-test")
@config_option
@click.option("--edition", "edition_id", required=True, help="Edition id (editions[].id in config.yaml).")
@click.option(
    "--to", "address", required=True, metavar="ADDRESS", help="The one address to send the test to."
)
@click.option("--date", "day_text", metavar="YYYY-MM-DD", help="The digest's day (default: today).")
@click.option(
    "--no-collect", is_flag=True, help="Use the articles already in the store; do not read the sources first."
)
@handles_errors
def send_test(
    config_path: Path, edition_id: str, address: str, day_text: str | None, no_collect: bool
) -> None:
    """Send the digest of one edition to ADDRESS, marked [TEST], through the configured transport.

    Outside the delivery ledger: subscribers, digests and the archive are untouched, and the real send
    of that day is still to come.
    """
    config = load(config_path)
    try:
        edition = config.edition(edition_id)
    except KeyError:
        known = ", ".join(e.id for e in config.editions)
        raise click.BadParameter(
            f"no edition {edition_id!r} in {config_path}; editions are: {known}", param_hint="--edition"
        ) from None
    day = parse_day(day_text, config)
    store = open_store(config)
    if not no_collect:
        collect(config, store)
    try:
        outcome = send_one(config, store, edition, day, address)
    except ValueError as exc:
        raise click.BadParameter(f"{address!r} cannot be sent to: {exc}", param_hint="--to") from exc
    if outcome.result is None:
        click.echo(
            f"edition {edition.id} has no articles for {day}: nothing sent (hint: pass --date of a day with articles)",
            err=True,
        )
        raise SystemExit(1)
    if not outcome.result.ok:
        kind = "temporary" if outcome.result.temporary else "permanent"
        click.echo(
            f"the {outcome.transport} transport refused the test ({kind}): {outcome.result.error}", err=True
        )
        raise SystemExit(1)
    where = f" ({outcome.result.provider_message_id})" if outcome.result.provider_message_id else ""
    click.echo(f"sent a test of {edition.id} for {day} ({outcome.articles} articles) to {address} "
               f"through {outcome.transport}{where}; subject marked [TEST], no ledger row written")  # fmt: skip
