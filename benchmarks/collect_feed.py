"""The first collect of a big feed: our whole collect stage against feedparser alone, same bytes.

Not a test. Run:  .venv/bin/python benchmarks/collect_feed.py [--entries 10000] [--store-url URL]
                  [--profile]

It builds an RSS 2.0 feed of N entries (Arabic and English, HTML bodies with links and images, like a
newsroom's), serves it over loopback HTTP, and times, in the same process:
  - baseline: feedparser.parse of the same bytes (what any feed reader pays);
  - collect: the real pipeline.collect (download, decode, parse, normalize, sanitize, detect
    languages, store in one batch) into an empty store: the first collect;
  - again: the second collect of the same feed (every entry already stored, nothing changes).
It prints entries per second for each and the ratio to feedparser's own parse.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import feedparser  # noqa: E402

from publisher.config import load_config  # noqa: E402
from publisher.pipeline import collect  # noqa: E402
from publisher.store import Store  # noqa: E402
from tests.conftest import write_config  # noqa: E402
from tests.fixtures.sources.loopback import LoopbackHttpServer  # noqa: E402

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--store-url", default=None, help="default: SQLite in a temporary directory")
    parser.add_argument("--profile", action="store_true", help="print the 25 costliest functions of the collect")
    args = parser.parse_args(argv)
    logging.getLogger("publisher").setLevel(logging.ERROR)  # one warning per English item otherwise
    body = build_feed(args.entries)

    started = time.perf_counter()
    parsed = feedparser.parse(io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False)
    baseline = time.perf_counter() - started
    assert len(parsed.entries) == args.entries

    with tempfile.TemporaryDirectory() as scratch, LoopbackHttpServer() as server:
        url = server.route("/feed.xml", body, content_type="application/rss+xml")
        sources = f"  - kind: feed\n    name: big\n    url: {url}\n    timeout: 120\n"
        store_url = args.store_url or f"sqlite:///{Path(scratch) / 'store.db'}"
        config = load_config(write_config(Path(scratch), store_url=store_url, sources=sources))
        store = Store.open(config.store_url)
        try:
            profiler = cProfile.Profile() if args.profile else None
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            first = collect(config, store)
            if profiler:
                profiler.disable()
            first_seconds = time.perf_counter() - started
            started = time.perf_counter()
            again = collect(config, store)
            again_seconds = time.perf_counter() - started
            stored = store.articles.count()
        finally:
            store.close()
    outcome, repeat = first.sources[0], again.sources[0]

    def line(name: str, seconds: float) -> str:
        return f"{name:<28} {seconds:7.2f} s  {args.entries / seconds:9,.0f} entries/s  {seconds / baseline:5.1f}x feedparser"

    print(f"{args.entries:,} entries, {len(body) / 1e6:.1f} MB, store {store_url.split(':')[0]}")
    print(line("feedparser.parse (baseline)", baseline))
    print(line("first collect", first_seconds))
    print(line("second collect (unchanged)", again_seconds))
    assert outcome.error is None and outcome.new == args.entries == stored, (outcome.error, outcome.new, stored)
    assert repeat.new == 0 and repeat.updated == 0, (repeat.new, repeat.updated)
    if profiler:
        stats = pstats.Stats(profiler).sort_stats("cumulative")
        stats.print_stats(25)


if __name__ == "__main__":
    main()
