"""Refusals at send time, at 1,000 subscribers, through a real SMTP server on 127.0.0.1 that answers
per recipient: a refusal about the recipient bounces that subscriber and the send goes on however many
come in a row; only refusals about us stop the send, and then nobody is failed."""

from __future__ import annotations

from pathlib import Path

from publisher.delivery.mail.smtp import SmtpTransport
from publisher.models import SubscriberStatus
from publisher.pipeline import run_digests
from publisher.store import Store
from tests.support.send_world import DAY, DEAD, Recipients, add_subscribers, collected, make_config
from tests.support.smtp import RecordingSmtpServer, Scripted

LIVE_DOMAINS = ("mail.example.org", "inbox.example.net", "post.example.com", "box.example.info", "web.example.biz")


def address_list(total: int, dead: range, *, dead_domain: str = "old-provider.test") -> tuple[list[str], set[str]]:
    emails, dead_set = [], set()
    for i in range(total):
        if i in dead:
            email = f"gone{i:04d}@{dead_domain}"
            dead_set.add(email)
        else:
            email = f"reader{i:04d}@{LIVE_DOMAINS[i % len(LIVE_DOMAINS)]}"
        emails.append(email)
    return emails, dead_set


def send_once(tmp_path: Path, store_url: str, emails: list[str], replies: dict[str, str | Scripted],
              *, add: bool = True) -> tuple[Store, Recipients, object]:
    seen = Recipients()
    with RecordingSmtpServer(replies=replies, keep_messages=False, on_message=seen) as server:
        config = make_config(tmp_path, store_url, server.port)
        store = collected(config)
        if add:
            add_subscribers(store, emails)
        with SmtpTransport(config.mail.transport) as transport:  # type: ignore[arg-type]
            [outcome] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    return store, seen, outcome


def assert_dead_bounced_live_delivered(store: Store, seen: Recipients, outcome: object, emails: list[str],
                                       dead: set[str]) -> None:
    send = outcome.send  # type: ignore[attr-defined]
    assert send is not None and send.error is None, send.error
    assert (send.sent, send.failed, send.bounced, send.deferred) == (len(emails) - len(dead), len(dead), len(dead), 0)
    assert seen.counts == {email: 1 for email in emails if email not in dead}  # every live one, once
    record = store.digests.find("en", DAY)
    assert record is not None and record.status == "done"
    assert store.deliveries.counts(record.id) == {"pending": 0, "sent": len(emails) - len(dead),
                                                  "failed": len(dead), "skipped": 0}
    statuses = {e: store.subscribers.by_email(e).status for e in emails[:: 7] + sorted(dead)}  # type: ignore[union-attr]
    assert all((s is SubscriberStatus.BOUNCED) == (e in dead) for e, s in statuses.items()), statuses


def test_100_dead_addresses_first_among_1000_bounce_and_the_900_are_sent(tmp_path: Path, store_url: str) -> None:
    emails, dead = address_list(1000, range(0, 100))
    store, seen, outcome = send_once(tmp_path, store_url, emails, {e: DEAD for e in dead})
    try:
        assert_dead_bounced_live_delivered(store, seen, outcome, emails, dead)
    finally:
        store.close()


def test_100_dead_addresses_in_the_middle_bounce_and_nobody_live_fails(tmp_path: Path) -> None:
    emails, dead = address_list(1000, range(333, 433))
    store, seen, outcome = send_once(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", emails, {e: DEAD for e in dead})
    try:
        assert_dead_bounced_live_delivered(store, seen, outcome, emails, dead)
    finally:
        store.close()


def test_30_dead_at_one_domain_beside_live_ones_at_others(tmp_path: Path) -> None:
    emails, dead = address_list(1000, range(500, 530), dead_domain="closed-provider.test")
    # the domain's other readers are interleaved with the dead ones: a closed provider, not a block
    store, seen, outcome = send_once(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", emails, {e: DEAD for e in dead})
    try:
        assert_dead_bounced_live_delivered(store, seen, outcome, emails, dead)
    finally:
        store.close()


def test_a_reply_that_names_the_address_bounces_it(tmp_path: Path) -> None:
    emails, dead = address_list(60, range(10, 40))
    replies: dict[str, str | Scripted] = {e: f"550 <{e}>: Recipient address rejected" for e in dead}
    store, seen, outcome = send_once(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", emails, replies)
    try:
        assert_dead_bounced_live_delivered(store, seen, outcome, emails, dead)
    finally:
        store.close()


def test_relay_denied_for_everyone_stops_at_once_and_fails_nobody(tmp_path: Path, store_url: str) -> None:
    emails, _ = address_list(1000, range(0))
    replies: dict[str, str | Scripted] = {e: f"554 5.7.1 <{e}>: Relay access denied" for e in emails}
    store, seen, outcome = send_once(tmp_path, store_url, emails, replies)
    try:
        send = outcome.send  # type: ignore[attr-defined]
        assert send is not None and "Relay access denied" in (send.error or "")
        assert "hint: check mail.transport" in send.error
        assert (send.sent, send.failed, send.bounced, send.deferred) == (0, 0, 0, 1000)
        assert seen.counts == {}
        record = store.digests.find("en", DAY)
        assert record is not None and record.status == "sending"
        assert store.deliveries.counts(record.id)["pending"] == 1000
        tried = [r for r in store.deliveries.due(record.id, after_id=0, limit=1000) if r.attempts]
        assert tried == []  # the refusal was about us: no subscriber's attempt was spent on it
        waiting = store.deliveries.waiting(record.id)
        assert [count for _, count in waiting.reasons] == [999, 1]  # one asked, 999 never tried
        assert all(store.subscribers.by_email(e).status is SubscriberStatus.ACTIVE for e in emails[::50])  # type: ignore[union-attr]
    finally:
        store.close()


def test_the_same_policy_refusal_at_many_domains_stops_the_send_and_fails_nobody(tmp_path: Path) -> None:
    emails, _ = address_list(200, range(0))
    replies: dict[str, str | Scripted] = {e: "550 5.7.1 Message rejected by policy" for e in emails}
    store, seen, outcome = send_once(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", emails, replies)
    try:
        send = outcome.send  # type: ignore[attr-defined]
        assert send is not None and "stopped, nobody marked failed" in (send.error or "")
        assert (send.sent, send.failed, send.bounced, send.deferred) == (0, 0, 0, 200)
        assert seen.counts == {}
    finally:
        store.close()


def test_a_policy_refusal_for_some_readers_fails_them_and_the_send_goes_on(tmp_path: Path) -> None:
    emails, refused = address_list(300, range(100, 130), dead_domain="strict.test")
    # strict.test's readers come one in three among accepted ones: acceptances break every streak
    emails = [e for e in emails if e not in refused]
    for n, e in enumerate(sorted(refused)):
        emails.insert(100 + n * 3, e)
    replies: dict[str, str | Scripted] = {e: "550 5.7.1 Message rejected as spam" for e in refused}
    store, seen, outcome = send_once(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", emails, replies)
    try:
        send = outcome.send  # type: ignore[attr-defined]
        assert send is not None and send.error is None
        assert (send.sent, send.failed, send.bounced, send.deferred) == (270, 30, 0, 0)
        assert all(store.subscribers.by_email(e).status is SubscriberStatus.ACTIVE for e in refused)  # type: ignore[union-attr]
    finally:
        store.close()


def test_a_temporary_failure_is_retried_within_the_same_run(tmp_path: Path) -> None:
    emails, _ = address_list(40, range(0))
    busy = emails[3]
    replies: dict[str, str | Scripted] = {busy: Scripted("451 4.3.0 try again later", times=1)}
    store, seen, outcome = send_once(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", emails, replies)
    try:
        send = outcome.send  # type: ignore[attr-defined]
        # retry.first_delay is 0 here: its backoff passed while the others were sent
        assert send is not None and (send.sent, send.failed, send.deferred, send.retried) == (40, 0, 0, 1)
        assert seen.counts[busy] == 1
        record = store.digests.find("en", DAY)
        assert record is not None and record.status == "done"
    finally:
        store.close()


def test_a_retry_that_fails_again_with_nothing_else_to_send_waits_for_the_next_run(tmp_path: Path) -> None:
    emails, _ = address_list(40, range(0))
    busy = emails[3]
    replies: dict[str, str | Scripted] = {busy: Scripted("451 4.3.0 try again later", times=2)}
    store, seen, outcome = send_once(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", emails, replies)
    try:
        send = outcome.send  # type: ignore[attr-defined]
        # the second pass had only that row and got nothing accepted: no hammering a busy server in a loop
        assert send is not None and (send.sent, send.failed, send.deferred) == (39, 0, 1)
        assert send.deferred_reasons[0][0].startswith("451 4.3.0 try again later")
        assert busy not in seen.counts
    finally:
        store.close()


def test_past_the_retry_deadline_each_delivery_failed_is_named_with_its_last_reason(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from publisher.store.schema import digests

    emails, _ = address_list(5, range(0))
    busy = emails[2]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store, seen, first = send_once(tmp_path, url, emails, {busy: "451 4.2.2 mailbox full"})
    try:
        assert first.send is not None and first.send.deferred == 1  # type: ignore[attr-defined]
        record = store.digests.find("en", DAY)
        assert record is not None
        with store.engine.begin() as connection:
            connection.execute(digests.update().where(digests.c.id == record.id)
                               .values(started_at=datetime.now(UTC) - timedelta(hours=13)))
    finally:
        store.close()
    store, seen, later = send_once(tmp_path, url, emails, {busy: "451 4.2.2 mailbox full"}, add=False)
    try:
        send = later.send  # type: ignore[attr-defined]
        assert send is not None and (send.failed, send.deferred) == (1, 0)
        [(email, reason)] = send.failures
        assert email == busy and "retry deadline passed" in reason and "451 4.2.2 mailbox full" in reason
    finally:
        store.close()
