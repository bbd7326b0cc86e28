"""Dates as sources write them (RFC 822, ISO 8601, YAML values) to aware UTC instants."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from email.utils import parsedate_tz

_ZONE_AT_END = re.compile(r"(?:[+-]\d{2}:?\d{2}|\b(?:UT|UTC|GMT|Z|[ECMP][SD]T|[A-IK-Z]))\s*$", re.IGNORECASE)


def parse_datetime(text: str | None) -> datetime | None:
    """RFC 822 (RSS) or ISO 8601 / RFC 3339 (Atom, JSON Feed, front matter). Naive when the text names
    no zone: the caller decides which zone that means. None when it is not a date."""
    if not text or not text.strip():
        return None
    text = text.strip()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    parsed = parsedate_tz(text)
    if parsed is None:
        return None
    try:
        naive = datetime(*parsed[:6])
    except (TypeError, ValueError):
        return None
    # parsedate_tz reports offset 0 both for "GMT" and for no zone at all: look at the text itself.
    if not _ZONE_AT_END.search(text):
        return naive
    return naive.replace(tzinfo=timezone(timedelta(seconds=parsed[9] or 0)))


def coerce_datetime(value: object) -> datetime | None:
    """A datetime from what YAML or JSON gives: datetime, date (midnight), or text. Raises ValueError
    for a value that is there but is not a date."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"{value!r} is not a date (write 2024-12-02 09:15 or 2024-12-02T09:15:00+03:00)")
        return parsed
    raise ValueError(f"{value!r} is not a date")


def to_utc(moment: datetime, zone: tzinfo) -> datetime:
    """Aware UTC. A naive moment is wall-clock time in `zone` (the site's time zone)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)
