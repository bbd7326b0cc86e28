"""SIGTERM and SIGKILL in the middle of a send, then a restart.

"The middle" is not a moment on a clock: the SMTP sink accepts HELD messages, then holds its answer
to the next one until the test releases it, so the signal lands while exactly that message is in
flight. Every subscriber gets the digest exactly once; after SIGKILL only the message in flight may
arrive twice, and the restarted service takes the dead process's lease over at once.
"""

from __future__ import annotations

import signal
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from publisher.config import load_config
from publisher.store import Store
from tests.support.smtp_sink import SmtpSinkProcess
from tests.test_service_process import ServeProcess
from tests.test_service_sending import received, sending_site, wait_until

pytestmark = pytest.mark.slow

SUBSCRIBERS = 60
HELD = 10  # messages the sink accepts before it holds the next one


def open_store(path: Path) -> tuple[Store, int]:
    config = load_config(path)
    store = Store.open(config.store_url)
    record = store.digests.find("en", datetime.now(config.site.zone).date())
    assert record is not None
    return store, record.id


def test_sigterm_mid_send_stops_after_the_message_in_flight_and_a_restart_completes_the_digest(
    tmp_path: Path,
) -> None:
    record = tmp_path / "received.txt"
    with SmtpSinkProcess(record=record, hold_after=HELD) as sink:
        path, emails = sending_site(tmp_path, smtp_port=sink.port, subscribers=SUBSCRIBERS)
        with ServeProcess(path, name="first") as first:
            assert sink.wait_holding() == HELD
            first.send(signal.SIGTERM)
            first.wait_for(r"serve: SIGTERM received")  # the stop is requested before the held reply comes
            sink.release()
            assert first.wait() == 0, first.text()[-2000:]
        at_stop = len(received(record))
        assert at_stop == HELD + 1, "the message in flight is finished, no other is begun"
        store, digest_id = open_store(path)
        try:
            digest = store.digests.get(digest_id)
            assert digest is not None and digest.status == "sending"
            assert store.deliveries.counts(digest_id)["sent"] == at_stop
            assert [(run.status, run.reason) for run in store.jobs.recent(5)] == [
                ("interrupted", f"stopped after {at_stop} sent; the next start sends the rest")
            ]
        finally:
            store.close()

        with ServeProcess(path, name="second") as second:
            second.wait_for(r"resume: digest en \S+ is sending; completing it")
            wait_until(lambda: len(received(record)) >= len(emails), 60, "the rest of the digest")
            assert second.signal(signal.SIGTERM) == 0
    assert sorted(received(record)) == emails


@pytest.mark.parametrize("store_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigkill_mid_send_loses_nothing_and_a_restart_takes_over_at_once(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> None:
    store_url = None if store_kind == "sqlite" else str(request.getfixturevalue("postgres_url"))
    record = tmp_path / "received.txt"
    with SmtpSinkProcess(record=record, hold_after=HELD) as sink:
        path, emails = sending_site(tmp_path, smtp_port=sink.port, subscribers=SUBSCRIBERS, store_url=store_url)
        with ServeProcess(path, name="first") as first:
            assert sink.wait_holding() == HELD
            assert first.signal(signal.SIGKILL) == -signal.SIGKILL
        at_kill = len(received(record))
        assert at_kill == HELD
        sink.release()  # the held message may now be accepted too: it is the one in flight
        store, digest_id = open_store(path)
        try:
            holder, until = store.digests.lease_holder(digest_id)
            assert holder is not None and f":{first.pid}:" in holder and until is not None

            with ServeProcess(path, "--tick-seconds", "0.5", name="second") as second:
                # the holder's process is gone (same machine): its lease is void at once, no 2-minute wait
                second.wait_for(r"resume: digest en \S+ is sending; completing it")
                wait_until(lambda: len(received(record)) >= len(emails), 60, "the rest of the digest")
                assert second.signal(signal.SIGTERM) == 0
            digest = store.digests.get(digest_id)
            assert digest is not None and digest.status == "done"
            runs = store.jobs.recent(5)
            killed = [run for run in runs if (run.owner or "").endswith(f":{first.pid}")]
            assert [(run.status, (run.reason or "").startswith("completed later by")) for run in killed] == [
                ("done", True)
            ], runs
            # the schedule is every minute: a slot that came while the second service ran finds the digest done
            assert all(run.status == "done" for run in runs), runs
        finally:
            store.close()
    copies = Counter(received(record))
    assert sorted(copies) == emails, "every subscriber got the digest"
    assert sum(copies.values()) - len(emails) <= 1, f"only the message in flight may repeat: {copies.most_common(3)}"
