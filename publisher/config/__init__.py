"""config.yaml: the typed settings (schema), the base every settings model shares (base), and reading
the file with errors that name file, line, key and fix (loader)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from publisher.config.base import Credit, ProviderSettings, Settings, SourceSettingsBase

if TYPE_CHECKING:  # imported on first use at run time: source modules import config.base (no cycle)
    from publisher.config.broker import BrokerSettings
    from publisher.config.loader import load_config, parse_config
    from publisher.config.schema import (
        AnalyticsSettings,
        Config,
        EditionSettings,
        FeedSettings,
        MailSettings,
        OutboxSettings,
        RetrySettings,
        ScheduleSettings,
        SelectionSettings,
        SiteSettings,
        SmtpSettings,
        SourceSettings,
        StoreSettings,
        TransportSettings,
        WebSettings,
    )
    from publisher.providers.mailgun import MailgunSettings
    from publisher.providers.postmark import PostmarkSettings
    from publisher.providers.sendgrid import SendGridSettings
    from publisher.providers.ses import SesSettings
    from publisher.sources.feeds import FeedSourceSettings
    from publisher.sources.files import FilesSourceSettings
    from publisher.sources.pages import PageSourceSettings
    from publisher.sources.wordpress import WordPressSourceSettings

_HOMES = {
    "BrokerSettings": "publisher.config.broker",
    "load_config": "publisher.config.loader",
    "parse_config": "publisher.config.loader",
    "MailgunSettings": "publisher.providers.mailgun",
    "PostmarkSettings": "publisher.providers.postmark",
    "SendGridSettings": "publisher.providers.sendgrid",
    "SesSettings": "publisher.providers.ses",
    "FeedSourceSettings": "publisher.sources.feeds",
    "FilesSourceSettings": "publisher.sources.files",
    "PageSourceSettings": "publisher.sources.pages",
    "WordPressSourceSettings": "publisher.sources.wordpress",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name.startswith("__"):
        raise AttributeError(name)
    module = importlib.import_module(_HOMES.get(name, "publisher.config.schema"))
    try:
        value = getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'publisher.config' has no attribute {name!r}") from None
    globals()[name] = value
    return value


__all__ = [
    "AnalyticsSettings",
    "BrokerSettings",
    "Config",
    "Credit",
    "SelectionSettings",
    "SourceSettingsBase",
    "EditionSettings",
    "FeedSettings",
    "FeedSourceSettings",
    "FilesSourceSettings",
    "MailSettings",
    "MailgunSettings",
    "OutboxSettings",
    "PageSourceSettings",
    "PostmarkSettings",
    "ProviderSettings",
    "RetrySettings",
    "ScheduleSettings",
    "SendGridSettings",
    "SesSettings",
    "Settings",
    "SiteSettings",
    "SmtpSettings",
    "SourceSettings",
    "StoreSettings",
    "TransportSettings",
    "WebSettings",
    "WordPressSourceSettings",
    "load_config",
    "parse_config",
]
