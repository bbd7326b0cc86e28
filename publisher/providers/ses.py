"""Amazon SES: its settings, and where its transport, webhook and probe live (one declaration)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from publisher.config.base import ProviderSettings
from publisher.providers.base import ProviderKind

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from publisher.delivery.mail.base import MailTransport
    from publisher.web.context import WebContext


class SesSettings(ProviderSettings):
    kind: Literal["ses"]
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]
    access_key_id: Annotated[str, Field(min_length=1)]
    secret_access_key: Annotated[str, Field(min_length=1, repr=False)]
    configuration_set: str | None = None
    sns_topic_arn: str | None = Field(default=None, description="only notifications from this topic are accepted")


def _transport(settings: SesSettings) -> MailTransport:
    from publisher.delivery.mail.ses import SesTransport

    return SesTransport(settings)


def _webhook(web: WebContext) -> list[BaseRoute]:
    from publisher.web.webhooks.ses import routes

    return routes(web)


def _probe(settings: SesSettings) -> list[str]:
    from publisher.provider_probe import probe_ses

    return probe_ses(settings)


KIND = ProviderKind(
    name="ses",
    settings=SesSettings,
    transport=_transport,
    summary="Amazon SES v2 SendEmail with raw content, one message per call",
    webhook=_webhook,
    probe=_probe,
    spf_include="include:amazonses.com",
)
