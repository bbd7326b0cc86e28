"""Commands for setting up and running in production: schema, templates copy, backup, dns."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import click

from publisher.cli.common import config_option, handles_errors, load, main_group
from publisher.dkim_keys import DkimKeyError, generate, public_record, write_private
from publisher.dns_records import DnsRecord, from_domains, records
from publisher.jsonschema import config_schema_text
from publisher.render.templates import PACKAGED_TEMPLATES
from publisher.store.backup import backup_sqlite, pg_dump_command, sqlite_path


@main_group.command()
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
def schema(out: Path | None) -> None:
    """Print the JSON Schema of config.yaml (for editors: # yaml-language-server: $schema=FILE)."""
    text = config_schema_text()
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        click.echo(f"cannot write {out}: {exc.strerror or exc}", err=True)
        raise SystemExit(1) from exc
    click.echo(f"wrote {out}")


@main_group.group()
def templates() -> None:
    """The packaged email and web templates."""


@templates.command("copy")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite files that already exist there.")
def templates_copy(directory: Path, force: bool) -> None:
    """Copy the packaged templates into DIRECTORY to start an override (then set templates: DIRECTORY).

    Keep only the files you change: the others then keep coming from the package after an upgrade.
    """
    sources = sorted(p for p in PACKAGED_TEMPLATES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    existing = [directory / p.relative_to(PACKAGED_TEMPLATES) for p in sources]
    clashes = [str(p) for p in existing if p.exists()]
    if clashes and not force:
        click.echo(f"{len(clashes)} file(s) exist in {directory}, e.g. {clashes[0]}: nothing copied "
                   "(pass --force to overwrite them)", err=True)  # fmt: skip
        raise SystemExit(2)
    try:
        for source, target in zip(sources, existing, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    except OSError as exc:
        click.echo(f"cannot copy into {directory}: {exc.strerror or exc}", err=True)
        raise SystemExit(1) from exc
    click.echo(f"copied {len(sources)} template file(s) to {directory}")
    click.echo(f"next: set `templates: {directory}` in config.yaml, delete the files you do not change, "
               "and run `publisher check`")  # fmt: skip


@main_group.command()
@config_option
@click.argument("target", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite TARGET if it exists.")
@handles_errors
def backup(config_path: Path, target: Path | None, force: bool) -> None:
    """Copy the SQLite store to TARGET (default var/backup/publisher-<UTC time>.db) while it runs."""
    config = load(config_path)
    url = config.store_url
    source = sqlite_path(url)
    if source is None:
        if url.startswith("postgresql"):
            click.echo(f"the store is PostgreSQL: back it up with its own tools, e.g.\n  {pg_dump_command(url, 'publisher.dump')}\n"
                       "and restore with pg_restore --clean -d DATABASE publisher.dump (README: Backups)", err=True)  # fmt: skip
        else:
            click.echo(f"store.url {url!r}: only a SQLite file can be backed up by publisher", err=True)
        raise SystemExit(2)
    if target is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = config.path(f"var/backup/publisher-{stamp}.db")
    result = backup_sqlite(source, target, force=force)
    click.echo(
        f"backed up {result.source} to {result.target} ({result.bytes} bytes, {result.tables} tables, integrity ok)"
    )
    click.echo(
        "restore: stop `publisher serve`, copy it over the store file (remove any -wal and -shm beside it), start again"
    )


@main_group.command()
@config_option
@handles_errors
def dns(config_path: Path) -> None:
    """Print the DNS records to publish for the editions' From domains (SPF, DMARC; DKIM when publisher signs)."""
    config = load(config_path)
    domains = from_domains(config)
    if not domains:
        click.echo("no edition has a From address with a domain: nothing to publish", err=True)
        raise SystemExit(2)
    click.echo(
        f"; DNS records for {', '.join(domains)} (BIND zone-file syntax; most DNS panels take name, type, value)"
    )
    try:
        found = records(config)
    except (OSError, DkimKeyError) as exc:
        click.echo(f"error: mail.dkim.private_key_file: {exc} (hint: `publisher dkim keygen FILE` makes one)", err=True)
        raise SystemExit(2) from exc
    for record in found:
        click.echo(f"; {record.why}")
        click.echo(record.zone_line())
    if config.mail.dkim is None:
        click.echo("; DKIM: publisher does not sign (no mail.dkim in config.yaml). A provider that signs for you shows "
                   "its DKIM records in its dashboard; or run `publisher dkim keygen` and set mail.dkim.")  # fmt: skip
    click.echo("; check them after publishing: dig +short TXT <name>")


@main_group.group()
def dkim() -> None:
    """DKIM signing keys (mail.dkim)."""


@dkim.command()
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--type", "kind", type=click.Choice(["rsa", "ed25519"]), default="rsa", show_default=True,
              help="rsa is verified everywhere; some receivers still skip ed25519")
@click.option("--bits", type=click.IntRange(1024, 4096), default=2048, show_default=True, help="RSA key size")
@click.option("--selector", default=None, help="DKIM selector (default: publisher + this year and month)")
@click.option("--domain", default="example.org", show_default=True, help="the signing domain (your From domain)")
@click.option("--force", is_flag=True, help="replace an existing key file")
def keygen(key_file: Path, kind: str, bits: int, selector: str | None, domain: str, force: bool) -> None:
    """Write a new private key to KEY_FILE (mode 600) and print its mail.dkim lines and DNS record."""
    selector = selector or f"publisher{datetime.now(UTC):%Y%m}"
    if key_file.exists() and not force:
        click.echo(f"error: {key_file} exists (hint: --force replaces it; publish the new record first)", err=True)
        raise SystemExit(2)
    pem = generate("ed25519" if kind == "ed25519" else "rsa", bits=bits)
    try:
        write_private(key_file, pem, force=force)
    except OSError as exc:
        click.echo(f"error: cannot write {key_file}: {exc.strerror} (hint: check the folder)", err=True)
        raise SystemExit(2) from exc
    click.echo(f"wrote {key_file} ({kind}{'' if kind == 'ed25519' else f' {bits}'}); add to config.yaml:")
    click.echo(f"mail:\n  dkim:\n    domain: {domain}\n    selector: {selector}\n    private_key_file: {key_file}")
    click.echo("and publish (then check with: dig +short TXT <name>):")
    click.echo(DnsRecord(f"{selector}._domainkey.{domain}", "TXT", public_record(pem), "DKIM").zone_line())
