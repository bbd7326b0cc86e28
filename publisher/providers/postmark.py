"""Postmark: its settings, and where its transport, webhook and probe live (one declaration)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from publisher.config.base import ProviderSettings
from publisher.providers.base import ProviderKind

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from publisher.delivery.mail.base import MailTransport
    from publisher.web.context import WebContext


class PostmarkSettings(ProviderSettings):
    kind: Literal["postmark"]
    server_token: Annotated[str, Field(min_length=1, repr=False)]
    message_stream: str = Field(default="broadcast", description="newsletters belong on a broadcast stream")
    webhook_username: str | None = None
    webhook_password: str | None = Field(default=None, repr=False)


def _transport(settings: PostmarkSettings) -> MailTransport:
    from publisher.delivery.mail.postmark import PostmarkTransport

    return PostmarkTransport(settings)


def _webhook(web: WebContext) -> list[BaseRoute]:
    from publisher.web.webhooks.postmark import routes

    return routes(web)


def _probe(settings: PostmarkSettings) -> list[str]:
    from publisher.provider_probe import probe_postmark

    return probe_postmark(settings)


KIND = ProviderKind(
    name="postmark",
    settings=PostmarkSettings,
    transport=_transport,
    summary="Postmark /email/batch on a broadcast stream, up to 50 messages per request",
    webhook=_webhook,
    probe=_probe,
    spf_include="include:spf.mtasv.net",
)
