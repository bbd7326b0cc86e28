"""Telegram channel: posts in Telegram's HTML subset within its limits, sent once through the send engine,
against a local Bot API that checks every request (tests/support/provider_servers/telegram.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from publisher.channels.telegram import (
    CAPTION_LIMIT,
    TEXT_LIMIT,
    article_posts,
    digest_posts,
    utf16_length,
    visible_length,
)
from publisher.config import Config, load_config
from publisher.errors import ConfigError
from publisher.models import Article
from publisher.pipeline import RunSummary, run_day
from publisher.store import DigestStatus, Store
from publisher.store.schema import channel_posts
from tests.conftest import write_config
from tests.support.provider_servers.telegram import BOT_TOKEN, TelegramServer, parse_html

DAY = date(2024, 12, 2)
NOW = datetime(2024, 12, 2, 12, tzinfo=UTC)


def article(n: int, *, summary: str = "A short summary.", image: str | None = None, title: str = "") -> Article:
    return Article(id=f"a{n}", url=f"https://news.example.org/{n}?a=1&b=2", title=title or f"Story {n}",
                   language="en", published_at=NOW, updated_at=NOW, source_name="test", summary=summary,
                   source_credit="Levant - Agencies", image_url=image)


# --- formatting -----------------------------------------------------------------------------------


def test_text_is_escaped_and_only_telegram_tags_are_used() -> None:
    [post] = digest_posts("Levant <Today> & co", [article(1, title="Prices <up> & \"down\"", summary="1 < 2 & 3 > 2")])
    assert post.method == "sendMessage"
    shown = parse_html(post.text)  # the contract server's parser: raises on anything Telegram would refuse
    assert shown.startswith("Levant <Today> & co\n\nPrices <up> & \"down\"\n1 < 2 & 3 > 2\nLevant - Agencies")
    assert '<b><a href="https://news.example.org/1?a=1&amp;b=2">' in post.text


def test_length_is_counted_in_utf16_code_units() -> None:
    assert utf16_length("😀") == 2 and utf16_length("سلام") == 4
    assert visible_length("<b>&lt;😀&gt;</b>") == 4


def test_a_long_digest_is_split_at_story_boundaries() -> None:
    stories = [article(n, summary=("word 😀 " * 60).strip()) for n in range(1, 31)]
    posts = digest_posts("Title", stories, images=False)
    assert len(posts) > 1
    for post in posts:
        assert visible_length(post.text) <= TEXT_LIMIT
        parse_html(post.text)
    joined = "\n\n".join(parse_html(p.text) for p in posts)
    assert all(f"Story {n}\n" in joined for n in range(1, 31))  # every story, whole, once
    assert sum(parse_html(p.text).count("Story ") for p in posts) == 30


def test_the_lead_image_goes_as_a_photo_with_a_caption_within_1024_and_the_rest_follows() -> None:
    stories = [article(1, summary="long " * 400, image="https://news.example.org/lead.jpg"),
               *[article(n, summary="text " * 100) for n in range(2, 6)]]
    posts = digest_posts("Title", stories)
    assert posts[0].method == "sendPhoto" and posts[0].photo == "https://news.example.org/lead.jpg"
    assert visible_length(posts[0].text) <= CAPTION_LIMIT
    assert parse_html(posts[0].text).startswith("Title\n\nStory 1\nlong long")  # cut at a word, within budget
    assert [p.method for p in posts[1:]] == ["sendMessage"] * (len(posts) - 1)
    shown = "\n\n".join(parse_html(p.text) for p in posts)
    assert all(shown.count(f"Story {n}\n") == 1 for n in range(1, 6))  # what the caption cannot hold follows


def test_even_an_absurd_headline_stays_within_the_limits() -> None:
    huge = article(1, title="headline " * 700, summary="s " * 300, image="https://news.example.org/1.jpg")
    for post in [*digest_posts("T", [huge]), *article_posts([huge])]:
        parse_html(post.text)
        assert visible_length(post.text) <= (CAPTION_LIMIT if post.photo else TEXT_LIMIT)


def test_articles_mode_posts_each_story() -> None:
    posts = article_posts([article(1, image="https://news.example.org/1.jpg"), article(2),
                           article(3, title="Long " * 150, summary="x " * 900, image="https://news.example.org/3.jpg")])
    long = ("Long " * 150).strip()
    assert [(p.method, p.label) for p in posts] == [("sendPhoto", "Story 1"), ("sendMessage", "Story 2"),
                                                    ("sendPhoto", long), ("sendMessage", long)]
    assert visible_length(posts[2].text) <= CAPTION_LIMIT


# --- config ---------------------------------------------------------------------------------------


def channel_yaml(server_url: str, *, mode: str = "digest", edition: str = "ar", chat: str = "@levant_ar",
                 extra: str = "") -> str:
    return (f"channels:\n  - kind: telegram\n    edition: {edition}\n    chat: \"{chat}\"\n"
            f"    bot_token: ${{TELEGRAM_BOT_TOKEN}}\n    mode: {mode}\n    api_base: {server_url}\n"
            f"    max_retry_after: 2\n{extra}")


@pytest.mark.parametrize(("edition", "chat", "expected"), [
    ("fr", "@levant_ar", "channels[0].edition: unknown edition 'fr'; use one of en, ar"),
    ("ar", "levant", "chat 'levant' is neither @name nor a numeric id"),
])
def test_bad_channel_settings_are_named_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     edition: str, chat: str, expected: str) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, extra=channel_yaml("http://127.0.0.1:1", edition=edition, chat=chat)))
    assert expected in str(caught.value)


def test_the_token_is_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "12345:not-a-token with spaces")
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, extra=channel_yaml("http://127.0.0.1:1")))
    assert "bot_token" in str(caught.value) and "${TELEGRAM_BOT_TOKEN}" in str(caught.value)
    assert "not-a-token" not in str(caught.value)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    config = load_config(write_config(tmp_path, extra=channel_yaml("http://127.0.0.1:1")))
    assert BOT_TOKEN not in repr(config.channels[0]) and BOT_TOKEN.split(":")[1] not in repr(config)


# --- through run_day ------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[TelegramServer]:
    with TelegramServer(chat="@levant_ar") as running:
        yield running
        assert running.violations == [], running.violations  # every request kept the Bot API's contract


def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: TelegramServer, **kwargs: Any) -> tuple[Config, Store]:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", kwargs.pop("token", BOT_TOKEN))
    store_url = kwargs.pop("store_url", None) or f"sqlite:///{tmp_path / 'store.db'}"
    config = load_config(write_config(tmp_path, store_url=store_url,
                                      extra=channel_yaml(server.url, **kwargs)))
    store = Store.open(config.store_url)
    store.subscribers.upsert("ar0@example.org", name="قارئ", language="ar")
    return config, store


def posted_parts(store: Store) -> list[tuple[int, str]]:
    with store.engine.connect() as connection:
        return [(r.part, r.status) for r in connection.execute(channel_posts.select().order_by(channel_posts.c.part))]


def lines(summary: RunSummary) -> str:
    return "\n".join(line for c in summary.channels for line in c.lines())


def test_the_digest_is_posted_once_as_subscribers_got_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         server: TelegramServer, store_url: str) -> None:
    config, store = world(tmp_path, monkeypatch, server, store_url=store_url)
    summary = run_day(config, store, DAY)
    [channel] = summary.channels
    assert channel.send is not None and channel.send.sent == channel.posts >= 2, lines(summary)
    assert summary.ok and summary.deferred == 0
    first = server.posts[0]
    assert first["method"] == "sendPhoto" and first["photo"].startswith("https://news.example.org/media/")
    assert all(p["method"] == "sendMessage" for p in server.posts[1:])
    digest = store.digests.find("ar", DAY)
    assert digest is not None and digest.rendered is not None
    shown = "\n".join(parse_html(t) for t in server.texts())
    assert shown.startswith(digest.rendered.subject)
    for frozen in store.articles.in_digest(digest.id):  # the frozen digest, each story once
        assert shown.count(frozen.title) == 1
    assert "channel telegram-ar-levant_ar (ar): " in lines(summary) and f"{channel.posts} posted" in lines(summary)
    with store.engine.connect() as connection:
        ids = {r.provider_message_id for r in connection.execute(channel_posts.select())}
    assert ids == {str(p["message_id"]) for p in server.posts}
    before = len(server.received)
    again = run_day(config, store, DAY)
    assert again.channels[0].send is not None and again.channels[0].send.sent == 0
    assert again.channels[0].send.already_sent == channel.posts and len(server.received) == before
    store.close()


def test_articles_mode_posts_each_story_in_digest_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        server: TelegramServer) -> None:
    config, store = world(tmp_path, monkeypatch, server, mode="articles")
    summary = run_day(config, store, DAY)
    digest = store.digests.find("ar", DAY)
    assert digest is not None
    titles = [a.title for a in store.articles.in_digest(digest.id)]
    assert [parse_html(t).split("\n")[0] for t in server.texts()] == titles, lines(summary)
    store.close()


def test_a_parse_error_fails_that_post_by_name_and_the_rest_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               server: TelegramServer) -> None:
    config, store = world(tmp_path, monkeypatch, server, mode="articles")
    server.fail_next(400, description="Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 7")
    summary = run_day(config, store, DAY)
    [channel] = summary.channels
    assert channel.send is not None and channel.send.failed == 1 and channel.send.sent == channel.posts - 1
    assert not summary.ok
    assert "not posted: @levant_ar post 1 (" in lines(summary) and "can't parse entities" in lines(summary)
    assert posted_parts(store)[0] == (0, "failed")
    store.close()


def test_a_short_429_is_waited_out_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            server: TelegramServer) -> None:
    waits: list[float] = []
    monkeypatch.setattr("publisher.channels.telegram_api.time.sleep", waits.append)
    config, store = world(tmp_path, monkeypatch, server)
    server.fail_next(429, retry_after=1)
    summary = run_day(config, store, DAY)
    assert waits == [1.0]
    assert summary.channels[0].send is not None and summary.channels[0].send.deferred == 0
    assert len(server.posts) == summary.channels[0].posts
    store.close()


def test_a_long_429_defers_in_order_and_a_later_run_posts_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   server: TelegramServer, store_url: str) -> None:
    config, store = world(tmp_path, monkeypatch, server, mode="articles", store_url=store_url)
    server.fail_next(429, retry_after=600)
    started = datetime.now(UTC)
    summary = run_day(config, store, DAY)
    [channel] = summary.channels
    assert channel.send is not None and channel.send.deferred == channel.posts and server.posts == []
    assert channel.send.next_attempt_at is not None and channel.send.next_attempt_at >= started + timedelta(seconds=600)
    assert "retry after 600" in lines(summary) and summary.deferred == channel.posts
    assert len(server.received) == 1  # the rest held back behind the first: never out of order
    with store.engine.connect() as connection:
        attempts = [r.attempts for r in connection.execute(channel_posts.select().order_by(channel_posts.c.part))]
    assert attempts == [1] + [0] * (channel.posts - 1)  # the ones behind were not tried, nor counted
    with store.engine.begin() as connection:  # later posts due, the first not yet: still nothing out of order
        connection.execute(update(channel_posts).where(channel_posts.c.part > 0).values(next_attempt_at=started))
    assert run_day(config, store, DAY).channels[0].send is not None and server.posts == []
    with store.engine.begin() as connection:  # the wait is over
        connection.execute(update(channel_posts).values(next_attempt_at=started))
    run_day(config, store, DAY)
    digest = store.digests.find("ar", DAY)
    assert digest is not None
    titles = [a.title for a in store.articles.in_digest(digest.id)]
    assert [parse_html(t).split("\n")[0] for t in server.texts()] == titles
    store.close()


def test_an_outage_defers_and_a_restart_posts_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              server: TelegramServer) -> None:
    config, store = world(tmp_path, monkeypatch, server, mode="articles")
    calls = {"n": 0}

    def outage_after_two(body: dict[str, Any]) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            server.fail_next(502)  # the third request

    server.before_answer = outage_after_two
    first = run_day(config, store, DAY).channels[0]
    assert first.send is not None and first.send.sent == 2 and first.send.deferred == first.posts - 2
    server.before_answer = None
    with store.engine.begin() as connection:
        connection.execute(update(channel_posts).values(next_attempt_at=None))
    second = run_day(config, store, DAY).channels[0]
    assert second.send is not None and second.send.sent == first.posts - 2 and second.send.already_sent == 2
    texts = server.texts()
    assert len(texts) == len(set(texts)) == first.posts  # nothing twice, nothing lost
    store.close()


def test_a_wrong_token_stops_with_the_hint_and_marks_nothing_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    server: TelegramServer,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    wrong = "987654321:AAwrong-token_ZYXWVUTSRQ"
    config, store = world(tmp_path, monkeypatch, server, token=wrong)
    with caplog.at_level(logging.DEBUG):
        summary = run_day(config, store, DAY)
    [channel] = summary.channels
    assert channel.send is not None and channel.send.failed == 0 and channel.send.deferred == channel.posts
    assert "telegram 401: Unauthorized" in lines(summary)
    assert "check channels[0].bot_token" in lines(summary) and "add the bot as an admin of the channel" in lines(summary)
    assert not summary.ok
    assert not any(wrong in r.getMessage() or wrong.split(":")[1] in r.getMessage() for r in caplog.records)
    assert any("/bot***/" in r.getMessage() for r in caplog.records)  # urllib3's request line, masked
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    fixed = load_config(config.base_dir / "config.yaml")
    again = run_day(fixed, store, DAY).channels[0]
    assert again.send is not None and again.send.sent == channel.posts
    store.close()


def test_a_stop_mid_send_leaves_the_rest_for_the_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         server: TelegramServer) -> None:
    import threading

    config, store = world(tmp_path, monkeypatch, server, mode="articles")
    stop = threading.Event()
    server.before_answer = lambda body: stop.set()  # a signal arrives while the first post is in flight
    summary = run_day(config, store, DAY, stop=stop)
    assert len(server.posts) == 1 and summary.stopped
    server.before_answer = None
    run_day(config, store, DAY)
    texts = server.texts()
    assert len(texts) == len(set(texts)) == len(posted_parts(store))
    assert all(status == "sent" for _, status in posted_parts(store))
    store.close()


def test_dry_run_posts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: TelegramServer) -> None:
    config, store = world(tmp_path, monkeypatch, server)
    summary = run_day(config, store, DAY, dry_run=True)
    assert server.received == [] and "nothing posted" in lines(summary)
    store.close()



def test_a_killed_run_never_posts_twice_but_the_post_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               server: TelegramServer) -> None:
    import os
    import subprocess
    import sys
    import threading

    config, store = world(tmp_path, monkeypatch, server, mode="articles")
    reached, release = threading.Event(), threading.Event()
    seen = {"n": 0}

    def hold_the_second(body: dict[str, Any]) -> None:
        seen["n"] += 1
        if seen["n"] == 2:
            reached.set()
            release.wait(60)  # the post is in flight when the process dies; Telegram posts it anyway

    server.before_answer = hold_the_second
    process = subprocess.Popen(
        [sys.executable, "-m", "publisher", "run", "--date", str(DAY), "--config", str(config.base_dir / "config.yaml")],
        env={**os.environ, "TELEGRAM_BOT_TOKEN": BOT_TOKEN}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert reached.wait(120), "the run never reached the second post"
        process.kill()
        process.wait(30)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
    server.before_answer = None
    again = run_day(config, store, DAY).channels[0]
    assert again.send is not None and again.send.already_sent == 1
    texts = server.texts()
    assert texts.count(texts[1]) == 2 and texts.count(texts[0]) == 1  # the one in flight twice, the first once
    assert len(texts) == again.posts + 1 and len(set(texts)) == again.posts  # the rest once each
    assert all(status == "sent" for _, status in posted_parts(store))
    store.close()


def test_a_photo_telegram_cannot_fetch_goes_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    server: TelegramServer) -> None:
    config, store = world(tmp_path, monkeypatch, server)
    server.fail_next(400, description="Bad Request: wrong file identifier/HTTP URL specified")
    summary = run_day(config, store, DAY)
    [channel] = summary.channels
    assert channel.send is not None and channel.send.sent == channel.posts and summary.ok
    assert [r.method for r in server.received[:2]] == ["sendPhoto", "sendMessage"]
    assert server.received[0].body["caption"] == server.posts[0]["text"]  # the same story, without the photo
    store.close()


def test_an_unreachable_api_defers_and_never_shows_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             server: TelegramServer) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    config = load_config(write_config(tmp_path, store_url=f"sqlite:///{tmp_path / 'store.db'}",
                                      extra=channel_yaml("http://127.0.0.1:9", extra="    timeout: 2\n")))
    store = Store.open(config.store_url)
    store.subscribers.upsert("ar0@example.org", name="قارئ", language="ar")
    summary = run_day(config, store, DAY)
    [channel] = summary.channels
    assert channel.send is not None and channel.send.deferred == channel.posts and channel.send.failed == 0
    text = lines(summary) + repr(summary)
    assert "/bot***/" in text and BOT_TOKEN not in text and BOT_TOKEN.split(":")[1] not in text
    store.close()


def test_the_service_posts_a_scheduled_digest_to_its_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from publisher.jobs import ServiceJobs
    from publisher.live_config import LiveConfig
    from tests.test_service_jobs import DAY as SERVICE_DAY
    from tests.test_service_jobs import SCHEDULE, Clock, local

    articles = tmp_path / "articles"
    articles.mkdir()
    for number in range(3):
        (articles / f"story-{number}.md").write_text(
            f"---\ntitle: Story {number}\ndate: {SERVICE_DAY.isoformat()} 0{number + 3}:00\nlanguage: en\n"
            f"section: politics\nsummary: Summary {number}.\n---\nBody {number}.\n", encoding="utf-8")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    with TelegramServer(chat="@levant_en") as server:
        path = write_config(tmp_path, sources="  - kind: files\n    name: desk\n    path: articles\n",
                            extra=SCHEDULE + channel_yaml(server.url, edition="en", chat="@levant_en"))
        store = Store.open(load_config(path).store_url)
        store.subscribers.upsert("reader@example.test", language="en")
        ServiceJobs(LiveConfig(path), store, threading.Event(), clock=Clock(local(7, 10))).maintain()
        assert server.violations == []
        assert [parse_html(t).count("Story ") for t in server.texts()] == [3]
        store.close()


def test_the_service_posts_deferred_posts_when_their_time_comes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                server: TelegramServer, store_url: str) -> None:
    """A digest already sent by email, its channel posts held back by a long 429: `serve`'s upkeep
    posts them once the wait is over, without a manual run, and not a moment before."""
    import threading

    from publisher.jobs import ServiceJobs
    from publisher.live_config import LiveConfig

    config, store = world(tmp_path, monkeypatch, server, mode="articles", store_url=store_url)
    server.fail_next(429, retry_after=600)
    [channel] = run_day(config, store, DAY).channels
    assert channel.send is not None and channel.send.deferred == channel.posts and server.posts == []
    digest = store.digests.find("ar", DAY)
    assert digest is not None and digest.status == DigestStatus.DONE  # the email side is finished
    jobs = ServiceJobs(LiveConfig(tmp_path / "config.yaml"), store, threading.Event())
    jobs.maintain()  # the wait is not over: nothing is tried again
    assert server.posts == [] and len(server.received) == 1
    with store.engine.begin() as connection:  # the wait is over
        connection.execute(update(channel_posts).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
    jobs.maintain()
    titles = [a.title for a in store.articles.in_digest(digest.id)]
    assert [parse_html(t).split("\n")[0] for t in server.texts()] == titles
    assert {status for _, status in posted_parts(store)} == {"sent"}
    received = len(server.received)
    jobs.maintain()  # nothing left: nothing posted twice
    assert len(server.received) == received
    store.close()
