"""config.yaml as typed settings, validated once at start.

Every mistake is reported with the file, the line, the key, what is wrong and a hint; secrets are
written as ${ENV_NAME} (or ${ENV_NAME:-default}) and read from the environment, never stored.
Each adapter receives only its own settings object, never the whole Config.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from publisher.config.base import ProviderSettings, Settings, SourceSettingsBase
from publisher.config.broker import BrokerSettings
from publisher.config.channels import ChannelSettings
from publisher.crontab import CronSpec, CrontabError, parse_crontab
from publisher.providers.registry import transport_settings_union
from publisher.render.feeds.formats import DEFAULT_FORMATS, FeedFormat
from publisher.render.feeds.formats import FORMATS as FEED_FORMATS
from publisher.sources.registry import source_settings_union


class SiteSettings(Settings):
    name: str
    base_url: Annotated[str, Field(pattern=r"^https?://")]
    timezone: str = "UTC"
    logo_url: str | None = None
    public_url: Annotated[str, Field(pattern=r"^https?://")] = Field(
        default="http://127.0.0.1:8080",
        description="where `publisher serve` is reachable: unsubscribe, preferences and archive links",
    )
    secret: Annotated[str, Field(min_length=16)] = Field(
        description="signs unsubscribe and confirmation tokens; write it as ${PUBLISHER_SECRET}", repr=False
    )
    previous_secrets: list[Annotated[str, Field(min_length=16)]] = Field(
        default_factory=list,
        description="secrets used before site.secret: links they signed still work; new ones use site.secret",
        repr=False,
    )
    unsubscribe_mailto: str | None = None
    postal_address: str | None = Field(
        default=None, description="the sender's postal address, shown in every digest's footer (bulk-mail law)"
    )
    section_aliases: dict[str, list[str]] = Field(
        default_factory=dict,
        description="section -> other names sources use for it (e.g. culture: [ثقافة, arts])",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Asia/Damascus or Europe/London"
            ) from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class StoreSettings(Settings):
    url: str = "sqlite:///var/publisher.db"


class SelectionSettings(Settings):
    """Which stored articles may go into a digest."""

    max_age_hours: float = Field(
        default=48.0,
        gt=0,
        description="a late article (first seen after the last digest) older than this is not the day's news",
    )


# One sources[] entry: the union of every kind's settings model (see publisher.sources.registry).
if TYPE_CHECKING:
    SourceSettings = SourceSettingsBase
else:
    SourceSettings = source_settings_union()


class EditionSettings(Settings):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")]
    subject: str = Field(
        default="{site} — {date}", description="placeholders: {site}, {date}, {count}, {lead} (the lead headline)"
    )
    from_address: str = Field(alias="from")
    reply_to: str | None = None
    sections: list[str] = Field(default_factory=list, description="section order; others follow")
    max_articles: int = Field(default=10, ge=1, le=200)
    title: str | None = None  # shown in the header; defaults to the site name
    site_name: str | None = Field(default=None, description="the site's name in this edition's language")
    digits: Literal["latin", "arabic"] = Field(
        default="latin", description="digits of dates and counts: latin (0-9) or arabic (Arabic-Indic ٠-٩)"
    )

    @field_validator("subject")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        for name in re.findall(r"{([^{}]*)}", value):
            if name not in {"site", "date", "count", "lead"}:
                raise ValueError(f"unknown placeholder {{{name}}}; use {{site}}, {{date}}, {{count}} or {{lead}}")
        return value


class FeedSettings(Settings):
    directory: str = "var/feeds"
    base_url: Annotated[str, Field(pattern=r"^https?://")] = "http://127.0.0.1:8080/feeds"
    formats: list[FeedFormat] = Field(
        default_factory=lambda: list(DEFAULT_FORMATS),
        min_length=1,
        description=f"which of the registered formats to write: {', '.join(sorted(FEED_FORMATS))}",
    )
    entries: int = Field(default=50, ge=1, le=10000)
    sections: bool = Field(default=False, description="also one feed per language and section, listed in an OPML file")
    subtitles: dict[str, str] = Field(
        default_factory=dict, description="language -> the feeds' subtitle (Atom subtitle, RSS and JSON description)"
    )
    archive: bool = Field(
        default=False, description="RFC 5005 archived feeds: the feed links prev-archive to immutable archive documents"
    )
    archive_entries: int = Field(default=50, ge=1, le=10000, description="entries per archive document")
    measure_images: bool = Field(
        default=False, description="HEAD each enclosure image once for its length (cached in the feeds directory)"
    )
    websub_hubs: list[str] = Field(default_factory=list)
    timeout: float = Field(default=10.0, gt=0, le=120)

    @field_validator("formats")
    @classmethod
    def _registered(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in FEED_FORMATS:
                raise ValueError(f"unknown feed format {name!r}; use one of {', '.join(sorted(FEED_FORMATS))}")
        return value


class OutboxSettings(Settings):
    kind: Literal["outbox"]
    path: str = "var/outbox"


class SmtpSettings(Settings):
    kind: Literal["smtp"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    timeout: float = Field(default=30.0, gt=0, le=600)
    local_hostname: str | None = None
    ca_file: str | None = Field(default=None, description="PEM bundle to trust instead of the system's (a private CA)")

    @model_validator(mode="after")
    def _login_pair(self) -> SmtpSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password (as ${ENV_NAME}), or neither")
        return self


# mail.transport: the built-in transports, then every mail provider (see publisher.providers.registry).
if TYPE_CHECKING:
    TransportSettings = OutboxSettings | SmtpSettings | ProviderSettings
else:
    TransportSettings = transport_settings_union(OutboxSettings, SmtpSettings)


class RetrySettings(Settings):
    max_attempts: int = Field(default=8, ge=1, le=100)
    first_delay: float = Field(default=30.0, ge=0, description="seconds before the first retry")
    max_delay: float = Field(default=1800.0, ge=0)
    deadline_hours: float = Field(default=12.0, gt=0, description="give up retrying after this long")


class DkimSettings(Settings):
    domain: Annotated[str, Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")]
    selector: Annotated[str, Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")]
    private_key_file: str = Field(description="PEM file: an Ed25519 or RSA private key (relative to config.yaml)")


class MailSettings(Settings):
    transport: TransportSettings = Field(default_factory=lambda: OutboxSettings(kind="outbox"))
    batch_size: int = Field(default=500, ge=1, le=10000)
    rate_per_second: float | None = Field(default=None, gt=0, description="one cap across all connections")
    connections: int | None = Field(
        default=None, ge=1, le=64,
        description="concurrent SMTP connections or provider requests; default 1 (outbox), 4 (smtp), 8 (HTTP providers)",
    )
    message_id_domain: str | None = None
    list_id: str | None = None
    dkim: DkimSettings | None = Field(default=None, description="sign every digest (DKIM): domain, selector, private_key_file")
    retry: RetrySettings = Field(default_factory=RetrySettings)
    broker: BrokerSettings | None = Field(
        default=None, description="send through `publisher worker` processes on a broker (RabbitMQ); absent: in-process",
    )


class ScheduleSettings(Settings):
    timezone: str | None = None  # defaults to site.timezone
    collect: str | None = "*/15 * * * *"
    feeds: str | None = "*/15 * * * *"
    digests: dict[str, str] = Field(default_factory=dict, description="edition id -> crontab line")
    timezones: dict[str, str] = Field(
        default_factory=dict,
        description="a schedule's own time zone: edition id, collect or feeds -> IANA zone",
    )
    digest_day: Literal["today", "yesterday"] = "today"
    grace_minutes: int = Field(default=60, ge=0)
    max_lateness_hours: float = Field(default=6.0, gt=0)

    @field_validator("collect", "feeds")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            _cron_or_raise(value)
        return value

    @field_validator("digests")
    @classmethod
    def _cron_each(cls, value: dict[str, str]) -> dict[str, str]:
        for edition, line in value.items():
            try:
                parse_crontab(line)
            except CrontabError as exc:
                raise ValueError(f"digests.{edition}: {exc}") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            SiteSettings._known_zone(value)
        return value

    @field_validator("timezones")
    @classmethod
    def _zones(cls, value: dict[str, str]) -> dict[str, str]:
        for name, zone in value.items():
            try:
                SiteSettings._known_zone(zone)
            except ValueError as exc:
                raise ValueError(f"timezones.{name}: {exc}") from exc
        return value

    def zone_for(self, name: str, default: str) -> str:
        """The zone of one schedule line: its own if timezones names it, else schedule.timezone, else default."""
        return self.timezones.get(name) or self.timezone or default

    @property
    def grace(self) -> timedelta:
        return timedelta(minutes=self.grace_minutes)

    @property
    def max_lateness(self) -> timedelta:
        return timedelta(hours=self.max_lateness_hours)


class WebSettings(Settings):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    confirm_hours: float = Field(default=48.0, gt=0)
    max_confirmations_per_address: int = Field(default=3, ge=1)
    max_requests_per_client_per_hour: int = Field(default=20, ge=1)
    # Operators of /admin: name -> scrypt hash from `publisher admin passwd NAME` (never a password).
    admin_users: dict[str, str] = Field(default_factory=dict)
    # Who may read /metrics: "loopback" (a scraper on this machine, or an operator with a console
    # session or HTTP basic auth), "operators" (only those), or "off".
    metrics: Literal["loopback", "operators", "off"] = "loopback"

    @field_validator("metrics", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        return "off" if value is False else value  # YAML reads a bare `off` as false

    @field_validator("admin_users")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        from publisher.passwords import PasswordHashError, parse_hash

        for name, encoded in value.items():
            if not name or len(name) > 100 or any(c.isspace() or c in ":\x00" for c in name):
                raise ValueError(f"operator name {name!r}: use letters, digits, dots or dashes, no spaces or ':'")
            try:
                parse_hash(encoded)
            except PasswordHashError as exc:
                raise ValueError(f"{name}: {exc} (hint: run `publisher admin passwd {name}` and paste its line)") from exc
        return value


class AnalyticsSettings(Settings):
    clicks: bool = Field(default=False, description="story links go through signed /r/ redirects, counted per "
                         "story per digest")
    opens: bool = Field(default=False, description="a 1x1 image /o/ in the HTML part counts opens per digest "
                        "(Apple Mail Privacy Protection pre-fetches images: opens are inflated)")
    per_subscriber: bool = Field(default=False, description="links and the pixel also carry the subscriber "
                                 "(signed): clicks and opens recorded per subscriber")

    @model_validator(mode="after")
    def _per_subscriber_needs_a_count(self) -> AnalyticsSettings:
        if self.per_subscriber and not (self.clicks or self.opens):
            raise ValueError("per_subscriber records clicks or opens per subscriber: set analytics.clicks "
                             "and/or analytics.opens to true, or remove per_subscriber")
        return self


class Config(Settings):
    site: SiteSettings
    store: StoreSettings = Field(default_factory=StoreSettings)
    sources: list[SourceSettings] = Field(default_factory=list)
    selection: SelectionSettings = Field(default_factory=SelectionSettings)
    editions: list[EditionSettings] = Field(min_length=1)
    feeds: FeedSettings = Field(default_factory=FeedSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)
    channels: list[ChannelSettings] = Field(default_factory=list, description="posting channels (Telegram) per edition")
    templates: str | None = Field(default="templates", description="operator templates, tried first")
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        names = [s.name for s in self.sources]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"source names must be unique; repeated: {', '.join(sorted(duplicates))}")
        ids = [e.id for e in self.editions]
        if len(set(ids)) != len(ids):
            raise ValueError("edition ids must be unique")
        named = set(self.schedule.timezones) - set(ids) - {"collect", "feeds"}
        if named:
            raise ValueError(
                f"schedule.timezones names {', '.join(sorted(named))}; use an edition id, collect or feeds"
            )
        for index, channel in enumerate(self.channels):
            if channel.edition not in ids:
                raise ValueError(f"channels[{index}].edition: unknown edition {channel.edition!r}; "
                                 f"use one of {', '.join(ids)}")
        labels = [c.label for c in self.channels]
        if len(set(labels)) != len(labels):
            raise ValueError("channels must differ by edition and chat, or by name: give each a distinct name")
        unknown = set(self.schedule.digests) - set(ids)
        if unknown:
            raise ValueError(
                f"schedule.digests names unknown edition(s) {', '.join(sorted(unknown))}; "
                f"editions are {', '.join(ids)}"
            )
        return self

    def path(self, value: str) -> Path:
        """Resolve a path from the config relative to the config file's directory."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def edition(self, edition_id: str) -> EditionSettings:
        for edition in self.editions:
            if edition.id == edition_id:
                return edition
        raise KeyError(edition_id)

    @property
    def site_host(self) -> str:
        """The host of site.base_url: what Message-IDs and List-Ids fall back to."""
        return (urlsplit(self.site.base_url).hostname or "localhost").lower()

    @property
    def message_id_domain(self) -> str:
        """Right side of Message-IDs: mail.message_id_domain, else the site's host."""
        return self.mail.message_id_domain or self.site_host

    @property
    def list_id_domain(self) -> str:
        """The List-Id domain: mail.list_id, else the site's host."""
        return self.mail.list_id or self.site_host

    @property
    def store_url(self) -> str:
        """SQLite paths are relative to the config file, like every other path."""
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]))
        return url


def _cron_or_raise(line: str) -> CronSpec:
    try:
        return parse_crontab(line)
    except CrontabError as exc:
        raise ValueError(str(exc)) from exc
