"""How a mail provider declares itself (see publisher.providers.registry).

A declaration module imports only publisher.config.base and publisher.providers.base (and pydantic)
when it is imported: the config schema imports it to build the transport union, and delivery and web
import the config, so importing them here would be a cycle. Its factories import the rest on first
use, which also keeps botocore and the web stack out of reading config.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from publisher.config.base import ProviderSettings

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from publisher.delivery.mail.base import MailTransport
    from publisher.web.context import WebContext


@dataclass(frozen=True)
class ProviderKind:
    """One mail provider: the `kind:` name, its settings model, and its parts.

    transport: settings -> a MailTransport that keeps the contract of delivery/mail/base.py and the
        outcome table in README ("Sending through a mail provider's API"), which
        tests/test_transport_conformance.py checks for every registered provider.
    webhook: the web context -> the routes of its event webhook (bounces, complaints), or None.
    probe: settings -> lines describing the account for `publisher check --transport`, raising
        publisher.provider_probe.ProbeFailed with the remedy; None when there is nothing to ask.
    spf_include: the SPF mechanism `publisher deploy dns` suggests for its From domains.
    """

    name: str
    settings: type[ProviderSettings]
    transport: Callable[[Any], MailTransport]
    summary: str
    webhook: Callable[[WebContext], list[BaseRoute]] | None = None
    probe: Callable[[Any], list[str]] | None = None
    spf_include: str | None = None
