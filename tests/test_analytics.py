"""analytics.per_subscriber and analytics.opens end to end: a real run, the links and the pixel in the
mail, the /r/ and /o/ routes, the store, and what the console shows. Off, nothing names the reader
and no pixel is in the mail at all."""

from __future__ import annotations

import re
import warnings
from datetime import date
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from publisher.config import Config, load_config
from publisher.delivery.mail import InMemoryTransport
from publisher.errors import ConfigError
from publisher.passwords import hash_password
from publisher.pipeline import run_day
from publisher.render.clicks import ClickLinks, InvalidClick
from publisher.store import Store
from publisher.store.clicks import ClickLedger
from publisher.store.schema import click_events, open_events
from publisher.web import create_app
from publisher.web.clicks import PIXEL
from tests.conftest import write_config

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
from starlette.testclient import TestClient  # noqa: E402

PUBLIC = "http://127.0.0.1:8080"
SECRET = "test-secret-0123456789abcdef"
PASSWORD = "a-password-here"
ADMIN = f'web:\n  admin_users:\n    editor: "{hash_password(PASSWORD, n=2**12)}"\n'
ALL_ON = "analytics:\n  clicks: true\n  opens: true\n  per_subscriber: true\n"


class Run:
    def __init__(self, tmp_path: Path, store_url: str, extra: str, *, people: int = 1,
                 sections: tuple[str, ...] = ()) -> None:
        self.config: Config = load_config(write_config(tmp_path, store_url=store_url, extra=extra + ADMIN))
        self.store = Store.open(self.config.store_url)
        self.emails = [f"reader{i}@example.org" for i in range(people)]
        for email in self.emails:
            self.store.subscribers.upsert(email, name="Layla", language="en", sections=sections)
        transport = InMemoryTransport()
        run_day(self.config, self.store, date(2024, 12, 2), transport=transport)
        self.messages: dict[str, EmailMessage] = {}
        for sent in transport.accepted:
            message = message_from_bytes(sent.data, policy=policy.default)
            assert isinstance(message, EmailMessage)
            self.messages[str(message["To"].addresses[0].addr_spec)] = message
        self.client = TestClient(create_app(lambda: self.config, self.store), base_url=PUBLIC,
                                 follow_redirects=False)

    def parts(self, email: str) -> tuple[str, str]:
        message = self.messages[email]
        html_part = message.get_body(preferencelist=("html",))
        text_part = message.get_body(preferencelist=("plain",))
        assert html_part is not None and text_part is not None
        return str(html_part.get_content()), str(text_part.get_content())

    def subscriber_id(self, email: str) -> int:
        found = self.store.subscribers.by_email(email)
        assert found is not None
        return found.id

    def sign_in(self) -> None:
        form = self.client.get("/admin/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        answer = self.client.post("/admin/login", data={"user": "editor", "password": PASSWORD, "csrf": csrf.group(1)})
        assert answer.status_code == 303

    def close(self) -> None:
        self.client.close()
        self.store.close()


def _clicks(html: str) -> list[str]:
    return re.findall(rf'href="{re.escape(PUBLIC)}(/r/[^"]+)"', html)


def _pixels(html: str) -> list[str]:
    return re.findall(rf'<img src="{re.escape(PUBLIC)}(/o/[^"]+)"', html)


def _rows(run: Run, table: object) -> list[tuple[object, ...]]:
    with run.store.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(select(table))]  # type: ignore[call-overload]


def test_per_subscriber_clicks_name_the_reader_signed_and_show_in_their_history(tmp_path: Path, store_url: str) -> None:
    run = Run(tmp_path, store_url, "analytics:\n  clicks: true\n  per_subscriber: true\n", people=2)
    try:
        first, second = run.emails
        html, text = run.parts(first)
        links = _clicks(html)
        assert len(set(links)) == 6
        readers = {link.split("/")[3] for link in links}
        assert len(readers) == 1, "every link of one message carries the same reader part"
        reader = readers.pop()
        digest_id = ClickLinks(SECRET, PUBLIC).verify(links[0].split("/")[2]).digest_id
        assert ClickLinks(SECRET, PUBLIC).verify_reader(digest_id, reader) == run.subscriber_id(first)
        assert {f"{PUBLIC}{link}" for link in links} == set(re.findall(rf"{re.escape(PUBLIC)}/r/\S+", text))
        other = {link.split("/")[3] for link in _clicks(run.parts(second)[0])}
        assert other and reader not in other, "another subscriber's copy has their own reader part"

        answer = run.client.get(links[2])
        target = ClickLinks(SECRET, PUBLIC).verify(links[2].split("/")[2])
        assert answer.status_code == 302 and answer.headers["location"] == target.url
        clicks = ClickLedger(run.store.engine).of_subscriber(run.subscriber_id(first))
        assert [(c.digest_id, c.position) for c in clicks] == [(digest_id, target.position)]
        assert clicks[0].title and clicks[0].edition == "en"
        assert ClickLedger(run.store.engine).of_subscriber(run.subscriber_id(second)) == []
        assert ClickLedger(run.store.engine).per_story(digest_id) == {target.position: 1}

        # a forged reader part is refused, never redirected, never recorded: nor one moved to another digest
        token = links[2].split("/")[2]
        forged = ClickLinks("another-secret-0123456789", PUBLIC).reader(digest_id, run.subscriber_id(second))
        moved = ClickLinks(SECRET, PUBLIC).reader(digest_id + 1, run.subscriber_id(second))
        for bad in (forged, moved, "/" + reader[:-2] + ("AA" if not reader.endswith("AA") else "BB"), "/x"):
            refused = run.client.get(f"/r/{token}{bad}")
            assert refused.status_code == 400 and "location" not in refused.headers, bad
        with pytest.raises(InvalidClick):
            ClickLinks(SECRET, PUBLIC).verify_reader(digest_id + 1, reader)
        assert len(_rows(run, click_events)) == 1

        run.sign_in()
        page = run.client.get(f"/admin/subscribers/{run.subscriber_id(first)}").text
        history = page.split("Stories clicked")[1]
        assert f"<bdi>{clicks[0].title}</bdi>" in history
        assert "Stories clicked" in run.client.get(f"/admin/subscribers/{run.subscriber_id(second)}").text
        assert clicks[0].title not in run.client.get(f"/admin/subscribers/{run.subscriber_id(second)}").text
        # forgotten: the click still counts for the story, linked to nobody
        assert run.store.subscribers.forget(run.subscriber_id(first))
        assert ClickLedger(run.store.engine).per_story(digest_id) == {target.position: 1}
        assert [row[4] for row in _rows(run, click_events)] == [None]
    finally:
        run.close()


def test_without_per_subscriber_no_link_names_the_reader_and_nothing_is_stored_per_subscriber(tmp_path: Path) -> None:
    run = Run(tmp_path, f"sqlite:///{tmp_path / 's.db'}", "analytics:\n  clicks: true\n  opens: true\n")
    try:
        email = run.emails[0]
        html, text = run.parts(email)
        links = _clicks(html)
        assert links and all(link.count("/") == 2 for link in links), "no reader part after the token"
        digest_id = ClickLinks(SECRET, PUBLIC).verify(links[0].split("/")[2]).digest_id
        reader = ClickLinks(SECRET, PUBLIC).reader(digest_id, run.subscriber_id(email))
        raw = run.messages[email].as_string()
        assert reader[1:] not in raw and "PUBSLOT" not in raw
        (pixel,) = _pixels(html)
        assert pixel.count("/") == 2
        # even a correctly signed reader part (mailed while per_subscriber was on) is not kept now
        assert run.client.get(links[0] + reader).status_code == 302
        assert run.client.get(links[1]).status_code == 302
        assert run.client.get(pixel + reader).status_code == 200
        assert [row[4] for row in _rows(run, click_events)] == [None, None]
        assert [row[2] for row in _rows(run, open_events)] == [None]
        assert ClickLedger(run.store.engine).opens([digest_id])[digest_id].total == 1
        assert ClickLedger(run.store.engine).of_subscriber(run.subscriber_id(email)) == []
        run.sign_in()
        page = run.client.get(f"/admin/subscribers/{run.subscriber_id(email)}").text
        assert "Not recorded per subscriber (analytics.per_subscriber is off)." in page
    finally:
        run.close()


def test_the_open_pixel_answers_a_gif_never_cached_counts_per_digest_and_unique_per_subscriber(
    tmp_path: Path, store_url: str
) -> None:
    run = Run(tmp_path, store_url, ALL_ON, people=2)
    try:
        first, second = run.emails
        html, text = run.parts(first)
        (pixel,) = _pixels(html)
        assert "/o/" not in text, "no pixel in the plain-text part"
        digest_id = ClickLinks(SECRET, PUBLIC).verify_open(pixel.split("/")[2])
        assert ClickLinks(SECRET, PUBLIC).verify_reader(digest_id, pixel.split("/")[3]) == run.subscriber_id(first)
        image = run.client.get(pixel)
        assert image.status_code == 200 and image.headers["content-type"] == "image/gif"
        assert image.content == PIXEL and image.content[:6] == b"GIF89a"
        assert (int.from_bytes(image.content[6:8], "little"), int.from_bytes(image.content[8:10], "little")) == (1, 1)
        assert "no-store" in image.headers["cache-control"]
        run.client.get(pixel)  # Apple Mail's pre-fetch, then the reader: two loads, one subscriber
        assert run.client.head(pixel).status_code == 200  # a HEAD is not an open
        (other,) = _pixels(run.parts(second)[0])
        run.client.get(other)
        opens = ClickLedger(run.store.engine).opens([digest_id])[digest_id]
        assert (opens.total, opens.unique) == (3, 2)
        assert ClickLedger(run.store.engine).opens_of_subscriber(run.subscriber_id(first)) == {digest_id: 2}

        token = pixel.split("/")[2]
        for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "x",
                    ClickLinks(SECRET, PUBLIC).token(digest_id, 1, "https://news.example.org/")):
            assert run.client.get(f"/o/{bad}").status_code == 400, bad
        assert run.client.get(f"/o/{token}/AAAAAAAAAAAAAAAAAAAA").status_code == 400
        assert ClickLedger(run.store.engine).opens([digest_id])[digest_id].total == 3

        # the archive and the console's copy of the digest carry no pixel (they would count themselves)
        day = run.store.digests.get(digest_id)
        assert day is not None and day.rendered is not None
        archive = run.client.get(f"/archive/en/{day.day.isoformat()}")
        assert archive.status_code == 200 and "/o/" not in archive.text and "PUBSLOT" not in archive.text
        run.sign_in()
        frame = run.client.get(f"/admin/digests/{digest_id}/html").text
        assert "/o/" not in frame and "PUBSLOT" not in frame
        dashboard = run.client.get("/admin/").text
        assert '<td class="n opens">3 / 2</td>' in dashboard
        assert "Apple Mail Privacy Protection pre-fetches the images" in dashboard
        assert "block images deflate them" in dashboard
        page = run.client.get(f"/admin/digests/{digest_id}").text
        assert '<td class="opens">3 / 2</td>' in page and "Apple Mail Privacy Protection" in page
        arabic = run.client.get("/admin/?lang=ar").text
        assert "Apple Mail" in arabic and "مضخّمة" in arabic
    finally:
        run.close()


def test_by_default_no_pixel_is_in_the_mail_and_the_console_says_opens_are_not_counted(tmp_path: Path) -> None:
    run = Run(tmp_path, f"sqlite:///{tmp_path / 's.db'}", "")
    try:
        html, text = run.parts(run.emails[0])
        assert "/o/" not in html and "<img" not in html.split("</table>")[-1]
        assert not re.search(r'<img[^>]+width="1"', html) and "/r/" not in html and "/o/" not in text
        run.sign_in()
        dashboard = run.client.get("/admin/").text
        assert "Opens are not counted (analytics.opens is off)" in dashboard
        assert '<td class="n opens">off (analytics.opens)</td>' in dashboard
    finally:
        run.close()


def test_a_reader_who_chose_sections_gets_counted_links_numbered_as_in_the_whole_digest(
    tmp_path: Path, store_url: str
) -> None:
    run = Run(tmp_path, store_url, ALL_ON, sections=("culture",))
    try:
        email = run.emails[0]
        html, _text = run.parts(email)
        links = sorted(set(_clicks(html)))
        assert links, "a section variant is click-rewritten too"
        assert not re.search(r'href="https://news\.example\.org/en/[^"]+"', html)
        assert len(_pixels(html)) == 1
        targets = [ClickLinks(SECRET, PUBLIC).verify(link.split("/")[2]) for link in links]
        digest_id = targets[0].digest_id
        whole = run.store.articles.in_digest(digest_id)
        assert len(links) < len(whole)
        for target in targets:
            article = whole[target.position - 1]
            assert article.section == "culture" and target.url.startswith(article.url.split("?")[0]), target
        run.client.get(links[0])
        assert ClickLedger(run.store.engine).of_subscriber(run.subscriber_id(email))[0].title == \
            whole[targets[0].position - 1].title
    finally:
        run.close()


def test_per_subscriber_alone_is_a_config_error_that_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, extra="analytics:\n  per_subscriber: true\n"))
    assert "analytics" in str(caught.value) and "analytics.clicks" in str(caught.value)


def test_a_store_made_before_reader_clicks_and_opens_is_upgraded_in_place(store_url: str) -> None:
    from sqlalchemy import delete, inspect, text

    from publisher.store import schema

    store = Store.open(store_url)
    store.subscribers.upsert("kept@example.org", language="en")
    with store.engine.begin() as connection:  # the schema as the previous version left it
        serial = "SERIAL" if connection.dialect.name == "postgresql" else "INTEGER"
        connection.execute(text("DROP TABLE open_events"))
        connection.execute(text("DROP TABLE click_events"))
        connection.execute(text(f"CREATE TABLE click_events (id {serial} PRIMARY KEY, digest_id INTEGER NOT NULL "
                                "REFERENCES digests (id) ON DELETE CASCADE, position INTEGER NOT NULL, "
                                "at TIMESTAMP WITH TIME ZONE NOT NULL)"))
        version = schema.MIGRATIONS.index(schema._reader_clicks_and_opens) + 1  # and the ones after it
        connection.execute(delete(schema.schema_version).where(schema.schema_version.c.version >= version))
    store.close()
    again = Store.open(store_url)
    try:
        found = inspect(again.engine)
        assert "subscriber_id" in {c["name"] for c in found.get_columns("click_events")}
        assert "open_events" in found.get_table_names()
        kept = again.subscribers.by_email("kept@example.org")
        assert kept is not None
        digest = again.digests.create("en", date(2024, 12, 2), "en", [])
        ClickLedger(again.engine).record(digest.id, 1, subscriber_id=kept.id)
        ClickLedger(again.engine).record_open(digest.id, subscriber_id=kept.id)
        assert [c.position for c in ClickLedger(again.engine).of_subscriber(kept.id)] == [1]
        assert ClickLedger(again.engine).opens([digest.id])[digest.id].unique == 1
    finally:
        again.close()
