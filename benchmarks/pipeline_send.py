"""Whole send stage (ledger + personalization + a transport) for N subscribers: speed and memory.

Not a test. Run:  .venv/bin/python benchmarks/pipeline_send.py [--subscribers 20000] [--store-url URL]

It fills a store with N subscribers, runs the real pipeline (collect the sample articles, select,
render, fill the ledger, stream pending rows in batches, personalize, hand to a transport that only
counts bytes, mark deliveries sent, committed in groups) in the store --store-url names (a fresh database on that
PostgreSQL server, or a new SQLite file; unreachable: the benchmark stops with the reason) and reports messages per second and peak
process memory (max RSS, which only grows: the small run goes first). Baseline, measured in the same process: personalizing the same number of messages from
the same template with no ledger at all, so the ratio is the price of "nothing sent twice, nothing
lost". Memory is measured at N/10 and N to show it stays flat as the list grows.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.stores import check_reachable, fresh_store, machine  # noqa: E402
from publisher.config import load_config  # noqa: E402
from publisher.models import OutgoingMessage, Recipient, SendReport, SendResult  # noqa: E402
from publisher.pipeline import collect, message_template, run_digests, select_digest  # noqa: E402
from publisher.store import Store  # noqa: E402
from publisher.store.schema import subscribers  # noqa: E402
from tests.conftest import write_config  # noqa: E402

DAY = date(2024, 12, 2)


class CountingTransport:
    """Accepts everything, keeps nothing: what is measured is our side of the send."""

    name = "counting"
    max_batch = 1

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport:
        results = []
        for message in batch:
            self.messages += 1
            self.bytes += len(message.data)
            results.append(SendResult(message.delivery_id, True, f"c{self.messages}"))
        return SendReport(results)

    def close(self) -> None:
        pass


def fill_subscribers(store: Store, count: int, *, language: str = "ar", offset: int = 0) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    with store.engine.begin() as connection:
        for start in range(offset, offset + count, 5_000):  # in chunks, so the benchmark itself stays flat too
            connection.execute(subscribers.insert(), [
                {"email": f"reader{i}@example.org", "name": f"قارئ {i}", "language": language, "status": "active",
                 "sections": "", "paused": False, "created_at": now, "updated_at": now}
                for i in range(start, min(start + 5_000, offset + count))
            ])


def measure(count: int, store_url: str, workdir: Path) -> dict[str, float]:
    directory = workdir / f"n{count}"
    directory.mkdir()
    config = load_config(write_config(directory, store_url=store_url))
    store = Store.open(config.store_url)
    fill_subscribers(store, count)
    collect(config, store)
    edition = config.edition("ar")

    # baseline: personalization alone, same template, same count, no ledger
    selected = select_digest(config, store, edition, DAY, dry_run=True)
    template = message_template(config, edition, selected, None)
    started = time.perf_counter()
    for i in range(count):
        template.personalize(Recipient(i, f"reader{i}@example.org", f"قارئ {i}", f"<b{i}@x>",
                                       f"https://x.test/u/{i}", f"https://x.test/p/{i}"))
    baseline = time.perf_counter() - started

    transport = CountingTransport()
    started = time.perf_counter()
    [outcome] = run_digests(config, store, DAY, editions=["ar"], transport=transport)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert outcome.send is not None and outcome.send.sent == count, outcome
    store.close()
    return {"count": count, "seconds": elapsed, "rate": count / elapsed, "baseline_rate": count / baseline,
            "rss_mib": peak / 2**20, "avg_kib": transport.bytes / count / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--store-url", help="e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test "
                        "(a fresh database is created there per measurement and dropped after)")
    args = parser.parse_args()
    if args.store_url:
        check_reachable(args.store_url)
    with tempfile.TemporaryDirectory() as workdir:
        small_count = max(args.subscribers // 10, 100)
        with fresh_store(args.store_url, Path(workdir), f"n{small_count}") as url:
            small = measure(small_count, url, Path(workdir))
            small["machine"] = machine()  # type: ignore[assignment]
        with fresh_store(args.store_url, Path(workdir), f"n{args.subscribers}") as url:
            large = measure(args.subscribers, url, Path(workdir))
            large["machine"] = machine()  # type: ignore[assignment]
    print(f"store: {args.store_url or 'SQLite in a temporary folder'}")
    print(f"{'subscribers':>12} {'msg/s (pipeline)':>17} {'msg/s (no ledger)':>18} {'ratio':>6} {'max RSS MiB':>12} {'KiB/msg':>8}")
    for row in (small, large):
        print(f"{row['count']:>12.0f} {row['rate']:>17.0f} {row['baseline_rate']:>18.0f} "
              f"{row['rate'] / row['baseline_rate']:>6.2f} {row['rss_mib']:>12.1f} {row['avg_kib']:>8.1f}  {row['machine']}")
    print(f"max RSS growth for 10x the subscribers: x{large['rss_mib'] / small['rss_mib']:.2f} (flat is ~1)")


if __name__ == "__main__":
    main()
