"""`publisher admin passwd NAME`: a password hash for web.admin_users (the console's operators)."""

from __future__ import annotations

import sys

import click

from publisher.cli.common import main_group
from publisher.passwords import hash_password

MIN_LENGTH = 12


@main_group.group()
def admin() -> None:
    """Operators of the /admin console."""


@admin.command()
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def passwd(name: str, password_stdin: bool) -> None:
    """Print the config.yaml lines that let NAME sign in to /admin with a new password.

    Paste them under web.admin_users; a running `publisher serve` picks them up within a second, and
    every session NAME had ends. The password itself is never stored.
    """
    if not name or len(name) > 100 or any(c.isspace() or c == ":" for c in name):
        raise click.BadParameter("use letters, digits, dots or dashes, no spaces or ':'", param_hint="NAME")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True, err=True)
    if len(password) < MIN_LENGTH:
        click.echo(f"error: the password needs at least {MIN_LENGTH} characters", err=True)
        raise SystemExit(2)
    click.echo("web:\n  admin_users:\n" f"    {name}: \"{hash_password(password)}\"")
