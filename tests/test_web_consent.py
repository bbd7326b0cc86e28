"""publisher/store/consent.py on SQLite and PostgreSQL (limits, pending rows, confirmation links), and the
confirmation email's MJML under the official validator."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from publisher.config import SiteSettings
from publisher.models import SubscriberStatus
from publisher.render.confirmation import ConfirmationRenderer
from publisher.render.templates import make_environment
from publisher.store import Store
from publisher.store.consent import ConsentRepository, client_key
from publisher.store.subscribers import email_hash
from publisher.web.strings import load_web_strings

NOW = datetime(2024, 12, 2, 9, 0, tzinfo=UTC)


def test_allow_counts_within_the_window_only(store: Store) -> None:
    consent = ConsentRepository(store.engine)
    window = timedelta(hours=1)
    key = client_key("127.0.0.1")
    assert "127.0.0.1" not in key
    results = [consent.allow("c", key, limit=2, window=window, now=NOW + timedelta(minutes=i)) for i in range(3)]
    assert results == [True, True, False]
    assert consent.allow("c", "another", limit=2, window=window, now=NOW)  # keys are separate
    assert consent.allow("other-kind", key, limit=1, window=window, now=NOW)  # kinds are separate
    assert consent.allow("c", key, limit=2, window=window, now=NOW + timedelta(minutes=61))  # first one aged out
    assert not consent.allow("c", key, limit=2, window=window, now=NOW + timedelta(minutes=61))


def test_prepare_pending_never_changes_a_status(store: Store) -> None:
    consent = ConsentRepository(store.engine)
    fresh = consent.prepare_pending("New@Example.org", name="N", language="ar", sections=["culture"], now=NOW)
    assert fresh.previous_status is None
    subscriber = store.subscribers.get(fresh.subscriber_id)
    assert subscriber is not None and subscriber.email == "new@example.org"
    assert (subscriber.status, subscriber.language, subscriber.sections) == (SubscriberStatus.PENDING, "ar", ("culture",))
    for status in (SubscriberStatus.ACTIVE, SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.COMPLAINED):
        email = f"{status.value}@example.org"
        store.subscribers.upsert(email, name="Old", language="en", status=status)
        again = consent.prepare_pending(email, name="New", language="ar", sections=[], now=NOW)
        assert again.previous_status is status
        row = store.subscribers.get(again.subscriber_id)
        assert row is not None and row.status is status
        assert row.name == ("Old" if status is SubscriberStatus.ACTIVE else "New")  # an active row is not touched


def test_a_confirmation_link_confirms_once_and_lifts_a_suppression(store: Store) -> None:
    consent = ConsentRepository(store.engine)
    store.subscribers.upsert("back@example.org", language="en")
    old = store.subscribers.by_email("back@example.org")
    assert old is not None
    store.subscribers.forget(old.id)
    pending = consent.prepare_pending("back@example.org", name="", language="en", sections=[], now=NOW)
    assert not consent.confirm(pending.subscriber_id, "never-sent", now=NOW)
    consent.open_confirmation(pending.subscriber_id, "link-1", now=NOW)
    consent.open_confirmation(pending.subscriber_id, "link-2", now=NOW)
    assert consent.is_open(pending.subscriber_id, "link-1")
    assert not consent.is_open(pending.subscriber_id + 1, "link-1")  # bound to its subscriber
    assert consent.confirm(pending.subscriber_id, "link-1", now=NOW)
    assert not store.subscribers.is_suppressed("back@example.org")
    assert store.subscribers.by_email("back@example.org").status is SubscriberStatus.ACTIVE  # type: ignore[union-attr]
    assert not consent.is_open(pending.subscriber_id, "link-2")  # the others closed with it
    assert not consent.confirm(pending.subscriber_id, "link-1", now=NOW)


def test_unsubscribe_is_idempotent_and_closes_open_links(store: Store) -> None:
    consent = ConsentRepository(store.engine)
    store.subscribers.upsert("a@example.org", language="en")
    subscriber = store.subscribers.by_email("a@example.org")
    assert subscriber is not None
    consent.open_confirmation(subscriber.id, "link", now=NOW)
    assert consent.unsubscribe(subscriber.id, reason="test") is SubscriberStatus.ACTIVE
    assert consent.unsubscribe(subscriber.id, reason="test") is SubscriberStatus.UNSUBSCRIBED
    assert not consent.is_open(subscriber.id, "link")
    assert consent.unsubscribe(subscriber.id + 1000, reason="test") is None
    store.subscribers.upsert("b@example.org", language="en", status=SubscriberStatus.BOUNCED)
    bounced = store.subscribers.by_email("b@example.org")
    assert bounced is not None
    assert consent.unsubscribe(bounced.id, reason="test") is SubscriberStatus.BOUNCED
    assert store.subscribers.get(bounced.id).status is SubscriberStatus.BOUNCED  # type: ignore[union-attr]


def test_prune_forgets_old_events_but_keeps_recent_links(store: Store) -> None:
    consent = ConsentRepository(store.engine)
    consent.allow("c", email_hash("x@example.org"), limit=5, window=timedelta(days=1), now=NOW - timedelta(days=3))
    consent.allow("c", email_hash("y@example.org"), limit=5, window=timedelta(days=1), now=NOW)
    consent.open_confirmation(1, "recent", now=NOW - timedelta(days=3))
    assert consent.prune(timedelta(days=2), now=NOW) == 1
    assert consent.is_open(1, "recent")
    assert consent.prune(timedelta(days=2), now=NOW + timedelta(days=40)) == 2


@pytest.mark.slow
@pytest.mark.parametrize("language", ["en", "ar"])
def test_confirmation_mjml_passes_strict_validation(language: str, tmp_path: Path, mjml_cli: str) -> None:
    """The official compiler (npm mjml) validates what mjml-python would silently drop."""
    cli = mjml_cli
    env = make_environment(None)
    site = SiteSettings(name="Levant Today", base_url="https://news.example.org",
                        logo_url="https://news.example.org/logo.png", secret="test-secret-0123456789")
    source = ConfirmationRenderer(env, site, language, load_web_strings(env, language)).render_mjml(
        confirm_url="https://news.example.org/confirm/x", edition_title="Morning <&>", name="Sam", expires_hours=48
    )
    path = tmp_path / f"confirm-{language}.mjml"
    path.write_text(source, encoding="utf-8")
    result = subprocess.run([cli, "-v", str(path), "--config.validationLevel=strict"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
