"""The operator's console at /admin and /metrics, driven through the real application and store.

A real daily run (sample articles, an in-memory transport that refuses one address as unknown) fills
the store; then an operator signs in and reads what happened: digests, sources, the list, one
subscriber's history, the charts and the export. Nothing is reachable without signing in.
"""

from __future__ import annotations

import csv
import io
import re
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from publisher.config import Config, load_config
from publisher.delivery.mail import InMemoryTransport
from publisher.models import SubscriberStatus
from publisher.passwords import hash_password, verify_password
from publisher.pipeline import run_day
from publisher.store import Store
from publisher.web import create_app
from publisher.web.admin.session import COOKIE
from publisher.web.server import WebServer
from tests.conftest import write_config

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
from starlette.testclient import TestClient  # noqa: E402

PUBLIC = "http://127.0.0.1:8080"
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PROTECTED = ["/admin/", "/admin/subscribers", "/admin/subscribers.csv", "/admin/subscribers/1", "/admin/digests/1",
             "/admin/digests/1/html", "/admin/charts/growth.svg"]


@dataclass
class Console:
    config: Config
    store: Store
    path: Path

    def client(self, host: str = "192.0.2.10") -> TestClient:
        app = create_app(lambda: self.config, self.store)
        return TestClient(app, base_url=PUBLIC, client=(host, 50000), follow_redirects=False)

    def reload(self) -> None:
        self.config = load_config(self.path)


def _users(hashes: dict[str, str]) -> str:
    return "web:\n  admin_users:\n" + "".join(f'    {name}: "{value}"\n' for name, value in hashes.items())


@pytest.fixture
def console(tmp_path: Path, store_url: str) -> Iterator[Console]:
    path = write_config(tmp_path, store_url=store_url, extra=_users({"editor": hash_password(PASSWORD, n=2**12)}))
    config = load_config(path)
    store = Store.open(config.store_url)
    for email, name, language in [("layla@example.org", "Layla Haddad", "en"), ("gone@example.org", "Gone", "en"),
                                  ("sara@example.org", "سارة العلي", "ar")]:
        store.subscribers.upsert(email, name=name, language=language)
    transport = InMemoryTransport()
    transport.fail("gone@example.org", temporary=False, error="550 5.1.1 <gone@example.org>: user unknown")
    run_day(config, store, date(2024, 12, 2), transport=transport)
    try:
        yield Console(config, store, path)
    finally:
        store.close()


def sign_in(client: TestClient, user: str = "editor", password: str = PASSWORD) -> int:
    form = client.get("/admin/login")
    token = _CSRF.search(form.text)
    assert token is not None
    answer = client.post("/admin/login", data={"user": user, "password": password, "csrf": token.group(1)})
    return answer.status_code


def test_nothing_under_admin_answers_without_signing_in(console: Console) -> None:
    client = console.client()
    for path in PROTECTED:
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/admin/login"), path
    assert client.post("/admin/logout", data={}).status_code == 303
    # a forged cookie is no session
    client.cookies.set(COOKIE, "ZWRpdG9yADE3MDAwMDAwMDAAMTIz.AAAA", path="/admin")
    assert client.get("/admin/").status_code == 303


def test_a_wrong_password_or_a_missing_csrf_value_does_not_sign_in(console: Console) -> None:
    client = console.client()
    assert sign_in(client, password="wrong password") == 401
    assert sign_in(client, user="nobody") == 401
    assert COOKIE not in client.cookies
    client.get("/admin/login")
    assert client.post("/admin/login", data={"user": "editor", "password": PASSWORD}).status_code == 403
    assert client.get("/admin/").status_code == 303


def test_sign_in_is_rate_limited_per_client(console: Console) -> None:
    client = console.client()
    answers = [sign_in(client, password=f"guess {i}") for i in range(10)]
    assert answers == [401] * 10
    # the eleventh attempt is refused before the password is even checked, right password or not
    assert sign_in(client) == 429
    assert COOKIE not in client.cookies
    # another client is not locked out by this one
    assert sign_in(console.client(host="192.0.2.99")) == 303


def test_the_dashboard_shows_what_the_run_did(console: Console) -> None:
    client = console.client()
    assert sign_in(client) == 303
    page = client.get("/admin/")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "script" not in page.headers["content-security-policy"] or "default-src 'none'" in page.headers[
        "content-security-policy"]
    html = page.text
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr><td><a href="/admin/digests/\d+[^"]*">(\w+)</a>.*?</tr>',
                                                        html)}
    assert set(rows) == {"en", "ar"}
    en_cells = re.findall(r'<td class="n[^"]*">([^<]*)</td>', rows["en"])
    # recipients, sent, failed, deferred, bounced, complained
    assert en_cells[:6] == ["2", "1", "1", "0", "1", "0"], en_cells
    assert "sample-newsroom" in html and 'class="ok"' in html
    assert "Apple Mail Privacy Protection" in html
    assert '<img class="chart" src="/admin/charts/growth.svg' in html


def test_charts_are_svg_without_scripts(console: Console) -> None:
    client = console.client()
    sign_in(client)
    for name in ("growth", "deliveries"):
        answer = client.get(f"/admin/charts/{name}.svg")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("image/svg+xml")
        assert answer.text.lstrip().startswith("<svg") and "<script" not in answer.text.lower()
    assert client.get("/admin/charts/nope.svg").status_code == 404
    growth = console.store.engine  # the figures behind the chart
    from publisher.store.reports import Reports

    days = Reports(growth).growth()
    assert len(days) == 90 and sum(d.joined for d in days) == 3 and sum(d.bounced for d in days) == 1


def test_a_digest_page_frames_the_html_without_personal_data(console: Console) -> None:
    client = console.client()
    sign_in(client)
    dashboard = client.get("/admin/").text
    digest_id = re.search(r'href="/admin/digests/(\d+)\?lang=en">en<', dashboard)
    assert digest_id is not None
    page = client.get(f"/admin/digests/{digest_id.group(1)}")
    assert page.status_code == 200 and 'sandbox=""' in page.text
    framed = client.get(f"/admin/digests/{digest_id.group(1)}/html")
    assert framed.status_code == 200 and framed.headers["content-security-policy"].startswith("sandbox")
    assert "/unsubscribe/" not in framed.text and "layla@example.org" not in framed.text
    assert client.get("/admin/digests/99999").status_code == 404


def test_subscribers_search_filter_history_and_export(console: Console) -> None:
    client = console.client()
    sign_in(client)
    found = client.get("/admin/subscribers", params={"q": "العلي"}).text
    assert "sara@example.org" in found and "layla@example.org" not in found
    bounced = client.get("/admin/subscribers", params={"status": "bounced"}).text
    assert "gone@example.org" in bounced and "layla@example.org" not in bounced
    gone = console.store.subscribers.by_email("gone@example.org")
    assert gone is not None and gone.status is SubscriberStatus.BOUNCED
    history = client.get(f"/admin/subscribers/{gone.id}").text
    assert "bounced" in history and "5.1.1" in history and "2024-12-02" in history
    exported = client.get("/admin/subscribers.csv", params={"edition": "en"})
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["email"] for r in rows} == {"layla@example.org", "gone@example.org"}


def test_arabic_console_is_right_to_left(console: Console) -> None:
    client = console.client()
    sign_in(client)
    page = client.get("/admin/", params={"lang": "ar"}).text
    assert '<html lang="ar" dir="rtl">' in page and "النشرات الأخيرة" in page


def test_signing_out_needs_the_session_csrf_and_ends_it(console: Console) -> None:
    client = console.client()
    sign_in(client)
    assert client.post("/admin/logout", data={"csrf": "1.forged"}).status_code == 403
    token = _CSRF.search(client.get("/admin/").text)
    assert token is not None
    assert client.post("/admin/logout", data={"csrf": token.group(1)}).status_code == 303
    assert client.get("/admin/").status_code == 303


def test_a_new_password_ends_the_old_sessions(console: Console) -> None:
    client = console.client()
    sign_in(client)
    assert client.get("/admin/").status_code == 200
    console.path.write_text(
        console.path.read_text(encoding="utf-8").split("web:\n  admin_users:")[0]
        + _users({"editor": hash_password("a brand new password", n=2**12)}),
        encoding="utf-8",
    )
    console.reload()
    assert client.get("/admin/").status_code == 303


def test_metrics_need_an_operator_from_elsewhere_and_count_the_ledger(console: Console) -> None:
    remote = console.client(host="192.0.2.10")
    assert remote.get("/metrics").status_code == 401
    assert remote.get("/metrics", auth=("editor", "wrong")).status_code == 401
    answer = remote.get("/metrics", auth=("editor", PASSWORD))
    assert answer.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    sent = {(s.labels["edition"], s.labels["status"]): s.value for s in families["publisher_messages"].samples
            if s.name == "publisher_messages_total"}
    assert sent[("en", "sent")] == 1 and sent[("en", "failed")] == 1 and sent[("ar", "sent")] == 1
    subscribers = {(s.labels["language"], s.labels["status"]): s.value for s in families["publisher_subscribers"].samples}
    assert subscribers[("en", "bounced")] == 1
    assert "publisher_source_consecutive_failures" in families


def test_metrics_answer_a_scraper_on_loopback_over_a_real_socket(console: Console) -> None:
    server = WebServer(create_app(lambda: console.config, console.store), "127.0.0.1", 0).start()
    try:
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as answer:
            assert answer.status == 200 and b"publisher_messages_total" in answer.read()
    finally:
        server.stop()


def test_metrics_can_be_for_operators_only_or_off(console: Console) -> None:
    for setting, expected in (("operators", 401), ("off", 404)):
        console.path.write_text(console.path.read_text(encoding="utf-8").replace(
            "web:\n", f"web:\n  metrics: {setting}\n", 1), encoding="utf-8")
        console.reload()
        server = WebServer(create_app(lambda: console.config, console.store), "127.0.0.1", 0).start()
        try:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{server.url}/metrics", timeout=10)
            refused.value.close()
            assert refused.value.code == expected
        finally:
            server.stop()
        console.path.write_text(console.path.read_text(encoding="utf-8").replace(f"  metrics: {setting}\n", ""),
                                encoding="utf-8")


def test_password_hashes_verify_only_the_right_password() -> None:
    encoded = hash_password("s3cret-passphrase", n=2**12)
    assert verify_password("s3cret-passphrase", encoded)
    assert not verify_password("s3cret-passphrasE", encoded)
    assert not verify_password("", encoded)
    assert not verify_password("anything", "scrypt$bogus")
    assert not verify_password("anything", encoded.replace("$4096$", "$1073741824$"))


def test_a_damaged_admin_hash_is_a_config_error_with_the_fix(tmp_path: Path) -> None:
    from publisher.errors import ConfigError

    path = write_config(tmp_path, extra=_users({"editor": "plain-text-password"}))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "admin_users" in str(caught.value) and "publisher admin passwd editor" in str(caught.value)
