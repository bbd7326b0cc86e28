"""The web face, part 2: the signed links of every digest (unsubscribe, preferences, delete my data),
forged tokens, CSRF on those pages, open redirects, escaping and security headers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from publisher.models import SubscriberStatus
from publisher.tokens import TokenSigner
from tests.test_web import PUBLIC, Harness, csrf_of, make_harness, subscribe, web  # noqa: F401

SECRET = "test-secret-0123456789abcdef"  # tests/conftest.py write_config


def add(web: Harness, email: str, **values: object) -> int:  # noqa: F811
    web.store.subscribers.upsert(email, language=str(values.pop("language", "en")), **values)  # type: ignore[arg-type]
    subscriber = web.store.subscribers.by_email(email)
    assert subscriber is not None
    return subscriber.id


def link(purpose: str, subscriber_id: int, secret: str = SECRET) -> str:
    return f"/{purpose}/{TokenSigner(secret).sign(purpose, subscriber_id)}"


# --- unsubscribe ---------------------------------------------------------------------------------


def test_a_get_of_the_unsubscribe_link_changes_nothing(web: Harness) -> None:  # noqa: F811
    reader = add(web, "reader@example.org")
    for _ in range(3):
        page = web.client.get(link("unsubscribe", reader))
        assert page.status_code == 200 and "reader@example.org" in page.text
        assert page.text.count("<form") == 1 and 'method="post"' in page.text
    assert web.status("reader@example.org") is SubscriberStatus.ACTIVE


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart", "no content type"])
def test_one_click_post_unsubscribes_at_once_and_again(web: Harness, encoding: str) -> None:  # noqa: F811
    reader = add(web, "reader@example.org")
    stranger = web.new_client()  # a mailbox provider's server: no cookie, no page visited
    for _ in range(2):
        if encoding == "urlencoded":
            answer = stranger.post(link("unsubscribe", reader), content=b"List-Unsubscribe=One-Click",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        elif encoding == "multipart":
            answer = stranger.post(link("unsubscribe", reader), files={"List-Unsubscribe": (None, "One-Click")})
        else:
            answer = stranger.post(link("unsubscribe", reader), content=b"List-Unsubscribe=One-Click")
        assert answer.status_code == 200 and answer.text == "You are unsubscribed.\n"
        assert "location" not in answer.headers
        assert web.status("reader@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_the_unsubscribe_button_needs_its_field_and_then_works(web: Harness) -> None:  # noqa: F811
    reader = add(web, "reader@example.org")
    path = link("unsubscribe", reader)
    assert web.client.post(path, data={}).status_code == 403
    other = add(web, "other@example.org")
    other_field = csrf_of(web.client.get(link("unsubscribe", other)).text)
    assert web.client.post(path, data={"csrf": other_field}).status_code == 403  # bound to its own link
    assert web.status("reader@example.org") is SubscriberStatus.ACTIVE
    page = web.client.get(path)
    done = web.client.post(path, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert web.status("reader@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert "You are unsubscribed" in web.client.get(path).text  # idempotent, no button any more


def test_unsubscribing_keeps_a_bounced_or_complained_status(web: Harness) -> None:  # noqa: F811
    bounced = add(web, "b@example.org", status=SubscriberStatus.BOUNCED)
    complained = add(web, "c@example.org", status=SubscriberStatus.COMPLAINED)
    for subscriber in (bounced, complained):
        assert web.client.post(link("unsubscribe", subscriber), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert web.status("b@example.org") is SubscriberStatus.BOUNCED
    assert web.status("c@example.org") is SubscriberStatus.COMPLAINED


@pytest.mark.parametrize("purpose", ["unsubscribe", "preferences", "confirm"])
def test_forged_foreign_and_misused_tokens_are_refused(web: Harness, purpose: str) -> None:  # noqa: F811
    victim = add(web, "victim@example.org")
    genuine = TokenSigner(SECRET).sign(purpose, victim)
    kind, ident, expiry, mac = genuine.split(".")
    wrong_purpose = "preferences" if purpose != "preferences" else "unsubscribe"
    attempts = [
        f"{kind}.{int(ident, 16) + 1:x}.{expiry}.{mac}",  # another subscriber's id under this signature
        f"{kind}.{ident}.{expiry}.{mac[:-2]}{'AA' if not mac.endswith('AA') else 'BB'}",  # damaged
        TokenSigner("another-secret-0123456789").sign(purpose, victim),  # not our key
        TokenSigner(SECRET).sign(wrong_purpose, victim),  # ours, for something else
        "garbage",
    ]
    for token in attempts:
        page = web.client.get(f"/{purpose}/{token}")
        assert page.status_code == 400 and "This link does not work" in page.text, token
        posted = web.client.post(f"/{purpose}/{token}", data={"List-Unsubscribe": "One-Click", "csrf": "1.x"})
        assert posted.status_code in (400, 403), token
        assert "victim@example.org" not in page.text + posted.text
    assert web.status("victim@example.org") is SubscriberStatus.ACTIVE


# --- preferences ---------------------------------------------------------------------------------


def test_preferences_change_edition_sections_pause_and_name(web: Harness) -> None:  # noqa: F811
    reader = add(web, "reader@example.org", name="Rana")
    path = link("preferences", reader)
    page = web.client.get(path)
    assert page.status_code == 200 and "reader@example.org" in page.text and 'value="Rana"' in page.text
    saved = web.client.post(path, data={"csrf": csrf_of(page.text), "name": "Rana K", "language": "ar",
                                         "sections": ["sports", "culture"], "paused": "1"})
    assert saved.status_code == 303 and saved.headers["location"] == f"{path}?saved=1"
    subscriber = web.store.subscribers.get(reader)
    assert subscriber is not None
    assert (subscriber.name, subscriber.language, subscriber.sections, subscriber.paused) == (
        "Rana K", "ar", ("culture", "sports"), True
    )
    again = web.client.get(saved.headers["location"])
    assert '<html lang="ar" dir="rtl">' in again.text and "حُفظت إعداداتك" in again.text
    unpaused = web.client.post(path, data={"csrf": csrf_of(again.text), "name": "Rana K", "language": "ar"})
    assert unpaused.status_code == 303
    subscriber = web.store.subscribers.get(reader)
    assert subscriber is not None and subscriber.paused is False and subscriber.sections == ()
    assert subscriber.status is SubscriberStatus.ACTIVE


def test_preferences_refuse_unknown_values_and_missing_fields(web: Harness) -> None:  # noqa: F811
    reader = add(web, "reader@example.org")
    path = link("preferences", reader)
    field = csrf_of(web.client.get(path).text)
    assert web.client.post(path, data={"csrf": field, "language": "xx"}).status_code == 400
    assert web.client.post(path, data={"csrf": field, "language": "en", "sections": ["nope"]}).status_code == 400
    assert web.client.post(path, data={"language": "ar"}).status_code == 403
    other_field = csrf_of(web.client.get(link("preferences", add(web, "o@example.org"))).text)
    assert web.client.post(path, data={"csrf": other_field, "language": "ar"}).status_code == 403
    assert web.client.post(path, data={"csrf": field, "language": "ar"},
                           headers={"Origin": "https://evil.example"}).status_code == 403
    subscriber = web.store.subscribers.get(reader)
    assert subscriber is not None and subscriber.language == "en"


def test_preferences_cannot_reactivate_an_unsubscribed_address(web: Harness) -> None:  # noqa: F811
    reader = add(web, "gone@example.org", status=SubscriberStatus.UNSUBSCRIBED)
    path = link("preferences", reader)
    page = web.client.get(path)
    assert "Unsubscribed" in page.text and "/subscribe?lang=en" in page.text
    web.client.post(path, data={"csrf": csrf_of(page.text), "language": "en", "status": "active"})
    assert web.status("gone@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_delete_my_data_keeps_only_a_hashed_suppression(web: Harness) -> None:  # noqa: F811
    reader = add(web, "private@example.org", name="Private Person")
    path = link("preferences", reader)
    field = csrf_of(web.client.get(path).text)
    assert web.client.post(f"{path}/delete", data={"csrf": field}).status_code == 400  # box not ticked
    assert web.client.post(f"{path}/delete", data={"confirm": "yes"}).status_code == 403
    assert web.status("private@example.org") is SubscriberStatus.ACTIVE
    done = web.client.post(f"{path}/delete", data={"csrf": field, "confirm": "yes"})
    assert done.status_code == 200 and "Your data is deleted" in done.text
    assert web.store.subscribers.get(reader) is None
    assert web.store.subscribers.is_suppressed("private@example.org")
    with web.store.engine.connect() as connection:
        from sqlalchemy import text

        dump = "\n".join(str(row) for table in ("subscribers", "suppressions", "rate_events", "deliveries")
                         for row in connection.execute(text(f"SELECT * FROM {table}")))
    assert "private@example.org" not in dump.lower() and "Private Person" not in dump
    for purpose in ("preferences", "unsubscribe"):
        assert "Not on our list" in web.client.get(link(purpose, reader)).text
    assert web.client.post(link("unsubscribe", reader), data={"List-Unsubscribe": "One-Click"}).status_code == 200


def test_a_forgotten_subscribers_links_never_reach_a_newer_subscriber(web: Harness) -> None:  # noqa: F811
    old = add(web, "old@example.org")
    web.store.subscribers.forget(old)
    new = add(web, "new@example.org")
    assert new != old
    assert "new@example.org" not in web.client.get(link("preferences", old)).text


# --- redirects, escaping, headers ----------------------------------------------------------------


def test_no_open_redirects(web: Harness) -> None:  # noqa: F811
    reader = add(web, "reader@example.org")
    page = web.client.get("/subscribe")
    answers = [
        web.client.get("/"),
        web.client.get("/archive"),
        web.client.get("//evil.example/"),
        web.client.get("/subscribe?next=https://evil.example/&redirect=//evil.example"),
        web.client.post("/subscribe?next=https://evil.example/", data={
            "csrf": csrf_of(page.text), "email": "r@example.org", "language": "en",
            "next": "https://evil.example/", "lang": "//evil.example"}),
        web.client.post(link("preferences", reader) + "?next=//evil.example", data={
            "csrf": csrf_of(web.client.get(link("preferences", reader)).text), "language": "en",
            "next": "https://evil.example/"}),
    ]
    for answer in answers:
        location = answer.headers.get("location")
        if location is not None:
            assert location.startswith("/") and not location.startswith("//"), location
            assert "evil" not in location


def test_every_value_from_a_person_is_escaped(web: Harness) -> None:  # noqa: F811
    hostile = '<img src=x onerror=alert(1)>"\'&'
    reader = add(web, "reader@example.org", name=hostile)
    pages = [web.client.get(link("preferences", reader)).text, web.client.get(link("unsubscribe", reader)).text]
    subscribe(web.client, "new@example.org", name=hostile)
    (outgoing,) = web.transport.accepted
    pages.append(outgoing.data.decode("ascii"))
    assert "<img src=x" not in pages[0] and "&lt;img src=x onerror=alert(1)&gt;" in pages[0]
    assert all("<img src=x" not in page for page in pages)


def test_pages_carry_protective_headers(web: Harness) -> None:  # noqa: F811
    reader = add(web, "reader@example.org")
    for path in ("/subscribe", link("preferences", reader), link("unsubscribe", reader)):
        headers = web.client.get(path).headers
        assert "script-src" not in headers["content-security-policy"]
        assert "default-src 'none'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"  # signed links never leave in a Referer
    assert web.client.get(link("preferences", reader)).headers["cache-control"] == "no-store"


def test_pages_work_without_javascript(web: Harness) -> None:  # noqa: F811
    reader = add(web, "reader@example.org")
    for path in ("/subscribe", "/subscribe?lang=ar", link("preferences", reader), link("unsubscribe", reader), "/archive/"):
        text = web.client.get(path).text
        assert "<script" not in text.lower() and not re.search(r"\son[a-z]+=", text), path
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text


def test_a_large_body_is_refused(tmp_path: Path) -> None:
    harness = make_harness(tmp_path)
    answer = harness.client.post("/subscribe", content=b"email=" + b"a" * 200_000,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 413
    assert PUBLIC.startswith("http://127.0.0.1")


def test_webhooks_take_larger_bodies_than_forms_but_not_unbounded(tmp_path: Path) -> None:
    harness = make_harness(tmp_path)
    # 500 KB is a normal SendGrid event batch: it reaches the handler (which refuses it: not configured)
    answer = harness.client.post("/webhooks/sendgrid", content=b"[" + b" " * 500_000 + b"]",
                                 headers={"Content-Type": "application/json"})
    assert answer.status_code != 413
    answer = harness.client.post("/webhooks/sendgrid", content=b"x" * 2_000_000,
                                 headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
