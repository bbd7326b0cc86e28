"""A corpus of messy real-world feeds, one test per case (rss2email's style), on the real path.

Each case in tests/fixtures/sources/corpus/*.yaml serves its feeds over loopback HTTP (in the bytes
and encodings a newsroom's servers really send), runs the daily job (collect -> select -> render ->
feeds) for a date, possibly in several steps, and checks what readers get: the digest's HTML and
text per edition and the feed files; and what the operator is told: each item skipped or taken with
a warning, by source and item.

Every case also checks the guarantees that hold for any feed: no mojibake, no replacement
character, no markup and no internal source name reaching readers.

Case format:
    description: what a newsroom sends and what must happen
    date: 2024-12-02              # the digest day (each step may give its own)
    editions: [...]                # optional, replaces the default en + ar editions
    steps:                         # or the keys below at the top level, for one step
      - feeds:
          /feed.xml: {body: "<rss ...>", encoding: cp1256, content_type: "application/rss+xml"}
        bytes: {"@@BAD@@": "ff fe"}  # placeholders replaced by raw bytes after encoding
        sources: |                 # YAML of sources[]; {/feed.xml} is the served URL
          - {kind: feed, name: site-ar, url: "{/feed.xml}"}
        expect:
          digest: {ar: {count: 2, contains: [...], absent: [...]}}
          skipped: {site-ar: [substring, ...]}   # exactly these many, each matching one message
          warnings: {site-ar: [substring, ...]}  # each matching some message
          errors: {site-ar: substring}
          feeds: {ar.atom.xml: {contains: [...], absent: [...]}}
          stored: 3                # articles in the store
          feeds_unchanged: true    # every Atom <updated> as in the step before
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from ftfy.badness import is_bad

from publisher.config import Config, load_config
from publisher.pipeline import RunSummary, run_day
from publisher.store import Store
from tests.fixtures.sources.loopback import LoopbackHttpServer

CORPUS = Path(__file__).parent / "fixtures" / "sources" / "corpus"
CASES = sorted(CORPUS.glob("*.yaml"))

DEFAULT_EDITIONS = """
  - id: en
    language: en
    subject: "{site}: {date}"
    from: Levant Today <digest@news.example.org>
    sections: [politics, economy, culture, sports]
  - id: ar
    language: ar
    subject: "{site}: {date}"
    from: ليفانت اليوم <digest@news.example.org>
    sections: [politics, economy, culture, sports]
"""
# What a reader must never see: mojibake of Arabic or accented Latin, replacement characters, markup.
MOJIBAKE = re.compile(r"Ø[§¨ª«¬®¯°±²³´µ¶·¸¹º»¼½¾¿]|Ù[„…†‡ˆ‰Š‹ŒŽ]|Ã[©¨¢§´¹]|â€|ÊÕÚ|\ufffd")


@pytest.fixture
def server() -> Iterator[LoopbackHttpServer]:
    with LoopbackHttpServer() as running:
        yield running


def _body(feed: dict[str, Any], raw_bytes: dict[str, str]) -> bytes:
    data = str(feed["body"]).encode(feed.get("encoding", "utf-8"))
    for placeholder, hex_bytes in raw_bytes.items():
        data = data.replace(placeholder.encode("ascii"), bytes.fromhex(hex_bytes))
    return data


def _config(directory: Path, sources: str, editions: str, extra: str) -> Config:
    text = f"""
site:
  name: Levant Today
  base_url: https://news.example.org
  timezone: Asia/Damascus
  public_url: http://127.0.0.1:8080
  secret: test-secret-0123456789abcdef
store:
  url: sqlite:///{directory / 'store.db'}
sources:
{sources}
editions:
{editions}
feeds:
  directory: {directory / 'feeds'}
  base_url: http://127.0.0.1:8080/feeds
mail:
  transport:
    kind: outbox
    path: {directory / 'outbox'}
templates: {directory / 'templates'}
{extra}
"""
    path = directory / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def _indent(block: str) -> str:
    return "\n".join("  " + line if line.strip() else line for line in block.strip("\n").splitlines())


def _reader_texts(config: Config, store: Store, day: date) -> dict[str, str]:
    """Everything readers see: each digest's HTML and text, each feed file."""
    texts: dict[str, str] = {}
    for edition in config.editions:
        record = store.digests.find(edition.id, day)
        if record is not None and record.rendered is not None:
            texts[f"digest {edition.id} html"] = record.rendered.html
            texts[f"digest {edition.id} text"] = record.rendered.text
    for path in sorted(config.path(config.feeds.directory).glob("*")):
        texts[f"feed {path.name}"] = path.read_text(encoding="utf-8")
    return texts


def _check_guarantees(config: Config, texts: dict[str, str]) -> None:
    internal = [s.name for s in config.sources]
    for where, text in texts.items():
        visible = re.sub(r"<[^>]+>", " ", text) if "html" in where else text
        found = MOJIBAKE.search(text)
        assert found is None, f"{where}: mojibake {found.group(0)!r} reaches readers"
        assert not is_bad(visible), f"{where}: text reads as mojibake"
        if not where.endswith("text"):  # a title that reads "<script>" is text in the text part
            assert "<script" not in text.lower() and "javascript:" not in text.lower(), where
        else:
            assert not re.search(r"</?(p|em|strong|a|div|span)\b", text), f"{where}: markup in the text part"
        for name in internal:
            assert name not in text, f"{where}: the internal source name {name!r} reaches readers"


def _matches(messages: list[str], expected: list[str], what: str) -> None:
    for wanted in expected:
        assert any(wanted in m for m in messages), f"no {what} message contains {wanted!r}: {messages}"


def _check(expect: dict[str, Any], summary: RunSummary, config: Config, store: Store, texts: dict[str, str]) -> None:
    assert summary.collect is not None
    outcomes = {o.name: o for o in summary.collect.sources}
    for name, wanted in (expect.get("errors") or {}).items():
        assert outcomes[name].error and wanted in outcomes[name].error, outcomes[name].error
    for name in set(outcomes) - set(expect.get("errors") or {}):
        assert outcomes[name].error is None, f"{name}: {outcomes[name].error}"
    for name, outcome in outcomes.items():
        wanted = (expect.get("skipped") or {}).get(name, [])
        assert len(outcome.skipped) == len(wanted), f"{name} skipped: {outcome.skipped}"
        _matches(outcome.skipped, wanted, f"{name} skipped")
        for message in outcome.skipped:
            assert ": skipped: " in message and len(message.split(": skipped: ")[0]) > 0, message
        _matches(outcome.warnings, (expect.get("warnings") or {}).get(name, []), f"{name} warning")
    counts = {e.edition: e.articles for e in summary.editions}
    for edition_id, wanted in (expect.get("digest") or {}).items():
        if "count" in wanted:
            assert counts[edition_id] == wanted["count"], f"digest {edition_id}: {counts[edition_id]} articles"
        html = texts.get(f"digest {edition_id} html", "")
        text = texts.get(f"digest {edition_id} text", "")
        for needle in wanted.get("contains", []):
            assert needle in html and needle in text, f"digest {edition_id} lacks {needle!r}"
        for needle in wanted.get("absent", []):
            assert needle not in html and needle not in text, f"digest {edition_id} shows {needle!r}"
    for name, wanted in (expect.get("feeds") or {}).items():
        content = texts[f"feed {name}"]
        for needle in wanted.get("contains", []):
            assert needle in content, f"feed {name} lacks {needle!r}"
        for needle in wanted.get("absent", []):
            assert needle not in content, f"feed {name} shows {needle!r}"
        if "entries" in wanted:
            assert content.count("<entry>") + content.count("<entry ") == wanted["entries"], name
    if "stored" in expect:
        assert store.articles.count() == expect["stored"]


@pytest.mark.parametrize("case_path", CASES, ids=[p.stem for p in CASES])
def test_corpus_case(case_path: Path, tmp_path: Path, server: LoopbackHttpServer) -> None:
    case = yaml.safe_load(case_path.read_text(encoding="utf-8"))
    steps = case.get("steps") or [case]
    editions = case.get("editions") or DEFAULT_EDITIONS
    previous_feeds: dict[str, str] = {}
    sources = case.get("sources", "")
    for step in steps:
        for path, feed in (step.get("feeds") or {}).items():
            server.route(path, _body(feed, step.get("bytes") or {}), content_type=feed.get("content_type", "application/rss+xml"))
        sources = step.get("sources") or sources
        served = re.sub(r"\{(/[^}]*)\}", lambda m: server.url(m.group(1)), sources)
        config = _config(tmp_path, _indent(served), editions, case.get("extra", ""))
        day = date.fromisoformat(str(step.get("date") or case["date"]))
        store = Store.open(config.store_url)
        try:
            summary = run_day(config, store, day)
            texts = _reader_texts(config, store, day)
            _check_guarantees(config, texts)
            _check(step.get("expect") or {}, summary, config, store, texts)
            if step.get("expect", {}).get("feeds_unchanged"):
                now = {k: v for k, v in texts.items() if k.startswith("feed") and k.endswith(".atom.xml")}
                for name, content in now.items():
                    updated = re.findall(r"<updated>[^<]+</updated>", content)
                    assert updated == re.findall(r"<updated>[^<]+</updated>", previous_feeds[name]), name
            previous_feeds = {k: v for k, v in texts.items() if k.startswith("feed")}
        finally:
            store.close()
