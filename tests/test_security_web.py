"""Issue 15.3-15.5 through the real application: keys that rotate, bad bytes that are 4xx answers,
security headers on every answer, and names that never reach an inbox unconfirmed.

A digest's links are made as the sender makes them (publisher.pipeline.send.LinkMaker); a rotation is
an edited config.yaml and a restart (a new Store and application on the same database).
"""

from __future__ import annotations

import logging
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from publisher.config import Config, load_config
from publisher.delivery.mail import InMemoryTransport
from publisher.models import SubscriberStatus
from publisher.pipeline.send import LinkMaker
from publisher.store import Store
from publisher.store.consent import ConsentRepository
from publisher.web import create_app
from publisher.web.confirmations import THREAD_NAME
from tests.conftest import write_config
from tests.test_web import (  # noqa: F401
    PUBLIC,
    Harness,
    confirm_link,
    csrf_of,
    make_harness,
    parse,
    stop_worker,
    subscribe,
    web,
)

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
from starlette.testclient import TestClient  # noqa: E402

FIRST = "test-secret-0123456789abcdef"  # tests/conftest.py write_config
SECURITY_HEADERS = {"content-security-policy", "x-frame-options", "x-content-type-options"}


def rotate(path: Path, secret: str, previous: list[str]) -> Config:
    text = path.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.strip().startswith(("secret:", "previous_secrets:"))]
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("unsubscribe_mailto:"))
    lines[at:at] = [f"  secret: {secret}", f"  previous_secrets: [{', '.join(previous)}]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(path)


# --- 15.3 keys that rotate -----------------------------------------------------------------------


def test_links_in_digests_already_sent_survive_two_rotations(tmp_path: Path, store_url: str) -> None:
    path = write_config(tmp_path, store_url=store_url)
    config = load_config(path)
    store = Store.open(store_url)
    for name in ("early", "middle", "late"):
        store.subscribers.upsert(f"{name}@example.org", language="en")
    ids = {name: store.subscribers.by_email(f"{name}@example.org").id for name in ("early", "middle", "late")}  # type: ignore[union-attr]

    def links(config: Config, name: str) -> tuple[str, str]:
        maker = LinkMaker(config.site, "news.example.org")  # exactly what the digest's sender signs
        return (maker.unsubscribe_url(ids[name]).removeprefix(PUBLIC), maker.preferences_url(ids[name]).removeprefix(PUBLIC))

    sent = {"early": links(config, "early")}
    second = "second-secret-0123456789abcdef"
    third = "third-secret-0123456789abcdef"
    for secret, previous, name in ((second, [FIRST], "middle"), (third, [second, FIRST], "late")):
        store.close()
        config = rotate(path, secret, previous)
        store = Store.open(store_url)
        client = TestClient(create_app(lambda c=config: c, store), base_url=PUBLIC)
        sent[name] = links(config, name)
        first = LinkMaker(config.site.model_copy(update={"secret": FIRST}), "news.example.org")
        assert sent[name][0] != first.unsubscribe_url(ids[name]).removeprefix(PUBLIC)  # signed with the new key
        for old_name, (unsubscribe, preferences) in sent.items():
            assert client.get(unsubscribe).status_code == 200, (secret, old_name)
            page = client.get(preferences)
            assert page.status_code == 200 and f"{old_name}@example.org" in page.text, (secret, old_name)
        client.close()
    # after both rotations every link ever sent still unsubscribes at once (RFC 8058)
    client = TestClient(create_app(lambda: config, store), base_url=PUBLIC)
    for name, (unsubscribe, _) in sent.items():
        answer = client.post(unsubscribe, content=b"List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200 and answer.text == "You are unsubscribed.\n"
        assert store.subscribers.by_email(f"{name}@example.org").status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    # a secret dropped from previous_secrets signs nothing any more
    client.close()
    store.close()
    config = rotate(path, third, [second])
    store = Store.open(store_url)
    client = TestClient(create_app(lambda: config, store), base_url=PUBLIC)
    assert client.get(sent["early"][0]).status_code == 400
    assert client.get(sent["middle"][1]).status_code == 200
    client.close()
    store.close()


def test_a_previous_secret_is_checked_like_the_current_one(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra="")
    with pytest.raises(Exception, match="previous_secrets"):
        rotate(path, "second-secret-0123456789abcdef", ["short"])  # at least 16 characters, like site.secret


# --- 15.4 bad bytes are 4xx answers, every answer has the security headers ------------------------

BAD_TOKENS = [
    "unsubscribe.١.٠.AAAAAAAAAAAAAAAAAAAAAAAAAAA",  # Arabic-Indic digits pass int()
    "unsubscribe.2a.0.ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ",
    "préférences", "%FF%FE", "a.b.c.d", "unsubscribe.-1.0.AAAAAAAAAAAAAAAAAAAAAAAAAAA", "x" * 500,
]


@pytest.mark.parametrize("token", BAD_TOKENS)
@pytest.mark.parametrize("purpose", ["unsubscribe", "preferences", "confirm"])
def test_bad_bytes_in_a_token_are_a_400_without_a_traceback(
    web: Harness, caplog: pytest.LogCaptureFixture, purpose: str, token: str  # noqa: F811
) -> None:
    with caplog.at_level(logging.WARNING):
        answers = [web.client.get(f"/{purpose}/{token}"),
                   web.client.post(f"/{purpose}/{token}", data={"csrf": "١٢.ü"})]
        if purpose == "unsubscribe":
            answers.append(web.client.post(f"/{purpose}/{token}", content=b"List-Unsubscribe=One-Click",
                                           headers={"Content-Type": "application/x-www-form-urlencoded"}))
    for answer in answers:
        assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:200])
        assert set(answer.headers) >= SECURITY_HEADERS, answer.headers
    assert not [r for r in caplog.records if (r.levelno >= logging.ERROR or r.exc_info) and r.threadName != THREAD_NAME]


def test_a_non_ascii_csrf_field_is_refused_not_a_crash(web: Harness, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    web.client.get("/subscribe")
    with caplog.at_level(logging.WARNING):
        for value in ("١٧٠٠٠٠٠٠٠٠.ab", "1700000000." + "é" * 40, "\x00", "1." + "0" * 40):
            answer = web.client.post("/subscribe", data={"csrf": value, "email": "a@example.org", "language": "en"})
            assert answer.status_code == 403
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.threadName != THREAD_NAME]


def test_error_answers_and_healthz_carry_the_page_security_headers(web: Harness) -> None:  # noqa: F811
    reader = web.store.subscribers.upsert("reader@example.org", language="en")
    assert reader
    subscriber = web.store.subscribers.by_email("reader@example.org")
    assert subscriber is not None
    one_click = LinkMaker(web.config.site, "x").unsubscribe_url(subscriber.id).removeprefix(PUBLIC)
    answers = {
        "405": web.client.put("/subscribe"),
        "405 webhook": web.client.get("/webhooks/mailgun"),
        "413": web.client.post("/subscribe", content=b"email=" + b"a" * 200_000,
                               headers={"Content-Type": "application/x-www-form-urlencoded"}),
        "404": web.client.get("/no/such/page"),
        "one-click": web.client.post(one_click, content=b"List-Unsubscribe=One-Click",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"}),
        "healthz": web.client.get("/healthz"),
        "page": web.client.get("/subscribe"),
    }
    expected = {"405": 405, "405 webhook": 405, "413": 413, "404": 404, "one-click": 200, "healthz": 200, "page": 200}
    assert {name: answer.status_code for name, answer in answers.items()} == expected
    page_headers = {name: answers["page"].headers[name] for name in SECURITY_HEADERS}
    for name, answer in answers.items():
        assert {header: answer.headers.get(header) for header in SECURITY_HEADERS} == page_headers, name
    assert answers["one-click"].headers["content-type"].startswith("text/plain")


def test_a_500_answer_carries_them_too(web: Harness) -> None:  # noqa: F811
    broken = TestClient(create_app(lambda: web.config, web.store, transport_factory=lambda _c: InMemoryTransport()),
                        base_url=PUBLIC, raise_server_exceptions=False)
    (web.path.parent / "templates" / "web").mkdir(parents=True, exist_ok=True)
    (web.path.parent / "templates" / "web" / "subscribe.html.j2").write_text("{% broken", encoding="utf-8")
    answer = broken.get("/subscribe")
    assert answer.status_code == 500
    assert set(answer.headers) >= SECURITY_HEADERS


# --- 15.5 names ----------------------------------------------------------------------------------


def test_a_typed_name_is_cleaned_kept_off_the_mail_and_shown_only_on_our_page(web: Harness) -> None:  # noqa: F811
    typed = "Free\r\nBcc: victim@example.org\x00 \u202eprize\u202c \x85 <a href=//evil>click</a>"
    subscribe(web.client, "new@example.org", name=typed)
    subscriber = web.store.subscribers.by_email("new@example.org")
    assert subscriber is not None
    assert subscriber.name == "Free Bcc: victim@example.org prize <a href=//evil>click</a>"
    (outgoing,) = web.transport.accepted
    assert outgoing.recipient == "new@example.org"
    for fragment in (b"Free", b"Bcc", b"prize", b"evil"):
        assert fragment not in outgoing.data  # headers, text and HTML parts alike
    page = web.client.get(confirm_link(parse(outgoing.data)))
    assert "Free Bcc: victim@example.org prize &lt;a href=//evil&gt;click&lt;/a&gt;" in page.text


def test_names_from_the_preferences_form_are_cleaned_too(web: Harness) -> None:  # noqa: F811
    web.store.subscribers.upsert("reader@example.org", language="en")
    subscriber = web.store.subscribers.by_email("reader@example.org")
    assert subscriber is not None
    path = LinkMaker(web.config.site, "x").preferences_url(subscriber.id).removeprefix(PUBLIC)
    page = web.client.get(path)
    answer = web.client.post(path, data={"csrf": csrf_of(page.text), "language": "en", "name": "Rana\r\n\x1b[31mX"})
    assert answer.status_code == 303
    assert web.store.subscribers.get(subscriber.id).name == "Rana [31mX"  # type: ignore[union-attr]


def test_a_confirmation_queued_before_a_restart_is_sent_after_it(tmp_path: Path) -> None:
    harness = make_harness(tmp_path)
    harness.transport.unavailable = "cannot connect to 127.0.0.1:1"
    subscribe(harness.client, "queued@example.org")
    assert harness.transport.accepted == []
    stop_worker(harness.client)  # the process ends
    harness.client.close()
    harness.store.close()
    store = Store.open(harness.config.store_url)  # the next process, with a working mail server
    transport = InMemoryTransport()
    app = create_app(lambda: harness.config, store, transport_factory=lambda _c: transport)
    app.state.confirmations.drain()  # its retry is due later: nothing yet
    assert [m.recipient for m in transport.accepted] == []
    assert ConsentRepository(store.engine).queued_confirmations() == 1  # still queued, for its retry
    app.state.confirmations.drain(now=datetime.now(UTC) + timedelta(minutes=1))
    assert [m.recipient for m in transport.accepted] == ["queued@example.org"]
    assert ConsentRepository(store.engine).queued_confirmations() == 0
    app.state.confirmations.stop()
    store.close()
