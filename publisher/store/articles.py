"""Articles in the store: upsert from every source (deduplicated by id), read for digests and feeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import IntegrityError

from publisher.models import Article, StoredArticle
from publisher.store.schema import articles, digest_articles

_ARTICLE_FIELDS = [f.name for f in dataclasses.fields(Article) if f.name != "id"]


@dataclass
class UpsertCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


def _row_values(article: Article) -> dict[str, Any]:
    values = {name: getattr(article, name) for name in _ARTICLE_FIELDS}
    values["uid"] = article.id
    return values


def _to_article(row: Row[Any]) -> StoredArticle:
    mapping = row._mapping
    values = {name: mapping[name] for name in _ARTICLE_FIELDS}
    return StoredArticle(id=mapping["uid"], first_seen_at=mapping["first_seen_at"], **values)


class ArticleRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def upsert(self, items: Iterable[Article], *, now: datetime | None = None) -> UpsertCounts:
        """Insert new articles; replace an existing one only with a newer version (updated_at later).

        first_seen_at is kept from the first sighting: it decides whether an article is late.
        """
        now = now or datetime.now(UTC)
        counts = UpsertCounts()
        with self._engine.begin() as connection:
            for article in items:
                current = connection.execute(
                    select(articles.c.pk, articles.c.updated_at).where(articles.c.uid == article.id)
                ).first()
                if current is None:
                    try:
                        with connection.begin_nested():
                            connection.execute(articles.insert().values(**_row_values(article), first_seen_at=now))
                        counts.new += 1
                        continue
                    except IntegrityError:
                        # another process (a second service collecting) inserted it a moment ago
                        current = connection.execute(
                            select(articles.c.pk, articles.c.updated_at).where(articles.c.uid == article.id)
                        ).one()
                if article.updated_at > current.updated_at:
                    values = _row_values(article)
                    if article.undated:
                        values.pop("published_at")  # keep when we first saw it
                    connection.execute(articles.update().where(articles.c.pk == current.pk).values(**values))
                    counts.updated += 1
                else:
                    counts.unchanged += 1
        return counts

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
            .where(articles.c.language == language, condition, ~in_a_digest)
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
        query = select(articles).where(articles.c.language == language)
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
            .where(articles.c.language == language)
            .order_by(articles.c.pk)
            .offset(offset)
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [_to_article(row) for row in connection.execute(query)]

    def count_in(self, language: str) -> int:
        query = select(func.count()).select_from(articles).where(articles.c.language == language)
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def sections(self, language: str) -> list[str]:
        """The sections articles of a language were filed under, sorted; articles with none are left out."""
        query = select(articles.c.section).where(articles.c.language == language, articles.c.section.is_not(None))
        with self._engine.connect() as connection:
            return sorted({str(r[0]) for r in connection.execute(query.distinct()) if r[0]})

    def languages(self) -> list[str]:
        with self._engine.connect() as connection:
            return sorted(r[0] for r in connection.execute(select(articles.c.language).distinct()))

    def count(self) -> int:
        with self._engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(articles)).scalar_one())

