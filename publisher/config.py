"""config.yaml as typed settings, validated once at start.

Every mistake is reported with the file, the line, the key, what is wrong and a hint; secrets are
written as ${ENV_NAME} (or ${ENV_NAME:-default}) and read from the environment, never stored.
Each adapter receives only its own settings object, never the whole Config.
"""

from __future__ import annotations

import difflib
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from publisher.crontab import CronSpec, CrontabError, parse_crontab
from publisher.errors import ConfigError

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


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
        description="signs unsubscribe and confirmation tokens; write it as ${PUBLISHER_SECRET}"
    )
    unsubscribe_mailto: str | None = None

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


class FeedSourceSettings(Settings):
    kind: Literal["feed"]
    name: Annotated[str, Field(min_length=1)]
    url: str = Field(description="http(s) URL or a local path to an RSS, Atom, RDF or JSON feed")
    language: str | None = None
    section: str | None = None
    timeout: float = Field(default=15.0, gt=0, le=300)
    enabled: bool = True


class FilesSourceSettings(Settings):
    kind: Literal["files"]
    name: Annotated[str, Field(min_length=1)]
    path: str = Field(description="a directory of Markdown (front matter) or JSON articles")
    enabled: bool = True


class PageSourceSettings(Settings):
    kind: Literal["pages"]
    name: Annotated[str, Field(min_length=1)]
    urls: list[str] = Field(min_length=1, description="article pages, extracted with trafilatura")
    language: str | None = None
    section: str | None = None
    timeout: float = Field(default=15.0, gt=0, le=300)
    enabled: bool = True


SourceSettings = Annotated[
    FeedSourceSettings | FilesSourceSettings | PageSourceSettings, Field(discriminator="kind")
]


class EditionSettings(Settings):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")]
    subject: str = Field(default="{site} — {date}", description="placeholders: {site}, {date}, {count}")
    from_address: str = Field(alias="from")
    reply_to: str | None = None
    sections: list[str] = Field(default_factory=list, description="section order; others follow")
    max_articles: int = Field(default=10, ge=1, le=200)
    title: str | None = None  # shown in the header; defaults to the site name

    @field_validator("subject")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        for name in re.findall(r"{([^{}]*)}", value):
            if name not in {"site", "date", "count"}:
                raise ValueError(f"unknown placeholder {{{name}}}; use {{site}}, {{date}} or {{count}}")
        return value


FeedFormat = Literal["atom", "rss"]
ALL_FEED_FORMATS: tuple[FeedFormat, ...] = ("atom", "rss")


class FeedSettings(Settings):
    directory: str = "var/feeds"
    base_url: Annotated[str, Field(pattern=r"^https?://")] = "http://127.0.0.1:8080/feeds"
    formats: list[FeedFormat] = Field(default_factory=lambda: list(ALL_FEED_FORMATS), min_length=1)
    entries: int = Field(default=50, ge=1, le=10000)
    websub_hubs: list[str] = Field(default_factory=list)
    timeout: float = Field(default=10.0, gt=0, le=120)


class OutboxSettings(Settings):
    kind: Literal["outbox"]
    path: str = "var/outbox"


class SmtpSettings(Settings):
    kind: Literal["smtp"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    timeout: float = Field(default=30.0, gt=0, le=600)
    local_hostname: str | None = None

    @model_validator(mode="after")
    def _login_pair(self) -> SmtpSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password (as ${ENV_NAME}), or neither")
        return self


TransportSettings = Annotated[OutboxSettings | SmtpSettings, Field(discriminator="kind")]


class RetrySettings(Settings):
    max_attempts: int = Field(default=8, ge=1, le=100)
    first_delay: float = Field(default=30.0, ge=0, description="seconds before the first retry")
    max_delay: float = Field(default=1800.0, ge=0)
    deadline_hours: float = Field(default=12.0, gt=0, description="give up retrying after this long")


class MailSettings(Settings):
    transport: TransportSettings = Field(default_factory=lambda: OutboxSettings(kind="outbox"))
    batch_size: int = Field(default=500, ge=1, le=10000)
    rate_per_second: float | None = Field(default=None, gt=0)
    message_id_domain: str | None = None
    list_id: str | None = None
    retry: RetrySettings = Field(default_factory=RetrySettings)


class ScheduleSettings(Settings):
    timezone: str | None = None  # defaults to site.timezone
    collect: str | None = "*/15 * * * *"
    feeds: str | None = "*/15 * * * *"
    digests: dict[str, str] = Field(default_factory=dict, description="edition id -> crontab line")
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


class Config(Settings):
    site: SiteSettings
    store: StoreSettings = Field(default_factory=StoreSettings)
    sources: list[SourceSettings] = Field(default_factory=list)
    editions: list[EditionSettings] = Field(min_length=1)
    feeds: FeedSettings = Field(default_factory=FeedSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    web: WebSettings = Field(default_factory=WebSettings)
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
    def store_url(self) -> str:
        """SQLite paths are relative to the config file, like every other path."""
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]))
        return url

    @property
    def schedule_zone(self) -> str:
        return self.schedule.timezone or self.site.timezone


def _cron_or_raise(line: str) -> CronSpec:
    try:
        return parse_crontab(line)
    except CrontabError as exc:
        raise ValueError(str(exc)) from exc


# --- loading ------------------------------------------------------------------------------------


def _substitute_env(node: yaml.Node, missing: list[tuple[str, yaml.Node]]) -> None:
    """Replace ${NAME} and ${NAME:-default} in scalar values, in place, remembering what is unset."""
    if isinstance(node, yaml.ScalarNode) and isinstance(node.value, str) and "${" in node.value:

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None:
                if default is None:
                    missing.append((name, node))
                    return ""
                return default
            return value

        node.value = _ENV_PATTERN.sub(replace, node.value)
        if node.tag == "tag:yaml.org,2002:str" or node.style:
            return
        # an unquoted value that was only a variable is taken as a string
        node.tag = "tag:yaml.org,2002:str"
    elif isinstance(node, yaml.MappingNode):
        for _key, value in node.value:
            _substitute_env(value, missing)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _substitute_env(item, missing)


def _node_at(root: yaml.Node | None, loc: tuple[int | str, ...]) -> tuple[yaml.Node | None, bool]:
    """Find the YAML node for a pydantic error location. Returns (node, found_exactly)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part or (part == "from_address" and key.value == "from"):
                    node = value
                    break
            else:
                return node, False
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node, False
            node = node.value[part]
        else:
            # discriminated union tags ("feed", "smtp") appear in loc but not in the YAML
            continue
    return node, True


def _key_node(root: yaml.Node | None, loc: tuple[int | str, ...]) -> yaml.Node | None:
    """The node of the key itself (for unknown keys, whose value node we have too)."""
    parent, _ = _node_at(root, loc[:-1])
    if isinstance(parent, yaml.MappingNode):
        for key, _value in parent.value:
            if key.value == loc[-1]:
                return key
    return None


def _allowed_keys(loc: tuple[int | str, ...], data: Any) -> list[str]:
    """Field names allowed at the parent of loc, used for 'did you mean' hints."""
    model: Any = Config
    value = data
    for part in loc[:-1]:
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and part < len(value) else None
            continue
        if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            annotation = model.model_fields[part].annotation
            value = value.get(part) if isinstance(value, dict) else None
            model = _model_for(annotation, value)
        else:
            kind_model = _model_for(model, value)
            model = kind_model
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items() if name != "base_dir"]
    return []


def _model_for(annotation: Any, value: Any) -> Any:
    """Pick the model class out of list[...] / unions, using 'kind' for tagged unions."""
    args = getattr(annotation, "__args__", None) or getattr(annotation, "__metadata__", None)
    origin = getattr(annotation, "__origin__", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if origin is not None and args:
        if origin in (list, dict):
            return _model_for(args[-1], value)
        if hasattr(annotation, "__metadata__"):
            return _model_for(annotation.__origin__, value)
    if args:
        candidates = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        for candidate in candidates:
            kind = candidate.model_fields.get("kind")
            if kind and isinstance(value, dict) and value.get("kind") in getattr(kind.annotation, "__args__", ()):
                return candidate
        if len(candidates) == 1:
            return candidates[0]
    return annotation


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("feed", "files", "pages", "outbox", "smtp"):
            continue  # discriminator tags are not keys the operator wrote
        else:
            out += ("." if out else "") + ("from" if part == "from_address" else str(part))
    return out


def _describe(error: Any, root: yaml.Node | None, data: Any, source: str) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    key = _dotted(loc) or "(top level)"
    if kind == "extra_forbidden":
        node = _key_node(root, loc) or _node_at(root, loc)[0]
        allowed = _allowed_keys(loc, data)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed here: {', '.join(allowed)}"
        what = f"unknown key {loc[-1]!r}"
    elif kind == "missing":
        node, _ = _node_at(root, loc[:-1])
        what = "is required but missing"
        hint = f"add {str(loc[-1]).replace('from_address', 'from')!r} here"
    elif kind == "union_tag_invalid" or kind == "union_tag_not_found":
        node, _ = _node_at(root, loc)
        what = error["msg"]
        hint = "set kind: to one of " + str(error.get("ctx", {}).get("expected_tags", "the listed kinds"))
    else:
        node, _ = _node_at(root, loc)
        what = error["msg"].removeprefix("Value error, ")
        expected = {
            "int_parsing": "write a whole number",
            "float_parsing": "write a number",
            "bool_parsing": "write true or false",
            "string_type": "write text (quote it if it looks like a number)",
            "list_type": "write a list (- item per line, or [a, b])",
            "dict_type": "write a mapping of key: value lines",
            "model_type": "write a mapping of key: value lines",
            "literal_error": "pick one of the values listed",
            "string_pattern_mismatch": "see the pattern above",
        }
        hint = expected.get(kind, "" if kind == "value_error" else "see the README's config.yaml section")
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return f"{source}{line}: {key}: {what}" + (f" (hint: {hint})" if hint else "")


def load_config(path: str | Path) -> Config:
    """Read, substitute ${ENV}, validate. Raises ConfigError listing every problem found."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([f"{source}: no such file (hint: pass --config PATH, or copy config.yaml)"]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{source}: cannot read it: {exc}"]) from exc
    return parse_config(text, source=source, base_dir=path.resolve().parent)


def parse_config(text: str, *, source: str = "config.yaml", base_dir: Path | None = None) -> Config:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(
            [f"{source}{where}: not valid YAML: {exc.problem} (hint: check indentation and quoting)"]
        ) from exc
    if root is None:
        raise ConfigError([f"{source}: the file is empty (hint: start from the example config.yaml)"])
    missing: list[tuple[str, yaml.Node]] = []
    _substitute_env(root, missing)
    if missing:
        raise ConfigError(
            [
                f"{source}:{node.start_mark.line + 1}: environment variable {name} is not set "
                f"(hint: export {name}=..., or write ${{{name}:-default}})"
                for name, node in missing
            ]
        )
    data = _construct(root)
    if not isinstance(data, dict):
        raise ConfigError([f"{source}:1: the top level must be a mapping of sections (site:, editions:, ...)"])
    try:
        config = Config.model_validate({**data, "base_dir": base_dir or Path(".")})
    except ValidationError as exc:
        raise ConfigError([_describe(err, root, data, source) for err in exc.errors()]) from exc
    return config


def _construct(root: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    finally:
        loader.dispose()
