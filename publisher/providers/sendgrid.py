"""SendGrid: its settings, and where its transport, webhook and probe live (one declaration)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from publisher.config.base import ProviderSettings
from publisher.providers.base import ProviderKind

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from publisher.delivery.mail.base import MailTransport
    from publisher.web.context import WebContext


class SendGridSettings(ProviderSettings):
    kind: Literal["sendgrid"]
    api_key: Annotated[str, Field(min_length=1, repr=False)]
    webhook_public_key: str | None = Field(default=None, description="Event Webhook verification key (base64)")


def _transport(settings: SendGridSettings) -> MailTransport:
    from publisher.delivery.mail.sendgrid import SendGridTransport

    return SendGridTransport(settings)


def _webhook(web: WebContext) -> list[BaseRoute]:
    from publisher.web.webhooks.sendgrid import routes

    return routes(web)


def _probe(settings: SendGridSettings) -> list[str]:
    from publisher.provider_probe import probe_sendgrid

    return probe_sendgrid(settings)


KIND = ProviderKind(
    name="sendgrid",
    settings=SendGridSettings,
    transport=_transport,
    summary="SendGrid v3 Mail Send, one message per request",
    webhook=_webhook,
    probe=_probe,
    spf_include="include:sendgrid.net",
)
