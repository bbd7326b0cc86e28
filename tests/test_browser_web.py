"""The consent flow in a real headless Chromium against the real web server and a real SMTP server.

A visitor subscribes, the confirmation arrives over SMTP, the browser opens its link and confirms,
the next digest reaches them, a one-click POST to the List-Unsubscribe URL of that digest unsubscribes
them, and the following digest does not. Skipped (with the reason) without chromium/chromedriver;
under CI=true their absence is a failure.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from publisher.config import Config, load_config
from publisher.models import Article, SubscriberStatus
from publisher.pipeline import collect, publish_feeds, run_digests
from publisher.store import Store
from publisher.tokens import TokenSigner
from publisher.web import create_app
from publisher.web.server import WebServer
from tests.conftest import write_config
from tests.support.chromium import start_chromium
from tests.support.smtp import RecordingSmtpServer

pytestmark = pytest.mark.browser

# where the subscribe-page screenshots go when a person wants to look at them
SCREENSHOTS = os.environ.get("PUBLISHER_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), "--window-size=420,900", page_load_timeout=15)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Site:
    config: Config
    store: Store
    server: WebServer
    smtp: RecordingSmtpServer

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    smtp = RecordingSmtpServer().start()
    holder: dict[str, Config] = {}
    # The server starts first (port 0), so public_url can name its real port: config is read per request.
    path = write_config(tmp_path, transport=f"kind: smtp\n    host: 127.0.0.1\n    port: {smtp.port}\n    security: none")
    store = Store.open(load_config(path).store_url)
    server = WebServer(create_app(lambda: holder["config"], store), "127.0.0.1", 0)
    holder["config"] = load_config(path)
    server.start()
    path.write_text(
        path.read_text(encoding="utf-8")
        .replace("public_url: http://127.0.0.1:8080", f"public_url: {server.url}")
        .replace("base_url: http://127.0.0.1:8080/feeds", f"base_url: {server.url}/feeds"),
        encoding="utf-8",
    )
    holder["config"] = load_config(path)
    try:
        yield Site(holder["config"], store, server, smtp)
    finally:
        server.stop()
        store.close()
        smtp.stop()


def _parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def _wait_for_text(driver: object, text: str, timeout: float = 30.0) -> str:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page's text is read in one script, with no element handle kept between calls: while a page
    # is being replaced, a <body> found first may be gone when it is read (chromedriver says so as a
    # stale element, or as "Node with given id does not belong to the document"), and a script may
    # run as the old page's context goes away. Either is a look too early; the next one decides.
    # The bound only ends a wait for a text that never comes (TimeoutException names it).
    def body_with_text(d: object) -> str | bool:
        body = str(d.execute_script("return document.body ? document.body.innerText : '';"))  # type: ignore[attr-defined]
        return body if text in body else False

    found = WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)).until(
        body_with_text, f"no {text!r} on the page")
    return str(found)


def _post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_subscribe_confirm_receive_unsubscribe_in_a_browser(browser: object, site: Site) -> None:
    driver = browser
    # 1. the visitor fills in the form
    driver.get(f"{site.url}/subscribe?lang=en")  # type: ignore[attr-defined]
    driver.find_element("id", "email").send_keys("reader@example.org")  # type: ignore[attr-defined]
    driver.find_element("id", "name").send_keys("Rana")  # type: ignore[attr-defined]
    driver.find_element("css selector", "input[name=language][value=en]").click()  # type: ignore[attr-defined]
    driver.find_element("css selector", "form button[type=submit]").click()  # type: ignore[attr-defined]
    _wait_for_text(driver, "Check your inbox")
    subscriber = site.store.subscribers.by_email("reader@example.org")
    assert subscriber is not None and subscriber.status is SubscriberStatus.PENDING

    # 2. the confirmation arrives over SMTP; its link opens a page that asks, and the click confirms
    assert site.smtp.wait_for(1, timeout=60), "no confirmation email reached the SMTP server"
    confirmation = site.smtp.messages[0]
    assert confirmation.rcpt_tos == ("reader@example.org",)
    message = _parse(confirmation.data)
    assert message.get_content_type() == "multipart/alternative"
    links = re.findall(rf"{re.escape(site.url)}/confirm/\S+", _text_part(message))
    assert len(links) == 1
    driver.get(links[0])  # type: ignore[attr-defined]
    _wait_for_text(driver, "Send ")
    assert site.store.subscribers.get(subscriber.id).status is SubscriberStatus.PENDING  # type: ignore[union-attr]
    driver.find_element("css selector", "form button[type=submit]").click()  # type: ignore[attr-defined]
    _wait_for_text(driver, "You are subscribed")
    assert site.store.subscribers.get(subscriber.id).status is SubscriberStatus.ACTIVE  # type: ignore[union-attr]

    # 3. the next digest reaches them, with a working one-click List-Unsubscribe
    site.store.subscribers.upsert("other@example.org", language="en")  # a second reader, to show digests still go
    collect(site.config, site.store)
    outcomes = run_digests(site.config, site.store, date(2024, 12, 2), editions=["en"])
    assert outcomes[0].send is not None and outcomes[0].send.sent == 2, outcomes
    digests = [m for m in site.smtp.messages[1:] if m.rcpt_tos == ("reader@example.org",)]
    assert len(digests) == 1
    digest = _parse(digests[0].data)
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = next(
        u for u in re.findall(r"<([^>]+)>", str(digest["List-Unsubscribe"])) if u.startswith(site.url)
    )

    # 4. a GET of that URL (what a link scanner does) changes nothing; the page shows one button
    driver.get(unsubscribe_url)  # type: ignore[attr-defined]
    _wait_for_text(driver, "Stop sending")
    assert site.store.subscribers.get(subscriber.id).status is SubscriberStatus.ACTIVE  # type: ignore[union-attr]

    # 5. the RFC 8058 one-click POST unsubscribes at once, with no cookie and no form field of ours
    status, body = _post(unsubscribe_url, b"List-Unsubscribe=One-Click")
    assert status == 200 and "unsubscribed" in body.lower()
    assert site.store.subscribers.get(subscriber.id).status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    assert _post(unsubscribe_url, b"List-Unsubscribe=One-Click")[0] == 200  # idempotent

    # 6. the following digest does not reach them (it does reach the other reader)
    before = len(site.smtp.messages)
    published = datetime(2024, 12, 3, 7, 0, tzinfo=UTC)
    site.store.articles.upsert([
        Article(
            id="browser-test-2024-12-03", url="https://news.example.org/en/2024/12/03/late-news",
            title="A later story", language="en", published_at=published, updated_at=published,
            source_name="browser-test", summary="Something happened the next day.", section="politics",
        )
    ])
    outcomes = run_digests(site.config, site.store, date(2024, 12, 3), editions=["en"])
    assert outcomes[0].send is not None and outcomes[0].send.sent == 1, outcomes
    later = site.smtp.messages[before:]
    assert [m.rcpt_tos for m in later] == [("other@example.org",)]

    # 7. the page after unsubscribing says so, and its footer-link flow (button + CSRF) is idempotent
    driver.get(unsubscribe_url)  # type: ignore[attr-defined]
    _wait_for_text(driver, "You are unsubscribed")


def test_forged_and_expired_links_get_a_clear_page_and_the_button_works(browser: object, site: Site) -> None:
    driver = browser
    site.store.subscribers.upsert("held@example.org", language="en")
    held = site.store.subscribers.by_email("held@example.org")
    assert held is not None
    genuine = TokenSigner(site.config.site.secret).sign("unsubscribe", held.id)
    forged = genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB")
    driver.get(f"{site.url}/unsubscribe/{forged}")  # type: ignore[attr-defined]
    _wait_for_text(driver, "This link does not work")
    other_key = TokenSigner("another-secret-0123456789").sign("unsubscribe", held.id)
    driver.get(f"{site.url}/unsubscribe/{other_key}")  # type: ignore[attr-defined]
    _wait_for_text(driver, "This link does not work")
    expired = TokenSigner(site.config.site.secret).sign("confirm", held.id, ttl_seconds=60, now=1_000_000)
    driver.get(f"{site.url}/confirm/{expired}")  # type: ignore[attr-defined]
    _wait_for_text(driver, "This link has expired")
    assert site.store.subscribers.get(held.id).status is SubscriberStatus.ACTIVE  # type: ignore[union-attr]
    # the footer link: the page's button posts with its CSRF field and unsubscribes
    driver.get(f"{site.url}/unsubscribe/{genuine}")  # type: ignore[attr-defined]
    _wait_for_text(driver, "Stop sending")
    driver.find_element("css selector", "form button[type=submit]").click()  # type: ignore[attr-defined]
    _wait_for_text(driver, "You are unsubscribed")
    assert site.store.subscribers.get(held.id).status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]


def test_feeds_answer_304_to_conditional_requests(site: Site) -> None:
    collect(site.config, site.store)
    publish_feeds(site.config, site.store)
    url = f"{site.url}/feeds/en.atom.xml"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/atom+xml")
        etag, modified = response.headers["ETag"], response.headers["Last-Modified"]
        assert response.read().startswith(b"<?xml")
    for header, value in (("If-None-Match", etag), ("If-Modified-Since", modified)):
        request = urllib.request.Request(url, headers={header: value})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
        caught.value.close()  # an HTTPError holds the open response
        assert caught.value.code == 304
    with urllib.request.urlopen(f"{site.url}/feeds/en.rss.xml", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("application/rss+xml")


@pytest.mark.parametrize("language, direction, heading", [("en", "ltr", "Subscribe to"), ("ar", "rtl", "اشترك في")])
def test_subscribe_page_screenshot(
    browser: object, site: Site, tmp_path: Path, language: str, direction: str, heading: str
) -> None:
    driver = browser
    driver.get(f"{site.url}/subscribe?lang={language}")  # type: ignore[attr-defined]
    _wait_for_text(driver, heading)
    assert driver.execute_script("return document.documentElement.dir") == direction  # type: ignore[attr-defined]
    assert driver.execute_script("return getComputedStyle(document.body).direction") == direction  # type: ignore[attr-defined]
    # readable on a phone: nothing wider than the 420 px window
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")  # type: ignore[attr-defined]
    directory = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"subscribe-{language}.png"
    assert driver.save_screenshot(str(target))  # type: ignore[attr-defined]
    assert target.read_bytes().startswith(b"\x89PNG")
