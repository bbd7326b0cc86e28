"""The first collect of a big feed: our whole collect stage against feedparser alone, same bytes.

Not a test. Run:  .venv/bin/python benchmarks/collect_feed.py [--entries 10000] [--runs 3]
                  [--store-url URL] [--profile]

It builds an RSS 2.0 feed of N entries (Arabic and English, HTML bodies with links and images, like a
newsroom's), serves it over loopback HTTP, and times, in the same process:
  - baseline: feedparser.parse of the same bytes (what any feed reader pays);
  - collect: the real pipeline.collect (download, decode, parse, normalize, sanitize, detect
    languages, store in one batch) into an empty store: the first collect;
  - again: the second collect of the same bytes, from a server without ETag or Last-Modified
    (recognized by their digest, not parsed again);
  - edited: a third collect after one entry's title changed (the whole feed read again, one update).
It prints entries per second for each, the ratio to feedparser's own parse (wall clock, and CPU time
of this process, which the other work on a shared machine disturbs less), the load average before
and after each run, and the medians of --runs runs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import feedparser  # noqa: E402

from benchmarks.stores import check_reachable, fresh_store  # noqa: E402
from publisher.config import load_config  # noqa: E402
from publisher.pipeline import collect  # noqa: E402
from publisher.store import Store  # noqa: E402
from tests.conftest import write_config  # noqa: E402
from tests.fixtures.sources.loopback import LoopbackHttpServer  # noqa: E402

T = TypeVar("T")
NAMES = (
    "feedparser.parse (baseline)",
    "first collect",
    "second collect (unchanged)",  # the same bytes again, from a server without ETag
    "third collect (1 entry edited)",  # every entry read again, one updated
)

AR_TITLE = "تصعيد عسكري في الشمال وسط مخاوف من موجة نزوح جديدة رقم {n}"
EN_TITLE = "Water talks resume in Amman, round {n}"
AR_BODY = "<p>قالت مصادر محلية إن القصف تجدد صباح الاثنين على قرى في الريف الشمالي، <a href=\"/ar/{n}\">التفاصيل</a>.</p><p><img src=\"/img/{n}.jpg\" alt=\"صورة\"></p>"
EN_BODY = "<p>Delegations met for a <em>second</em> round of talks on shared water, <a href=\"/en/{n}?utm_source=rss\">more</a>.</p><p><img src=\"/img/{n}.jpg\" alt=\"photo\"></p>"


def build_feed(entries: int) -> bytes:
    items = []
    for n in range(entries):
        arabic = n % 2 == 0
        title = (AR_TITLE if arabic else EN_TITLE).format(n=n)
        body = (AR_BODY if arabic else EN_BODY).format(n=n)
        hour, minute = (n // 60) % 24, n % 60
        items.append(
            f"<item><title>{title}</title><link>https://news.example.org/{'ar' if arabic else 'en'}/story/{n}</link>"
            f"<guid isPermaLink=\"false\">story-{n}</guid><pubDate>Mon, 02 Dec 2024 {hour:02d}:{minute:02d}:00 +0300</pubDate>"
            f"<category>politics</category><description><![CDATA[{body}]]></description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Levant Today</title>'
        "<link>https://news.example.org/</link><language>ar</language>" + "".join(items) + "</channel></rss>"
    ).encode()


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages: figures from a shared machine mean little without them."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@dataclass
class Timing:
    wall: float
    cpu: float  # this process only: less disturbed by the other work on a shared machine


def timed(work: Callable[[], T]) -> tuple[T, Timing]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, Timing(time.perf_counter() - wall, time.process_time() - cpu)


def one_run(
    body: bytes, entries: int, store_url: str, profile: bool
) -> tuple[Timing, Timing, Timing, Timing, str]:
    parsed, baseline = timed(
        lambda: feedparser.parse(io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False)
    )
    assert len(parsed.entries) == entries
    del parsed
    with tempfile.TemporaryDirectory() as scratch, LoopbackHttpServer() as server:
        url = server.route("/feed.xml", body, content_type="application/rss+xml")
        sources = f"  - kind: feed\n    name: big\n    url: {url}\n    timeout: 120\n"
        config = load_config(write_config(Path(scratch), store_url=store_url, sources=sources))
        store = Store.open(config.store_url)
        try:
            profiler = cProfile.Profile() if profile else None
            if profiler:
                profiler.enable()
            first, first_time = timed(lambda: collect(config, store))
            if profiler:
                profiler.disable()
            again, again_time = timed(lambda: collect(config, store))
            server.route("/feed.xml", body.replace(b"round 1<", b"round 1 (corrected)<", 1), content_type="application/rss+xml")
            edited, edited_time = timed(lambda: collect(config, store))
            stored = store.articles.count()
        finally:
            store.close()
    outcome, repeat, changed = first.sources[0], again.sources[0], edited.sources[0]
    assert outcome.error is None and outcome.new == entries == stored, (outcome.error, outcome.new, stored)
    assert repeat.error is None and repeat.new == 0 and repeat.updated == 0, (repeat.new, repeat.updated)
    assert repeat.not_modified, "the same bytes were parsed again"
    assert changed.error is None and (changed.new, changed.updated) == (0, 1), (changed.new, changed.updated)
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return baseline, first_time, again_time, edited_time, store_url.split(":")[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="measurements; the medians are printed last")
    parser.add_argument(
        "--store-url", default=None, help="default: SQLite in a temporary directory; every run gets a fresh store"
    )
    parser.add_argument("--profile", action="store_true", help="print the 25 costliest functions of a first collect")
    args = parser.parse_args(argv)
    logging.getLogger("publisher").setLevel(logging.ERROR)  # one warning per English item otherwise
    if args.store_url:
        check_reachable(args.store_url)
    body = build_feed(args.entries)
    print(f"{args.entries:,} entries, {len(body) / 1e6:.1f} MB; wall-clock seconds (CPU seconds of this process)")
    runs: list[tuple[Timing, ...]] = []
    for number in range(1, args.runs + 1):
        before = load_average()
        with tempfile.TemporaryDirectory() as scratch, fresh_store(args.store_url, Path(scratch), f"collect{number}") as url:
            *timings, store = one_run(body, args.entries, url, args.profile and number == 1)
        runs.append(tuple(timings))
        print(f"run {number}, store {store}, load average {before} -> {load_average()}")
        for name, timing in zip(NAMES, runs[-1], strict=True):
            print("  " + _line(name, timing, runs[-1][0], args.entries))
    if len(runs) > 1:
        medians = [Timing(median(r[i].wall for r in runs), median(r[i].cpu for r in runs)) for i in range(len(NAMES))]
        print(f"median of {len(runs)} runs")
        for name, timing in zip(NAMES, medians, strict=True):
            print("  " + _line(name, timing, medians[0], args.entries))


def _line(name: str, timing: Timing, baseline: Timing, entries: int) -> str:
    return (
        f"{name:<31} {timing.wall:6.2f} s ({timing.cpu:5.2f}) {entries / timing.wall:8,.0f} entries/s"
        f"  {timing.wall / baseline.wall:4.2f}x feedparser ({timing.cpu / baseline.cpu:4.2f}x in CPU)"
    )


if __name__ == "__main__":
    main()
