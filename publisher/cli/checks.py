"""The passes `publisher check` runs besides the config itself: templates with sample data, and (with
--transport) the mail server. The logic lives in publisher.template_check and publisher.transport_probe."""

from __future__ import annotations

import click

from publisher.config import Config


def templates_step(config: Config, config_path: object) -> int:
    """Print template problems; 0 when there are none, else 2 (a config error)."""
    from publisher.template_check import check_templates  # imports the web face: only `check` pays for it

    problems = check_templates(config)
    if problems:
        click.echo(f"config error ({len(problems)} template problem(s)) in {config_path}:", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        return 2
    click.echo(f"templates: every template compiles; {len(config.editions)} edition(s) render with sample data")
    return 0


def transport_step(config: Config) -> int:
    """Connect to the transport and print what it offers; 0 when usable, else 1."""
    from publisher.transport_probe import probe_transport

    report = probe_transport(config)
    click.echo(f"transport ({config.mail.transport.kind}):")
    for line in report.lines:
        click.echo(f"  {line}")
    ok = report.ok
    if config.mail.broker is not None:
        from publisher.broker import probe_broker  # the broker library only in broker mode

        reached, lines = probe_broker(config.mail.broker)
        for line in lines:
            click.echo(f"  {line}")
        ok = ok and reached
    return 0 if ok else 1
