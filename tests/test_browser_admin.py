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
