"""The console in a real headless Chromium: sign in with the form, read the dashboard, search the list.

Without JavaScript in the pages, what Chromium shows is what any browser shows; this checks the forms,
cookies (SameSite=Strict, path /admin), redirects and the charts' <img> loading through the real server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from publisher.config import load_config
from publisher.delivery.mail import InMemoryTransport
from publisher.passwords import hash_password
from publisher.pipeline import run_day
from publisher.store import Store
from publisher.web import create_app
from publisher.web.server import WebServer
from tests.conftest import write_config
from tests.test_browser_web import _wait_for_text, browser  # noqa: F401  (the module's Chromium fixture)

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WebServer]:
    extra = f'web:\n  admin_users:\n    editor: "{hash_password(PASSWORD, n=2**12)}"\n'
    config = load_config(write_config(tmp_path, extra=extra))
    store = Store.open(config.store_url)
    store.subscribers.upsert("layla@example.org", name="Layla Haddad", language="en")
    store.subscribers.upsert("sara@example.org", name="سارة العلي", language="ar")
    run_day(config, store, date(2024, 12, 2), transport=InMemoryTransport())
    # public_url is http://127.0.0.1:8080 in the config; forms are checked against the Host header too
    running = WebServer(create_app(lambda: config, store), "127.0.0.1", 0).start()
    try:
        yield running
    finally:
        running.stop()
        store.close()


def test_an_operator_signs_in_reads_the_dashboard_and_finds_a_subscriber(
    browser: object, server: WebServer  # noqa: F811 (the fixture imported above)
) -> None:
    driver = browser
    driver.get(f"{server.url}/admin/")  # type: ignore[attr-defined]
    _wait_for_text(driver, "Sign in to the console")  # redirected to the form
    driver.find_element("name", "user").send_keys("editor")  # type: ignore[attr-defined]
    driver.find_element("name", "password").send_keys(PASSWORD)  # type: ignore[attr-defined]
    driver.find_element("css selector", "form button[type=submit]").click()  # type: ignore[attr-defined]
    body = _wait_for_text(driver, "Recent digests")
    assert "sample-newsroom" in body
    # both charts loaded as images (naturalWidth > 0 means the SVG was fetched and decoded)
    widths = driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.querySelectorAll('img.chart')).map(i => i.complete ? i.naturalWidth : -1)"
    )
    assert len(widths) == 2 and all(w > 0 for w in widths), widths
    overflow = driver.execute_script(  # type: ignore[attr-defined]
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the dashboard scrolls sideways by {overflow}px on a phone-wide window"

    driver.get(f"{server.url}/admin/subscribers?lang=ar")  # type: ignore[attr-defined]
    _wait_for_text(driver, "المشتركون")
    search = driver.find_element("name", "q")  # type: ignore[attr-defined]
    search.send_keys("سارة")
    driver.find_element("css selector", "form.filters button[type=submit]").click()  # type: ignore[attr-defined]
    body = _wait_for_text(driver, "sara@example.org")
    assert "layla@example.org" not in body
    assert driver.find_element("tag name", "html").get_attribute("dir") == "rtl"  # type: ignore[attr-defined]

    driver.find_element("css selector", "header.bar form button").click()  # type: ignore[attr-defined]
    _wait_for_text(driver, "تسجيل الدخول")
    driver.get(f"{server.url}/admin/")  # type: ignore[attr-defined]
    _wait_for_text(driver, "Sign in to the console")  # signed out: back to the form


@pytest.fixture
def counted_server(tmp_path: Path) -> Iterator[tuple[WebServer, dict[str, bytes]]]:
    extra = (f'web:\n  admin_users:\n    editor: "{hash_password(PASSWORD, n=2**12)}"\n'
             "analytics:\n  clicks: true\n  opens: true\n  per_subscriber: true\n")
    config = load_config(write_config(tmp_path, extra=extra))
    store = Store.open(config.store_url)
    store.subscribers.upsert("layla@example.org", name="Layla Haddad", language="en")
    transport = InMemoryTransport()
    run_day(config, store, date(2024, 12, 2), transport=transport)
    running = WebServer(create_app(lambda: config, store), "127.0.0.1", 0).start()
    try:
        yield running, {m.recipient: m.data for m in transport.accepted}
    finally:
        running.stop()
        store.close()


def test_the_pixel_loads_as_an_image_and_the_console_shows_opens_and_a_readers_clicks(
    browser: object, counted_server: tuple[WebServer, dict[str, bytes]]  # noqa: F811
) -> None:
    import re
    import urllib.request
    from email import message_from_bytes, policy

    server, sent = counted_server
    message = message_from_bytes(sent["layla@example.org"], policy=policy.default)
    html_part = message.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
    html = str(html_part.get_content())
    public = "http://127.0.0.1:8080"
    (pixel,) = re.findall(rf'<img src="{re.escape(public)}(/o/[^"]+)"', html)
    story = re.findall(rf'href="{re.escape(public)}(/r/[^"]+)"', html)[0]

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    # the click, as a mail client makes it (the story's site is not on this machine: no redirect followed)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(f"{server.url}{story}", timeout=10)
    except urllib.error.HTTPError as answer:
        assert answer.code == 302 and answer.headers["Location"].startswith("https://news.example.org/")
    else:
        raise AssertionError("the click link did not answer 302")

    driver = browser
    driver.get(f"{server.url}{pixel}")  # type: ignore[attr-defined]  # Chromium shows the image document
    size = driver.execute_script(  # type: ignore[attr-defined]
        "const i = document.images[0]; return i && i.complete ? [i.naturalWidth, i.naturalHeight] : null"
    )
    assert size == [1, 1], size

    driver.get(f"{server.url}/admin/")  # type: ignore[attr-defined]
    _wait_for_text(driver, "Sign in to the console")
    driver.find_element("name", "user").send_keys("editor")  # type: ignore[attr-defined]
    driver.find_element("name", "password").send_keys(PASSWORD)  # type: ignore[attr-defined]
    driver.find_element("css selector", "form button[type=submit]").click()  # type: ignore[attr-defined]
    body = _wait_for_text(driver, "Recent digests")
    assert "Apple Mail Privacy Protection pre-fetches the images" in body
    opens = driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.querySelectorAll('td.opens')).map(td => td.textContent)"
    )
    assert "1 / 1" in opens, opens

    driver.get(f"{server.url}/admin/subscribers?q=layla")  # type: ignore[attr-defined]
    _wait_for_text(driver, "layla@example.org")
    driver.find_element("link text", "layla@example.org").click()  # type: ignore[attr-defined]
    body = _wait_for_text(driver, "Stories clicked")
    clicked = body.split("Stories clicked", 1)[1]
    assert "en" in clicked and "2024-12-02" in clicked and "Nothing yet." not in clicked
