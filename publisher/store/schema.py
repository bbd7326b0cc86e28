"""Tables of the store, and the program's own schema creation and upgrade.

SQLAlchemy Core, so the same statements run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; every instant must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UTCDateTime, nullable=False),
)

articles = Table(
    "articles",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("uid", String(1024), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("language", String(16), nullable=False),
    Column("published_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("source_name", String(200), nullable=False),
    Column("summary", Text, nullable=False, default=""),
    Column("content_html", Text, nullable=False, default=""),
    Column("section", String(100)),
    Column("author", Text),
    Column("source_credit", Text),
    Column("image_url", Text),
    Column("image_caption", Text),
    Column("image_alt", Text),
    Column("image_type", String(100)),
    Column("image_length", Integer),
    Column("undated", Boolean, nullable=False, default=False),
    Column("canonical_url", Text),  # the same story from another source (or a renamed one) matches it
    Index("ix_articles_language_published", "language", "published_at"),
    Index("ix_articles_canonical_url", "canonical_url"),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", Text, nullable=False, default=""),
    Column("language", String(16), nullable=False),
    Column("status", String(20), nullable=False),
    Column("sections", Text, nullable=False, default=""),  # comma-separated; empty = all
    Column("paused", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("confirmed_at", UTCDateTime),
    Column("status_reason", Text),
    Index("ix_subscribers_language_status", "language", "status"),
    # Ids are never reused after a delete: tokens in old mails name an id, and must never reach a
    # newer subscriber.
    sqlite_autoincrement=True,
)

# Addresses that asked to be forgotten: only a hash is kept, so an import cannot re-add them silently.
suppressions = Table(
    "suppressions",
    metadata,
    Column("email_hash", String(64), primary_key=True),
    Column("reason", String(40), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

digests = Table(
    "digests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("edition", String(100), nullable=False),
    Column("day", Date, nullable=False),
    Column("status", String(20), nullable=False),  # selected, rendered, sending, done, skipped
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("subject", Text),
    Column("html", Text),
    Column("text", Text),
    Column("preheader", Text),
    Column("language", String(16)),
    Column("direction", String(3)),
    Column("recipients", Integer),
    Column("lease_owner", String(200)),
    Column("lease_until", UTCDateTime),
    Column("note", Text),
    UniqueConstraint("edition", "day", name="uq_digests_edition_day"),
)

digest_articles = Table(
    "digest_articles",
    metadata,
    Column("digest_id", Integer, ForeignKey("digests.id", ondelete="CASCADE"), nullable=False),
    Column("edition", String(100), nullable=False),
    Column("article_pk", Integer, ForeignKey("articles.pk"), nullable=False),
    Column("position", Integer, nullable=False),
    # An article is never in two digests of one edition.
    UniqueConstraint("edition", "article_pk", name="uq_digest_articles_edition_article"),
    Index("ix_digest_articles_digest", "digest_id", "position"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest_id", Integer, ForeignKey("digests.id", ondelete="CASCADE"), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", Text),
    Column("provider_message_id", Text),
    Column("sent_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
    UniqueConstraint("digest_id", "subscriber_id", name="uq_deliveries_digest_subscriber"),
    Index("ix_deliveries_digest_status", "digest_id", "status", "id"),
)

source_states = Table(
    "source_states",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("last_success_at", UTCDateTime),
    Column("last_error", Text),
    Column("last_error_at", UTCDateTime),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("last_count", Integer),
    Column("content_digest", Text),  # a feed read whose bytes and settings give this is unchanged
)

# One row per scheduled slot of a job: decides who runs it and records skipped (too late) slots.
job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(200), nullable=False),
    Column("slot", UTCDateTime, nullable=False),
    Column("status", String(20), nullable=False),  # running, done, failed, skipped
    Column("owner", String(200)),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("reason", Text),
    UniqueConstraint("job", "slot", name="uq_job_runs_job_slot"),
)

# Confirmations sent per address and per client, for abuse limits of the subscribe form.
rate_events = Table(
    "rate_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(40), nullable=False),
    Column("key", String(200), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_rate_events_kind_key_at", "kind", "key", "at"),
)

# Provider webhook events already applied (replay protection), kept until they expire: after a restart
# a captured signature or event id is still refused.
replay_ids = Table(
    "replay_ids",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(20), nullable=False),
    Column("replay_id", String(200), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    UniqueConstraint("provider", "replay_id", name="uq_replay_ids_provider_replay_id"),
    Index("ix_replay_ids_expires_at", "expires_at"),
)

# Confirmation mails asked for on the subscribe form: queued by the request, sent by a worker, so that
# every request does the same work whatever the address.
confirmation_outbox = Table(
    "confirmation_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    Column("name", Text, nullable=False, default=""),
    Column("language", String(16), nullable=False),
    Column("sections", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("claimed_until", UTCDateTime),
    Column("subscriber_id", Integer),  # set once the pending row and the link exist
    Column("token", String(200)),
    Index("ix_confirmation_outbox_next_attempt_at", "next_attempt_at"),
)


# Every change of a subscriber's status, with its reason: the console's history and growth chart.
# Written by a trigger (below), so every path that changes a status (import, consent pages, webhooks,
# bounces at send time) is recorded without each having to remember. Joining is subscribers.created_at.
# Deleted with the subscriber (a bounce reason can quote the address).
subscriber_events = Table(
    "subscriber_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", Text),
    Index("ix_subscriber_events_subscriber", "subscriber_id", "at"),
    Index("ix_subscriber_events_at", "at", "status"),
)


# One row per click on a story link of a digest (analytics.clicks). The subscriber only with
# analytics.per_subscriber (else NULL); forgetting a subscriber keeps the click, not the name.
click_events = Table(
    "click_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest_id", Integer, ForeignKey("digests.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="SET NULL")),
    Index("ix_click_events_digest", "digest_id", "position"),
    Index("ix_click_events_subscriber", "subscriber_id", "at"),
)


# One row per load of a digest's open pixel (analytics.opens); the subscriber as for clicks.
open_events = Table(
    "open_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest_id", Integer, ForeignKey("digests.id", ondelete="CASCADE"), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="SET NULL")),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_open_events_digest", "digest_id", "subscriber_id"),
    Index("ix_open_events_subscriber", "subscriber_id", "at"),
)


# Section variants of a digest (a subscriber's chosen sections), frozen like the digest itself.
digest_variants = Table(
    "digest_variants",
    metadata,
    Column("digest_id", Integer, ForeignKey("digests.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(1000), nullable=False),
    Column("value", Text, nullable=False),
    UniqueConstraint("digest_id", "key", name="uq_digest_variants_digest_key"),
)


# A channel's posts of a digest (a Telegram channel): one row per post, the ledger like deliveries.
channel_posts = Table(
    "channel_posts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest_id", Integer, ForeignKey("digests.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(200), nullable=False),
    Column("part", Integer, nullable=False),
    Column("label", Text, nullable=False, default=""),  # the headline or title naming the post
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", Text),
    Column("provider_message_id", Text),
    Column("sent_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
    UniqueConstraint("digest_id", "channel", "part", name="uq_channel_posts_digest_channel_part"),
    Index("ix_channel_posts_digest_channel_status", "digest_id", "channel", "status", "id"),
)


def _initial(connection: Connection) -> None:
    metadata.create_all(connection)


_SQLITE_STATUS_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS subscriber_status_changed AFTER UPDATE OF status ON subscribers
WHEN OLD.status <> NEW.status
BEGIN
  INSERT INTO subscriber_events (subscriber_id, at, status, reason)
  VALUES (NEW.id, NEW.updated_at, NEW.status, NEW.status_reason);
END
"""
_PG_STATUS_FUNCTION = """
CREATE OR REPLACE FUNCTION publisher_subscriber_status_changed() RETURNS trigger AS $$
BEGIN
  IF NEW.status IS DISTINCT FROM OLD.status THEN
    INSERT INTO subscriber_events (subscriber_id, at, status, reason)
    VALUES (NEW.id, NEW.updated_at, NEW.status, NEW.status_reason);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql
"""
_PG_STATUS_TRIGGER = (
    "CREATE TRIGGER subscriber_status_changed AFTER UPDATE OF status ON subscribers "
    "FOR EACH ROW EXECUTE FUNCTION publisher_subscriber_status_changed()"
)


def _subscriber_events(connection: Connection) -> None:
    subscriber_events.create(connection, checkfirst=True)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_PG_STATUS_FUNCTION)
        connection.exec_driver_sql("DROP TRIGGER IF EXISTS subscriber_status_changed ON subscribers")
        connection.exec_driver_sql(_PG_STATUS_TRIGGER)
    else:
        connection.exec_driver_sql(_SQLITE_STATUS_TRIGGER)


# Append upgrades here; each runs once, in order, inside a transaction. On a new store _initial has
# already created every table, so each upgrade must be a no-op there (checkfirst, "if missing").
def _click_events(connection: Connection) -> None:
    click_events.create(connection, checkfirst=True)


def _webhook_replays_and_confirmation_outbox(connection: Connection) -> None:
    for table in (replay_ids, confirmation_outbox):
        table.create(connection, checkfirst=True)


def _articles_canonical_url(connection: Connection) -> None:
    """Stores made before articles were matched by canonical URL get the column (empty for old rows)."""
    if "canonical_url" not in {c["name"] for c in inspect(connection).get_columns("articles")}:
        connection.execute(text("ALTER TABLE articles ADD COLUMN canonical_url TEXT"))
        connection.execute(text("CREATE INDEX ix_articles_canonical_url ON articles (canonical_url)"))


def _source_content_digest(connection: Connection) -> None:
    """Stores made before unchanged feeds were recognized by their bytes get the column (empty)."""
    if "content_digest" not in {c["name"] for c in inspect(connection).get_columns("source_states")}:
        connection.execute(text("ALTER TABLE source_states ADD COLUMN content_digest TEXT"))


def _digest_variants(connection: Connection) -> None:
    digest_variants.create(connection, checkfirst=True)


def _channel_posts(connection: Connection) -> None:
    channel_posts.create(connection, checkfirst=True)


def _reader_clicks_and_opens(connection: Connection) -> None:
    """Click records name a subscriber (analytics.per_subscriber); opens get their table."""
    if "subscriber_id" not in {c["name"] for c in inspect(connection).get_columns("click_events")}:
        connection.execute(text("ALTER TABLE click_events ADD COLUMN subscriber_id INTEGER "
                                "REFERENCES subscribers (id) ON DELETE SET NULL"))
        connection.execute(text("CREATE INDEX ix_click_events_subscriber ON click_events (subscriber_id, at)"))
    open_events.create(connection, checkfirst=True)


# On PostgreSQL an UPDATE that changes no indexed column is HOT (no new index entries) only when the
# new row version fits on the old one's page: subscribers leaves a tenth of each page free for it
# (a changed name, edition or sections; `updated_at` is in no index). Only pages written from now
# on follow it, an existing table's pages as they are refilled. A whole-list rename in one batch
# transaction finds room for about a tenth of its rows (measured: 31,000 of 300,000 HOT); the
# scattered updates of everyday use (preferences, re-imports that change a few names) nearly all.
SUBSCRIBERS_FILLFACTOR = 90


def _subscribers_fillfactor(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ALTER TABLE subscribers SET (fillfactor = {SUBSCRIBERS_FILLFACTOR})")


MIGRATIONS: list[Callable[[Connection], Any]] = [
    _initial,
    _subscriber_events,
    _click_events,
    _webhook_replays_and_confirmation_outbox,
    _articles_canonical_url,
    _digest_variants,
    _channel_posts,
    _source_content_digest,
    _reader_clicks_and_opens,
    _subscribers_fillfactor,
]


def upgrade(connection: Connection) -> int:
    """Create or upgrade the schema to the newest version. Returns that version."""
    schema_version.create(connection, checkfirst=True)
    current = connection.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).first()
    version = current[0] if current else 0
    for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
        migration(connection)
        connection.execute(schema_version.insert().values(version=number, applied_at=datetime.now(UTC)))
    return len(MIGRATIONS)
