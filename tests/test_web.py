"""The web face, part 1: subscribing with confirmed opt-in, enumeration, CSRF, abuse limits.

Starlette's TestClient drives the real application over a real SQLite store; confirmation emails go
to the in-memory transport and are parsed back as RFC 5322 messages. test_web_links.py and
test_web_archive.py reuse the harness below.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from publisher.config import Config, load_config
from publisher.delivery.mail import InMemoryTransport
from publisher.models import SubscriberStatus
from publisher.store import Store
from publisher.store.consent import ConsentRepository
from publisher.tokens import TokenSigner
from publisher.web import create_app
from tests.conftest import write_config

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
from starlette.testclient import TestClient  # noqa: E402

PUBLIC = "http://127.0.0.1:8080"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Harness:
    config: Config
    store: Store
    transport: InMemoryTransport
    client: TestClient
    path: Path

    def new_client(self, host: str = "127.0.0.1") -> TestClient:
        app = create_app(lambda: self.config, self.store, transport_factory=lambda _c: self.transport)
        return TestClient(app, base_url=PUBLIC, client=(host, 50000), follow_redirects=False)

    def status(self, email: str) -> SubscriberStatus | None:
        subscriber = self.store.subscribers.by_email(email)
        return subscriber.status if subscriber else None

    def messages_to(self, email: str) -> list[EmailMessage]:
        return [parse(m.data) for m in self.transport.accepted if m.recipient == email]


def make_harness(directory: Path, extra: str = "") -> Harness:
    path = write_config(directory, extra=extra)
    config = load_config(path)
    store = Store.open(config.store_url)
    transport = InMemoryTransport()
    app = create_app(lambda: config, store, transport_factory=lambda _c: transport)
    client = TestClient(app, base_url=PUBLIC, client=("127.0.0.1", 50000), follow_redirects=False)
    return Harness(config, store, transport, client, path)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Harness]:
    harness = make_harness(tmp_path)
    try:
        yield harness
    finally:
        stop_worker(harness.client)
        harness.client.close()
        harness.store.close()


def stop_worker(client: TestClient) -> None:
    """Stop the app's confirmation worker: one left polling a closed store would log into later tests."""
    client.app.state.confirmations.stop()  # type: ignore[attr-defined]


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def subscribe(client: TestClient, email: str, *, language: str = "en", name: str = "", **extra: Any) -> Any:
    page = client.get(f"/subscribe?lang={language}")
    assert page.status_code == 200
    data: dict[str, Any] = {"csrf": csrf_of(page.text), "email": email, "name": name, "language": language,
                            "lang": language}
    data.update(extra)
    answer = client.post("/subscribe", data=data)
    settle(client)
    return answer


def settle(client: TestClient) -> None:
    """Wait (bounded) until the confirmation worker handled what was queued: mail is sent after the answer."""
    assert client.app.state.confirmations.wait(timeout=30), "the confirmation worker did not finish in 30 s"  # type: ignore[attr-defined]


def confirm_link(message: EmailMessage) -> str:
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    links = re.findall(rf"{re.escape(PUBLIC)}(/confirm/\S+)", str(text.get_content()))
    assert len(links) == 1
    return links[0]


def click(client: TestClient, path: str, **fields: str) -> Any:
    """Open a page and press its (only) form's button, as a browser would."""
    page = client.get(path)
    return client.post(path, data={"csrf": csrf_of(page.text), **fields})


# --- subscribing and confirming ------------------------------------------------------------------


def test_subscribing_sends_one_confirmation_and_only_the_click_activates(web: Harness) -> None:
    answer = subscribe(web.client, "Reader@Example.org", name="Rana", sections=["economy", "politics"])
    assert answer.status_code == 303 and answer.headers["location"] == "/subscribe/sent?lang=en"
    assert "Check your inbox" in web.client.get(answer.headers["location"]).text
    subscriber = web.store.subscribers.by_email("reader@example.org")
    assert subscriber is not None and subscriber.status is SubscriberStatus.PENDING
    assert subscriber.name == "Rana" and subscriber.sections == ("politics", "economy")  # config order
    (message,) = web.messages_to("reader@example.org")
    link = confirm_link(message)
    page = web.client.get(link)  # what a mail scanner does: nothing
    assert page.status_code == 200 and "reader@example.org" in page.text
    assert web.status("reader@example.org") is SubscriberStatus.PENDING
    done = web.client.post(link, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert web.status("reader@example.org") is SubscriberStatus.ACTIVE
    again = web.client.get(link)
    assert "already confirmed" in again.text


@pytest.mark.parametrize("language, direction", [("en", "ltr"), ("ar", "rtl")])
def test_the_confirmation_is_a_complete_multipart_alternative_message(
    web: Harness, language: str, direction: str
) -> None:
    subscribe(web.client, "a@example.org", language=language, name="Qzxv <b>")
    (outgoing,) = web.transport.accepted
    assert outgoing.sender == "digest@news.example.org" and outgoing.recipient == "a@example.org"
    raw = outgoing.data
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    message = parse(raw)
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        assert message[header], header
    assert message["Message-ID"] == outgoing.message_id
    assert message["Content-Language"] == language
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    html = str(html_part.get_content())
    assert re.search(rf'<html[^>]*lang="{language}"[^>]*dir="{direction}"', html)
    text = str(message.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]
    # what the visitor typed as a name is not in the mail at all: they have not proved the address is theirs
    assert "Qzxv" not in html and "Qzxv" not in text
    assert ("Hello," if language == "en" else "مرحباً،") in text  # the greeting without a name
    assert confirm_link(message).startswith("/confirm/")
    assert confirm_link(message) in html


def test_the_answer_is_the_same_whatever_the_address(web: Harness) -> None:
    web.store.subscribers.upsert("active@example.org", language="en")
    web.store.subscribers.upsert("gone@example.org", language="en", status=SubscriberStatus.UNSUBSCRIBED)
    web.store.subscribers.upsert("bounced@example.org", language="en", status=SubscriberStatus.BOUNCED)
    web.store.subscribers.upsert("forgotten@example.org", language="en")
    forgotten = web.store.subscribers.by_email("forgotten@example.org")
    assert forgotten is not None
    web.store.subscribers.forget(forgotten.id)
    subscribe(web.client, "pending@example.org")
    answers = {}
    for email in ("new@example.org", "active@example.org", "gone@example.org", "bounced@example.org",
                  "forgotten@example.org", "pending@example.org"):
        response = subscribe(web.client, email)
        page = web.client.get(response.headers["location"])
        answers[email] = (response.status_code, response.headers["location"], page.status_code, page.text)
    assert len(set(answers.values())) == 1, "the answer reveals whether an address is known"
    assert web.messages_to("active@example.org") == []  # nothing new for an active subscriber
    assert web.status("active@example.org") is SubscriberStatus.ACTIVE
    for email in ("new@example.org", "gone@example.org", "bounced@example.org", "forgotten@example.org"):
        assert len(web.messages_to(email)) == 1, email
    assert len(web.messages_to("pending@example.org")) == 2  # asked twice: a fresh link each time
    # no address was (re-)activated by asking
    assert web.status("gone@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert web.status("bounced@example.org") is SubscriberStatus.BOUNCED


def test_an_unsubscribed_address_comes_back_only_through_a_confirmed_opt_in(web: Harness) -> None:
    web.store.subscribers.upsert("back@example.org", language="en", status=SubscriberStatus.UNSUBSCRIBED)
    subscribe(web.client, "back@example.org", language="ar")
    assert web.status("back@example.org") is SubscriberStatus.UNSUBSCRIBED
    (message,) = web.messages_to("back@example.org")
    assert click(web.client, confirm_link(message)).status_code == 200
    subscriber = web.store.subscribers.by_email("back@example.org")
    assert subscriber is not None and subscriber.status is SubscriberStatus.ACTIVE and subscriber.language == "ar"


def test_a_forgotten_address_may_subscribe_again_through_confirmation(web: Harness) -> None:
    web.store.subscribers.upsert("again@example.org", language="en")
    first = web.store.subscribers.by_email("again@example.org")
    assert first is not None
    web.store.subscribers.forget(first.id)
    subscribe(web.client, "again@example.org")
    assert web.status("again@example.org") is SubscriberStatus.PENDING
    # until the link is used the suppression stands: an import cannot slip the address back in
    assert web.store.subscribers.is_suppressed("again@example.org")
    assert web.store.subscribers.upsert("again@example.org", language="en") == "suppressed"
    (message,) = web.messages_to("again@example.org")
    click(web.client, confirm_link(message))
    assert web.status("again@example.org") is SubscriberStatus.ACTIVE
    assert not web.store.subscribers.is_suppressed("again@example.org")


def test_a_confirmation_link_works_once_and_an_unsubscription_closes_older_ones(web: Harness) -> None:
    subscribe(web.client, "twice@example.org")
    (message,) = web.messages_to("twice@example.org")
    first = confirm_link(message)
    subscriber = web.store.subscribers.by_email("twice@example.org")
    assert subscriber is not None
    # a second, different link sent later (links of the same second are the same link)
    later = TokenSigner(web.config.site.secret).sign("confirm", subscriber.id, ttl_seconds=7 * 3600)
    ConsentRepository(web.store.engine).open_confirmation(subscriber.id, later)
    second = f"/confirm/{later}"
    assert first != second
    page = web.client.get(second)
    assert web.client.post(second, data={"csrf": csrf_of(page.text)}).status_code == 200
    assert web.status("twice@example.org") is SubscriberStatus.ACTIVE
    unsubscribe = "/unsubscribe/" + TokenSigner(web.config.site.secret).sign("unsubscribe", subscriber.id)
    assert web.client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    for link in (first, second):  # neither the used link nor the older unused one undoes that
        page = web.client.get(link)
        assert page.status_code == 410 and "used" in page.text
        assert web.client.post(link, data={"csrf": "0.0"}).status_code == 410
    assert web.status("twice@example.org") is SubscriberStatus.UNSUBSCRIBED


# --- CSRF and input ------------------------------------------------------------------------------


def test_the_subscribe_form_needs_its_signed_field_its_cookie_and_our_origin(web: Harness) -> None:
    page = web.client.get("/subscribe")
    token = csrf_of(page.text)
    fields = {"email": "x@example.org", "language": "en", "csrf": token}
    assert web.client.post("/subscribe", data={**fields, "csrf": token[:-1] + ("1" if token.endswith("0") else "0")}).status_code == 403
    assert web.client.post("/subscribe", data={k: v for k, v in fields.items() if k != "csrf"}).status_code == 403
    assert web.client.post("/subscribe", data=fields, headers={"Origin": "https://evil.example"}).status_code == 403
    stranger = web.new_client()  # another browser: has no cookie, replays the field
    assert stranger.post("/subscribe", data=fields).status_code == 403
    assert web.store.subscribers.by_email("x@example.org") is None and web.transport.accepted == []
    assert web.client.post("/subscribe", data=fields, headers={"Origin": PUBLIC}).status_code == 303
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"email": "<script>alert(1)</script>@x"}, "does not look like an email address"),
        ({"email": "a@example.org", "language": "fr"}, "Choose one of the editions"),
        ({"email": "a@example.org", "sections": ["politics", "<b>x</b>"]}, "Choose sections from the list"),
        ({"email": "a@example.org", "name": "n" * 201}, "too long"),
    ],
)
def test_bad_input_is_refused_and_shown_escaped(web: Harness, fields: dict[str, Any], message: str) -> None:
    page = web.client.get("/subscribe")
    data = {"csrf": csrf_of(page.text), "language": "en", **fields}
    answer = web.client.post("/subscribe", data=data)
    assert answer.status_code == 400 and message in answer.text
    assert "<script>" not in answer.text and "<b>x" not in answer.text
    assert web.transport.accepted == []


def test_the_language_parameter_is_never_reflected(web: Harness) -> None:
    page = web.client.get('/subscribe?lang="><script>alert(1)</script>')
    assert page.status_code == 200 and "<script>" not in page.text and 'lang="en"' in page.text
    arabic = web.client.get("/subscribe", headers={"Accept-Language": "ar-SY,ar;q=0.9,en;q=0.5"})
    assert '<html lang="ar" dir="rtl">' in arabic.text


# --- limits --------------------------------------------------------------------------------------


def test_an_address_gets_at_most_the_daily_number_of_confirmations(tmp_path: Path) -> None:
    web = make_harness(tmp_path, extra="web:\n  max_confirmations_per_address: 2\n")
    answers = [subscribe(web.client, "victim@example.org") for _ in range(4)]
    assert {(a.status_code, a.headers["location"]) for a in answers} == {(303, "/subscribe/sent?lang=en")}
    assert len(web.messages_to("victim@example.org")) == 2
    assert len(web.messages_to("victim@example.org".upper().lower())) == 2
    subscribe(web.client, "VICTIM@example.org")  # the same address, spelled otherwise
    assert len(web.transport.accepted) == 2


def test_a_client_is_limited_per_hour_and_others_are_not(tmp_path: Path) -> None:
    web = make_harness(tmp_path, extra="web:\n  max_requests_per_client_per_hour: 3\n")
    codes = [subscribe(web.client, f"r{i}@example.org").status_code for i in range(5)]
    assert codes == [303, 303, 303, 429, 429]
    refused = subscribe(web.client, "late@example.org")
    assert refused.headers["retry-after"] == "3600" and "try again in an hour" in refused.text
    assert len(web.transport.accepted) == 3
    assert subscribe(web.new_client("127.0.0.2"), "other@example.org").status_code == 303


def test_limits_are_kept_in_the_store_across_processes(tmp_path: Path) -> None:
    web = make_harness(tmp_path, extra="web:\n  max_confirmations_per_address: 1\n")
    subscribe(web.client, "shared@example.org")
    # a second process: its own engine on the same database, its own application
    other_store = Store.open(web.config.store_url)
    other = Harness(web.config, other_store, web.transport, web.client, web.path)
    subscribe(other.new_client(), "shared@example.org")
    assert len(web.messages_to("shared@example.org")) == 1
    other_store.close()


def test_a_failing_mail_server_does_not_change_the_answer(web: Harness) -> None:
    web.transport.unavailable = "cannot connect to 127.0.0.1:1"
    answer = subscribe(web.client, "down@example.org")
    assert answer.status_code == 303 and answer.headers["location"] == "/subscribe/sent?lang=en"
    assert web.status("down@example.org") is SubscriberStatus.PENDING


def test_config_is_read_on_every_request(web: Harness) -> None:
    holder = [web.config]
    client = TestClient(create_app(lambda: holder[0], web.store), base_url=PUBLIC)
    assert "Levant Today" in client.get("/subscribe").text
    text = web.path.read_text(encoding="utf-8").replace("name: Levant Today", "name: Levant Tonight")
    web.path.write_text(text, encoding="utf-8")
    holder[0] = load_config(web.path)
    assert "Levant Tonight" in client.get("/subscribe").text


def test_operator_templates_come_first_and_edits_show_without_restart(web: Harness) -> None:
    operator = web.path.parent / "templates" / "web"  # write_config points templates: here
    operator.mkdir(parents=True)
    strings = operator / "strings.yaml"
    strings.write_text("en:\n  subscribe_button: Sign me up\n", encoding="utf-8")
    page = web.client.get("/subscribe?lang=en")
    assert "Sign me up" in page.text and "Email address" in page.text  # other keys: packaged
    assert "اشترك" in web.client.get("/subscribe?lang=ar").text  # other languages untouched
    strings.write_text("en:\n  subscribe_button: Join now\n", encoding="utf-8")
    os.utime(strings, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert "Join now" in web.client.get("/subscribe?lang=en").text
    (operator / "notice.html.j2").write_text(
        '{% extends "web/base.html.j2" %}{% block content %}<p id="operator">{{ strings[title_key] }}</p>'
        "{% endblock %}",
        encoding="utf-8",
    )
    assert '<p id="operator">Check your inbox</p>' in web.client.get("/subscribe/sent").text
