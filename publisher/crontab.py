"""Crontab lines as an operator means them (day-of-week 0 and 7 are Sunday).

Parsed and validated here, without APScheduler, so config validation and the scheduler agree.
APScheduler's own from_crontab reads day 0 as Monday; the scheduler module builds its trigger from
the translated fields below instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_RANGES = {
    "minute": (0, 59),
    "hour": (0, 23),
    "day": (1, 31),
    "month": (1, 12),
    "day_of_week": (0, 7),
}
_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_TOKEN = re.compile(r"^(\*|[a-z0-9]+(-[a-z0-9]+)?)(/\d+)?$")


class CrontabError(ValueError):
    pass


@dataclass(frozen=True)
class CronSpec:
    """Five crontab fields; day_of_week uses names (sun..sat) so no library can misread it."""

    line: str
    minute: str
    hour: str
    day: str
    month: str
    day_of_week: str


def _value(field_name: str, text: str) -> int:
    low, high = _RANGES[field_name]
    if field_name == "day_of_week" and text in _DAY_NAMES:
        return _DAY_NAMES.index(text)
    if field_name == "month" and text in _MONTH_NAMES:
        return _MONTH_NAMES.index(text) + 1
    if not text.isdigit():
        raise CrontabError(f"{field_name} {text!r} is not a number or a name")
    number = int(text)
    if not low <= number <= high:
        raise CrontabError(f"{field_name} {number} is outside {low}-{high}")
    return number


def _translate_dow(part: str) -> str:
    """Rewrite one day-of-week list item as day names: 0 and 7 -> sun, 1 -> mon, ..."""
    match = _TOKEN.match(part)
    if not match:
        raise CrontabError(f"day_of_week item {part!r} is not valid")
    base, step = match.group(1), match.group(3)
    every = int(step[1:]) if step else 1
    if every < 1:
        raise CrontabError(f"day_of_week step in {part!r} must be at least 1")
    if base == "*":
        if not step:
            return "*"
        days: range | list[int] = range(0, 7, every)
    elif "-" in base:
        first, last = (_value("day_of_week", piece) for piece in base.split("-"))
        if first > last:
            raise CrontabError(f"day_of_week range {base!r} runs backwards")
        days = range(first, last + 1, every)
    else:
        first = _value("day_of_week", base)
        days = range(first, 8, every) if step else [first]
    return ",".join(_DAY_NAMES[d] for d in sorted({d % 7 for d in days}))


def _check_field(field_name: str, text: str) -> str:
    for part in text.split(","):
        match = _TOKEN.match(part)
        if not match:
            raise CrontabError(f"{field_name} item {part!r} is not valid")
        base = match.group(1)
        if base != "*":
            for piece in base.split("-"):
                _value(field_name, piece)
    return text


def parse_crontab(line: str) -> CronSpec:
    """Parse "m h dom mon dow" (or an @alias). Raises CrontabError with what is wrong."""
    original = line
    text = _ALIASES.get(line.strip().lower(), line.strip().lower())
    fields = text.split()
    if len(fields) != 5:
        raise CrontabError(
            f"{original!r} has {len(fields)} fields; a crontab line has 5: minute hour day month day-of-week"
        )
    minute, hour, day, month, dow = fields
    _check_field("minute", minute)
    _check_field("hour", hour)
    _check_field("day", day)
    _check_field("month", month)
    translated = ",".join(_translate_dow(part) for part in dow.split(","))
    return CronSpec(original, minute, hour, day, month, translated)
