"""The `publisher` command. Thin: parse input, call the pipeline or the store, show results."""

from __future__ import annotations

import sys

from publisher.cli import admin as _admin  # noqa: F401
from publisher.cli import bounces as _bounces  # noqa: F401
from publisher.cli import deploy as _deploy  # noqa: F401
from publisher.cli import init as _init  # noqa: F401
from publisher.cli import operations as _operations  # noqa: F401
from publisher.cli import run as _run  # noqa: F401  (registers commands)
from publisher.cli import sendtest as _sendtest  # noqa: F401
from publisher.cli import subscribers as _subscribers  # noqa: F401
from publisher.cli import worker as _worker  # noqa: F401
from publisher.cli.common import main_group


def main() -> None:
    sys.exit(main_group.main(standalone_mode=True))


__all__ = ["main", "main_group"]
