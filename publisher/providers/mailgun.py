"""Mailgun: its settings, and where its transport, webhook and probe live (one declaration)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from publisher.config.base import ProviderSettings
from publisher.providers.base import ProviderKind

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from publisher.delivery.mail.base import MailTransport
    from publisher.web.context import WebContext


class MailgunSettings(ProviderSettings):
    kind: Literal["mailgun"]
    api_key: Annotated[str, Field(min_length=1, repr=False)]
    domain: Annotated[str, Field(min_length=1)]
    region: Literal["us", "eu"] = "us"
    webhook_signing_key: str | None = Field(default=None, repr=False)


def _transport(settings: MailgunSettings) -> MailTransport:
    from publisher.delivery.mail.mailgun import MailgunTransport

    return MailgunTransport(settings)


def _webhook(web: WebContext) -> list[BaseRoute]:
    from publisher.web.webhooks.mailgun import routes

    return routes(web)


def _probe(settings: MailgunSettings) -> list[str]:
    from publisher.provider_probe import probe_mailgun

    return probe_mailgun(settings)


KIND = ProviderKind(
    name="mailgun",
    settings=MailgunSettings,
    transport=_transport,
    summary="Mailgun messages.mime, our exact bytes, one message per request",
    webhook=_webhook,
    probe=_probe,
    spf_include="include:mailgun.org",
)
