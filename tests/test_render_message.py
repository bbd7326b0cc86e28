"""Per-recipient MIME bytes: parsed back with the stdlib email parser, headers, encodings, injection."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, date, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

import pytest

from publisher.config import EditionSettings, SiteSettings
from publisher.models import Article, Recipient, RenderedDigest
from publisher.render.email import DigestRenderer
from publisher.render.message import MessageTemplate, encode_qp_piece
from publisher.render.slots import fill_slots
from publisher.render.templates import make_environment
from tests.support.golden import assert_golden

GOLDEN = Path(__file__).parent / "golden" / "email"
DAY = date(2024, 12, 2)
SENT_AT = datetime(2024, 12, 2, 5, 0, tzinfo=UTC)
SITE = SiteSettings(
    name="Levant Today",
    base_url="https://news.example.org",
    logo_url="https://news.example.org/static/logo.png",
    public_url="https://news.example.org",
    secret="test-secret-0123456789",
)
EDITIONS = {
    "en": EditionSettings.model_validate(
        {
            "id": "en",
            "language": "en",
            "from": "Levant Today <digest@news.example.org>",
            "subject": "{site}: the day's news, {date}",
        }
    ),
    "ar": EditionSettings.model_validate(
        {
            "id": "ar",
            "language": "ar",
            "from": "ليفانت اليوم <digest@news.example.org>",
            "title": "ليفانت اليوم — النشرة الصباحية",
            "subject": "{site}: أخبار اليوم، {date}",
        }
    ),
}


@cache
def digest(language: str) -> RenderedDigest:
    import json

    rows = json.loads((GOLDEN / "articles.json").read_text(encoding="utf-8"))[language]
    articles = [
        Article(
            **{
                **r,
                "published_at": datetime.fromisoformat(r["published_at"]),
                "updated_at": datetime.fromisoformat(r["updated_at"]),
            }
        )
        for r in rows
    ]
    renderer = DigestRenderer(make_environment(None), SITE, EDITIONS[language])
    return renderer.render(
        articles, DAY, archive_url=f"https://news.example.org/archive/{language}/2024-12-02"
    )


def template(language: str = "ar", **overrides: object) -> MessageTemplate:
    options: dict[str, object] = {
        "sender": EDITIONS[language].from_address,
        "reply_to": "newsroom@news.example.org",
        "list_id": "Levant Today <digest-ar.news.example.org>",
        "list_unsubscribe_mailto": "unsubscribe@news.example.org",
        "date": SENT_AT,
    }
    options.update(overrides)
    return MessageTemplate.build(digest(language), **options)  # type: ignore[arg-type]


def recipient(**overrides: object) -> Recipient:
    values: dict[str, object] = {
        "delivery_id": 7,
        "email": "sam@example.com",
        "name": "سامر الحلبي",
        "message_id": "<7.ar.20241202@news.example.org>",
        "unsubscribe_url": "https://news.example.org/u/tok=en==?a=1&b=2",
        "preferences_url": "https://news.example.org/p/tok==?lang=ar&x=%20",
    }
    values.update(overrides)
    return Recipient(**values)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def bodies(message: EmailMessage) -> tuple[str, str]:
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and rich is not None
    # MIME text has CRLF line breaks; the digest was rendered with LF
    return plain.get_content().replace("\r\n", "\n"), rich.get_content().replace("\r\n", "\n")


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [v or "" for k, v in attrs if k == "href"]


def hrefs(html: str) -> list[str]:
    links = Links()
    links.feed(html)
    return links.hrefs


# --- structure and headers ------------------------------------------------------------------------


def test_message_parses_with_every_header() -> None:
    data = template().personalize(recipient())
    message = parse(data)
    assert message.defects == []
    assert str(message["From"]) == "ليفانت اليوم <digest@news.example.org>"
    assert str(message["To"]) == "سامر الحلبي <sam@example.com>"
    assert str(message["Subject"]) == "Levant Today: أخبار اليوم، 2 ديسمبر 2024"
    assert message["Date"].datetime == SENT_AT
    assert message["Message-ID"] == "<7.ar.20241202@news.example.org>"
    assert message["Reply-To"] == "newsroom@news.example.org"
    assert message["List-Id"] == "Levant Today <digest-ar.news.example.org>"
    assert re.sub(r"\s+", " ", message["List-Unsubscribe"]) == (
        "<https://news.example.org/u/tok=en==?a=1&b=2>, <mailto:unsubscribe@news.example.org?subject=unsubscribe>"
    )
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in data
    assert message["MIME-Version"] == "1.0"
    assert message["Content-Language"] == "ar"
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    # Arabic is smaller in base64 than in quoted-printable (=XX for every byte): chosen by size
    assert [p["Content-Transfer-Encoding"] for p in parts] == list(template().encodings)
    assert parts[0]["Content-Transfer-Encoding"] == "base64"


def test_crlf_line_ends_ascii_headers_and_short_lines() -> None:
    data = template().personalize(recipient(name="ن" * 300, unsubscribe_url="https://x.example/" + "a" * 800))
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    lines = data.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.isascii() and body.isascii()
    body_lines = [line for line in body.split(b"\r\n") if not line.startswith(b"--")]
    assert max(len(line) for line in body_lines) <= 76  # quoted-printable limit, values included
    # a long name is split into several RFC 2047 words; decode them the RFC way (the stdlib's
    # policy.default parser puts a space between adjacent encoded words in a display name)
    raw_to = email.message_from_bytes(data)["To"]
    assert str(make_header(decode_header(raw_to))) == "ن" * 300 + " <sam@example.com>"


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("سامر الحلبي", "https://news.example.org/u/tok=en==?a=1&b=2"),
        ('Sam "The Reader" O\'Brien, Jr.', "https://news.example.org/u?t=" + "=" * 90 + "&x= "[:-1]),
        ("Zoë & <Ann>", "https://news.example.org/u?t=ab%3D%3D&lang=ar"),
    ],
)
def test_both_parts_carry_the_recipients_values_exactly(name: str, url: str) -> None:
    person = recipient(name=name, unsubscribe_url=url)
    text, html = bodies(parse(template().personalize(person)))
    raw = digest("ar")
    values = {"UNSUBSCRIBE": url, "PREFERENCES": person.preferences_url, "NAME": name, "EMAIL": person.email}
    assert text == fill_slots(raw.text, values)
    assert html == fill_slots(raw.html, values, escape_html=True)
    assert f"مرحباً {name}،" in text and f"إلغاء الاشتراك: {url}" in text
    links = hrefs(html)
    assert url in links and person.preferences_url in links
    assert "PUBSLOT" not in text and "PUBSLOT" not in html


@pytest.mark.parametrize("characters", [1, 21, 22, 23, 24, 45, 46])
def test_non_ascii_names_around_one_encoded_word_decode_exactly(characters: int) -> None:
    # 22 Arabic letters are 44 bytes, one encoded word; 23 take two (a word holds 45 bytes)
    name = ("ب" * characters) if characters != 23 else "ب" * 22 + "e"
    raw_to = email.message_from_bytes(template().personalize(recipient(name=name)))["To"]
    assert str(make_header(decode_header(raw_to))) == f"{name} <sam@example.com>"
    words = re.findall(r"=\?utf-8\?b\?[^?]*\?=", str(raw_to))
    assert words and all(len(word) <= 75 for word in words)  # RFC 2047: an encoded word is <= 75
    assert (len(words) == 1) == (len(name.encode()) <= 45)


def test_recipient_without_a_name_gets_the_anonymous_greeting() -> None:
    text, html = bodies(parse(template().personalize(recipient(name=""))))
    assert "مرحباً،" in text and "مرحباً،" in html
    assert parse(template().personalize(recipient(name="")))["To"] == "sam@example.com"


def test_english_message_and_plain_ascii_headers() -> None:
    data = template("en", list_id="digest-en.news.example.org", reply_to=None).personalize(
        recipient(name="Sam Reader", message_id="<1@news.example.org>")
    )
    message = parse(data)
    assert b"\r\nTo: Sam Reader <sam@example.com>\r\n" in data
    assert b"\r\nSubject: Levant Today: the day's news, December 2, 2024\r\n" in data
    assert message["Reply-To"] is None
    assert message["List-Id"] == "<digest-en.news.example.org>"
    assert message["Content-Language"] == "en"
    text, _ = bodies(message)
    assert text.startswith("Levant Today\n") and "Hello Sam Reader," in text


# --- injection and validation ---------------------------------------------------------------------


def header_names(data: bytes) -> list[str]:
    head = data.partition(b"\r\n\r\n")[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line and not line[0].isspace()]


def test_line_breaks_in_name_subject_or_title_never_add_a_header() -> None:
    hostile = RenderedDigest(
        subject="Today\r\nBcc: everyone@example.com",
        html='<p>PUBSLOT0NAME0 <a href="PUBSLOT0UNSUBSCRIBE0">x</a></p>',
        text="Title\r\nBcc: x@y\nPUBSLOT0UNSUBSCRIBE0\n",
        preheader="",
        language="en",
        direction="ltr",
    )
    data = MessageTemplate.build(
        hostile,
        sender="A <a@example.org>",
        reply_to=None,
        list_id="l.example.org",
        list_unsubscribe_mailto=None,
    ).personalize(recipient(name="Eve\r\nBcc: victim@example.com\nX-Evil: 1"))
    names = header_names(data)
    assert "Bcc" not in names and "X-Evil" not in names
    message = parse(data)
    assert message["Bcc"] is None
    assert str(message["Subject"]) == "Today Bcc: everyone@example.com"
    assert str(message["To"]) == '"Eve Bcc: victim@example.com X-Evil: 1" <sam@example.com>'
    assert message["List-Unsubscribe"] == "<https://news.example.org/u/tok=en==?a=1&b=2>"


@pytest.mark.parametrize(
    "address",
    [
        "sam@example.com\r\nBcc: x@y",
        "<sam@example.com>",
        "sam@example.com>",
        "sam @example.com",
        "no-at-sign",
        "",
    ],
)
def test_unusable_recipient_address_is_refused(address: str) -> None:
    with pytest.raises(ValueError):
        template().personalize(recipient(email=address))


@pytest.mark.parametrize(
    "overrides",
    [
        {"message_id": "<a@b>\r\nBcc: x@y"},
        {"message_id": "no-brackets@example.org"},
        {"unsubscribe_url": "https://x.example/u\r\nBcc: x@y"},
        {"unsubscribe_url": "javascript:alert(1)"},
        {"unsubscribe_url": "https://x.example/<u>"},
        {"unsubscribe_url": 'https://x.example/u"onclick'},
        {"preferences_url": "https://x.example/p>q"},
        {"preferences_url": "https://x.example/" + "p" * 900},
        {"preferences_url": "https://x.example/p\nq"},
    ],
)
def test_unusable_per_recipient_values_are_refused(overrides: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        template().personalize(recipient(**overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        {"sender": "Levant <digest@news.example.org>\r\nBcc: x@y"},
        {"reply_to": "a@b.example\nBcc: x@y"},
        {"list_id": "bad id with spaces"},
        {"list_unsubscribe_mailto": "unsub@x.example>\r\nBcc: y@z"},
    ],
)
def test_unusable_build_values_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        template(**overrides)


# --- encoding details -----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 74, 75, 76, 77, 150, 151, 152])
def test_quoted_printable_piece_ends_at_column_zero_and_decodes(length: int) -> None:
    import quopri

    for text in ("a" * length, "=" * length, "ع" * length, "a" * (length - 1) + " "):
        encoded = encode_qp_piece(text)
        assert encoded.endswith(b"\r\n")
        assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
        assert quopri.decodestring(encoded).decode("utf-8") == text


def test_variants_are_built_once_and_reused() -> None:
    built = template()
    first = built.personalize(recipient(name="A"))
    second = built.personalize(recipient(name="B", email="b@example.com"))
    anonymous = built.personalize(recipient(name=""))
    assert len(first) > 10_000 and first != second and anonymous != first
    assert len(built._variants) == 2  # named and anonymous, each encoded once


# --- golden ---------------------------------------------------------------------------------------


def test_golden_eml() -> None:
    data = template().personalize(recipient())
    blanked = re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: ", data)
    blanked = re.sub(rb"\r\nMessage-ID: [^\r]*", b"\r\nMessage-ID: ", blanked)
    assert_golden(GOLDEN / "ar.eml", blanked)
