"""Articles in the store: upsert from every source (deduplicated by id), read for digests and feeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from publisher.models import Article, StoredArticle
from publisher.store.schema import articles, digest_articles

_ARTICLE_FIELDS = [f.name for f in dataclasses.fields(Article) if f.name != "id"]
# What readers see of an article: a difference here is a changed article.
_TEXT_FIELDS = ("url", "title", "language", "summary", "content_html", "section", "author", "source_credit",
                "image_url", "image_caption", "image_alt", "image_type", "image_length")  # fmt: skip
_CHUNK = 500  # keys per IN (...) query


@dataclass
class UpsertCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


def primary_language(tag: str) -> str:
    """Articles are stored under their primary subtag: an edition in ar-SY reads the ar articles."""
    return tag.replace("_", "-").split("-", 1)[0].lower()


def _row_values(article: Article) -> dict[str, Any]:
    values = {name: getattr(article, name) for name in _ARTICLE_FIELDS}
    values["uid"] = article.id
    return values


def _replacement(article: Article, current: dict[str, Any]) -> dict[str, Any] | None:
    """The values that replace a stored match, or None when it stays as it is."""
    values = _row_values(article)
    values.pop("uid")  # a match by URL keeps the id it was stored under
    changed = any(values[name] != current[name] for name in _TEXT_FIELDS)
    if article.undated:
        if not changed:
            return None
        for kept in ("published_at", "updated_at", "undated"):
            values.pop(kept)
        return values
    if article.updated_at > current["updated_at"]:
        return values
    if article.updated_at == current["updated_at"] and changed and article.source_name == current["source_name"]:
        return values  # a corrected copy (readable where the stored one was not, say)
    return None


def _to_article(row: Row[Any]) -> StoredArticle:
    mapping = row._mapping
    values = {name: mapping[name] for name in _ARTICLE_FIELDS}
    return StoredArticle(id=mapping["uid"], first_seen_at=mapping["first_seen_at"], **values)


class ArticleRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def upsert(self, items: Iterable[Article], *, now: datetime | None = None) -> UpsertCounts:
        """Store a source's articles in one transaction, with a few round trips per thousand.

        An article matches a stored one by id or, failing that, by canonical URL: the same story from
        two sources, or from a renamed source, is one article (the stored id stays). A match is
        replaced by a newer version (updated_at later), or by different text of the same date from the
        same source (a corrected copy). An undated article keeps its first-seen time forever: new text
        replaces the old, but published_at and updated_at stay, so readers never see it as new again.
        first_seen_at is kept from the first sighting: it decides whether an article is late.
        """
        now = now or datetime.now(UTC)
        batch = list(items)
        try:
            return self._upsert(batch, now)
        except IntegrityError:
            # another process (a second service collecting) inserted one a moment ago: now it is a match
            return self._upsert(batch, now)

    def _upsert(self, batch: list[Article], now: datetime) -> UpsertCounts:
        counts = UpsertCounts()
        with self._engine.begin() as connection:
            by_uid, by_url = self._existing(connection, batch)
            inserts: dict[str, dict[str, Any]] = {}  # uid -> row values, in order
            pending_url: dict[str, str] = {}  # canonical url -> uid of a pending insert
            updates: dict[int, dict[str, Any]] = {}
            for article in batch:
                pending = inserts.get(article.id) or inserts.get(pending_url.get(article.canonical_url, ""))
                if pending is not None:  # the same story twice in one batch: the newer version wins
                    if article.updated_at > pending["updated_at"] and not article.undated:
                        pending.update(_row_values(article), uid=pending["uid"], first_seen_at=now)
                    counts.unchanged += 1
                    continue
                current = by_uid.get(article.id) or (by_url.get(article.canonical_url) if article.canonical_url else None)
                if current is None:
                    inserts[article.id] = {**_row_values(article), "first_seen_at": now}
                    if article.canonical_url:
                        pending_url[article.canonical_url] = article.id
                    counts.new += 1
                    continue
                values = _replacement(article, current)
                if values is None:
                    counts.unchanged += 1
                    continue
                updates.setdefault(current["pk"], {}).update(values)
                current.update(values)
            if inserts:
                connection.execute(articles.insert(), list(inserts.values()))
            for pk, values in updates.items():
                connection.execute(articles.update().where(articles.c.pk == pk).values(**values))
        counts.updated = len(updates)
        return counts

    def _existing(
        self, connection: Connection, batch: list[Article]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Stored rows matching the batch by uid, and by canonical URL."""
        columns = [articles.c.pk, articles.c.uid, *(articles.c[name] for name in _ARTICLE_FIELDS)]
        by_uid: dict[str, dict[str, Any]] = {}
        by_url: dict[str, dict[str, Any]] = {}
        uids = list(dict.fromkeys(a.id for a in batch))
        for column, keys in ((articles.c.uid, uids), (articles.c.canonical_url, None)):
            if keys is None:  # by URL only what the ids did not find (a re-read finds them all by id)
                keys = list(
                    dict.fromkeys(
                        a.canonical_url
                        for a in batch
                        if a.canonical_url and a.id not in by_uid and a.canonical_url not in by_url
                    )
                )
            for start in range(0, len(keys), _CHUNK):
                query = select(*columns).where(column.in_(keys[start : start + _CHUNK]))
                for row in connection.execute(query):
                    found = by_uid.setdefault(row.uid, dict(row._mapping))
                    if found["canonical_url"]:
                        by_url.setdefault(found["canonical_url"], found)
        return by_uid, by_url

    def candidates(
        self,
        *,
        edition: str,
        language: str,
        day_start: datetime,
        day_end: datetime,
        late_since: datetime | None,
    ) -> list[tuple[int, StoredArticle]]:
        """Articles of one language that may go into the digest of [day_start, day_end).

        Published that day, or published earlier but first seen after the edition's previous digest
        was made (late or backdated) — and in no digest of this edition yet.
        """
        in_a_digest = exists().where(
            and_(digest_articles.c.article_pk == articles.c.pk, digest_articles.c.edition == edition)
        )
        window = and_(articles.c.published_at >= day_start, articles.c.published_at < day_end)
        condition = window
        if late_since is not None:
            late = and_(articles.c.published_at < day_start, articles.c.first_seen_at > late_since)
            condition = or_(window, late)
        query = (
            select(articles)
            .where(articles.c.language == primary_language(language), condition, ~in_a_digest)
            .order_by(articles.c.published_at.desc(), articles.c.pk.desc())
        )
        with self._engine.connect() as connection:
            return [(row.pk, _to_article(row)) for row in connection.execute(query)]

    def in_digest(self, digest_id: int) -> list[StoredArticle]:
        query = (
            select(articles)
            .join(digest_articles, digest_articles.c.article_pk == articles.c.pk)
            .where(digest_articles.c.digest_id == digest_id)
            .order_by(digest_articles.c.position)
        )
        with self._engine.connect() as connection:
            return [_to_article(row) for row in connection.execute(query)]

    def latest(self, language: str, limit: int, *, section: str | None = None) -> list[StoredArticle]:
        """Newest first, for feeds (of a section when given). Ties broken by id so the order never
        flips between runs."""
        query = select(articles).where(articles.c.language == primary_language(language))
        if section is not None:
            query = query.where(articles.c.section == section)
        query = query.order_by(articles.c.published_at.desc(), articles.c.uid).limit(limit)
        with self._engine.connect() as connection:
            return [_to_article(row) for row in connection.execute(query)]

    def arrived(self, language: str, *, offset: int, limit: int) -> list[StoredArticle]:
        """Oldest first, in the order they entered the store: pages that never change once full,
        for archived feeds (RFC 5005). A later edit of an article keeps its place."""
        query = (
            select(articles)
            .where(articles.c.language == primary_language(language))
            .order_by(articles.c.pk)
            .offset(offset)
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [_to_article(row) for row in connection.execute(query)]

    def count_in(self, language: str) -> int:
        query = select(func.count()).select_from(articles).where(articles.c.language == primary_language(language))
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def sections(self, language: str) -> list[str]:
        """The sections articles of a language were filed under, sorted; articles with none are left out."""
        query = select(articles.c.section).where(articles.c.language == primary_language(language), articles.c.section.is_not(None))
        with self._engine.connect() as connection:
            return sorted({str(r[0]) for r in connection.execute(query.distinct()) if r[0]})

    def languages(self) -> list[str]:
        with self._engine.connect() as connection:
            return sorted(r[0] for r in connection.execute(select(articles.c.language).distinct()))

    def count(self) -> int:
        with self._engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(articles)).scalar_one())

