"""The Jinja2 environment shared by the email digest and the web pages.

Templates are looked up in the operator's directory first, then in the packaged defaults, so an
operator overrides one file (say email/digest.mjml.j2 or email/strings.yaml) and inherits the rest.
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.dates import get_timezone

import publisher
from publisher.errors import TemplateError

PACKAGED_TEMPLATES = Path(publisher.__file__).parent / "templates"

# select_autoescape() only looks at the last suffix, so "digest.mjml.j2" would go unescaped and an
# article title could close an <mj-text> and inject markup. Decide on the full name instead.
_ESCAPED_SUFFIXES = (".html", ".htm", ".html.j2", ".mjml", ".mjml.j2", ".xml", ".xml.j2", ".svg")
_PLAIN_SUFFIXES = (".txt", ".txt.j2", ".text.j2", ".yaml", ".yml")


def autoescape_for(name: str | None) -> bool:
    """Escape HTML, MJML and XML templates; leave plain text alone; escape when unsure."""
    if name is None:
        return True  # templates built from strings: the safe default
    lowered = name.lower()
    if lowered.endswith(_PLAIN_SUFFIXES):
        return False
    return lowered.endswith(_ESCAPED_SUFFIXES) or not lowered.endswith(".j2")


def make_environment(operator_dir: Path | None) -> jinja2.Environment:
    """A Jinja2 environment: operator templates first (when the directory exists), then packaged ones.

    Undefined variables raise (StrictUndefined): a typo in an operator template fails the render
    instead of sending an email with a blank where a link should be.
    """
    loaders: list[jinja2.BaseLoader] = []
    if operator_dir is not None and Path(operator_dir).is_dir():
        loaders.append(jinja2.FileSystemLoader(str(operator_dir)))
    loaders.append(jinja2.FileSystemLoader(str(PACKAGED_TEMPLATES)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=autoescape_for,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["format_date"] = format_date
    env.filters["format_datetime"] = format_datetime
    env.filters["absolute_url"] = absolute_url
    env.filters["fill"] = fill
    env.globals["text_direction"] = text_direction
    return env


def parse_locale(language: str) -> Locale:
    """A babel Locale for a BCP 47 tag ("ar", "en-GB"); TemplateError with a remedy when unknown."""
    try:
        return Locale.parse(language.replace("-", "_"))
    except (UnknownLocaleError, ValueError) as exc:
        raise TemplateError(
            f"unknown language {language!r}: use a BCP 47 tag babel knows, such as 'en' or 'ar'"
        ) from exc


def text_direction(language: str) -> str:
    """'rtl' for Arabic, Hebrew, Persian ...; 'ltr' otherwise, as babel's CLDR data says."""
    return "rtl" if parse_locale(language).character_order == "right-to-left" else "ltr"


def format_date(value: date | datetime, format: str = "long", locale: str = "en") -> str:
    """A localized date: {{ day | format_date("full", locale="ar") }}."""
    return babel_format_date(value, format=format, locale=parse_locale(locale))


def format_datetime(
    value: datetime, format: str = "medium", locale: str = "en", tz: tzinfo | str | None = None
) -> str:
    """A localized date and time, in `tz` when given (an IANA name or a tzinfo)."""
    zone = get_timezone(tz) if isinstance(tz, str) else tz
    return babel_format_datetime(value, format=format, tzinfo=zone, locale=parse_locale(locale))


def absolute_url(url: str | None, base: str) -> str:
    """`url` made absolute against `base`; "" for empty input or any scheme but http(s)."""
    if not url:
        return ""
    joined = urljoin(base, url.strip())
    return joined if urlsplit(joined).scheme in ("http", "https") else ""


def fill(text: str, **values: object) -> str:
    """str.format for UI strings that hold {placeholders}: {{ strings.why | fill(site=site.name) }}.

    Unknown placeholders are left as they are rather than failing on an operator's translation.
    """

    class _Keep(dict[str, object]):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    try:
        return str(text).format_map(_Keep(values))
    except (ValueError, IndexError):
        return str(text)
