"""config.yaml: the typed settings (schema), the base every settings model shares (base), and reading
the file with errors that name file, line, key and fix (loader)."""

from __future__ import annotations

from publisher.config.base import Settings
from publisher.config.loader import load_config, parse_config
from publisher.config.schema import (
    AnalyticsSettings,
    Config,
    EditionSettings,
    FeedSettings,
    FeedSourceSettings,
    FilesSourceSettings,
    MailgunSettings,
    MailSettings,
    OutboxSettings,
    PageSourceSettings,
    PostmarkSettings,
    ProviderSettings,
    RetrySettings,
    ScheduleSettings,
    SendGridSettings,
    SesSettings,
    SiteSettings,
    SmtpSettings,
    SourceSettings,
    StoreSettings,
    TransportSettings,
    WebSettings,
    WordPressSourceSettings,
)

__all__ = [
    "AnalyticsSettings",
    "Config",
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
