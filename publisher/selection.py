"""Which articles go into which digest. Pure functions: the pipeline feeds them from the store.

"The day" is defined in the site's time zone; instants are compared in UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from publisher.models import Article

A = TypeVar("A", bound=Article)


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar day, as UTC instants (DST days are 23 or 25 hours long)."""
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def local_day(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


def split_stale(items: Sequence[A], *, day_start: datetime, day_end: datetime, max_age: timedelta) -> tuple[list[A], list[A]]:
    """(fresh, stale): an article published before the day (a late one, first seen since the last
    digest) is the day's news only when it is younger than `max_age` at the day's end. A source added
    with a backlog of October stories does not send them as December news."""
    oldest = day_end - max_age
    fresh = [a for a in items if a.published_at >= day_start or a.published_at >= oldest]
    stale = [a for a in items if a.published_at < day_start and a.published_at < oldest]
    return fresh, stale


def order_for_edition(items: Sequence[A], sections: Sequence[str]) -> list[A]:
    """The edition's section order first, other sections after (alphabetically), newest first within."""
    rank = {name: i for i, name in enumerate(sections)}

    def key(article: A) -> tuple[int, str, float, str]:
        section = article.section or ""
        known = section in rank
        return (rank[section] if known else len(rank), "" if known else section, -article.published_at.timestamp(), article.id)

    return sorted(items, key=key)


def choose(items: Sequence[A], sections: Sequence[str], limit: int) -> list[A]:
    """At most `limit` articles: the newest win the places, then they are shown in section order."""
    newest = sorted(items, key=lambda a: (-a.published_at.timestamp(), a.id))[:limit]
    return order_for_edition(newest, sections)
