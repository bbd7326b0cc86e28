"""A time zone guessed from the offsets a site writes in its feed dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

# Zones tried first, by the site's languages, then everyone's; the rest of IANA's list follows.
_BY_LANGUAGE = {
    "ar": [
        "Asia/Damascus",
        "Asia/Beirut",
        "Asia/Amman",
        "Asia/Baghdad",
        "Asia/Riyadh",
        "Africa/Cairo",
        "Asia/Dubai",
        "Asia/Qatar",
        "Africa/Casablanca",
        "Africa/Algiers",
        "Africa/Tunis",
        "Africa/Tripoli",
    ],
    "fr": ["Europe/Paris", "Europe/Brussels", "America/Montreal", "Africa/Casablanca"],
    "de": ["Europe/Berlin", "Europe/Vienna", "Europe/Zurich"],
    "es": ["Europe/Madrid", "America/Mexico_City", "America/Bogota", "America/Argentina/Buenos_Aires"],
    "tr": ["Europe/Istanbul"],
    "fa": ["Asia/Tehran"],
    "he": ["Asia/Jerusalem"],
    "ru": ["Europe/Moscow"],
}
_COMMON = ["UTC", "Europe/London", "Europe/Berlin", "Europe/Istanbul", "Asia/Dubai", "Asia/Karachi",
           "Asia/Kolkata", "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney", "America/New_York",
           "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Sao_Paulo"]  # fmt: skip


@dataclass(frozen=True)
class ZoneGuess:
    zone: str | None  # None: the dates do not tell (all in UTC, or none with an offset)
    reason: str
    also_fits: tuple[str, ...] = ()


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@cache
def _all_zones() -> tuple[str, ...]:
    return tuple(
        sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))
    )


def guess_zone(dates: list[datetime], languages: list[str]) -> ZoneGuess:
    if not dates:
        return ZoneGuess(None, "no feed date carries a UTC offset")
    offsets = {moment.utcoffset() or timedelta(0) for moment in dates}
    written = ", ".join(sorted(_offset_text(o) for o in offsets))
    if offsets == {timedelta(0)}:
        return ZoneGuess(
            None, "every feed date is written in UTC (+00:00), which does not tell the site's zone"
        )
    preferred = [z for language in languages for z in _BY_LANGUAGE.get(language, [])] + _COMMON
    ordered = list(dict.fromkeys(preferred + list(_all_zones())))
    fits = [zone for zone in ordered if _fits(zone, dates)]
    if not fits:
        return ZoneGuess(None, f"the feed dates' offsets ({written}) fit no single IANA zone")
    return ZoneGuess(fits[0], f"the feed dates are written at {written}", tuple(fits[1:4]))


def _fits(zone: str, dates: list[datetime]) -> bool:
    info = ZoneInfo(zone)
    return all(moment.astimezone(info).utcoffset() == moment.utcoffset() for moment in dates)
