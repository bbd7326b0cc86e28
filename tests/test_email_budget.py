"""The size budget: Gmail clips an HTML part over ~102 KB (as sent, encoded), hiding the footer
and its unsubscribe link. A ten-story digest stays at or under 75 KB in both languages, fifteen
stories under the clip line; the transfer encoding is chosen by size and decodes exactly."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from publisher.render.slots import fill_slots
from publisher.render.transfer import BASE64, QUOTED_PRINTABLE, Base64Body, choose_encoding
from tests.support.digests import build, recipient, render

BUDGET = 75 * 1024
CLIP = 102 * 1024


def html_part_as_sent(message: bytes) -> bytes:
    """The HTML part's encoded body, exactly as it travels."""
    head = message.partition(b"\r\n\r\n")[0]
    boundary = head.split(b'boundary="', 1)[1].split(b'"', 1)[0]
    for part in message.split(b"--" + boundary):
        headers, _, body = part.partition(b"\r\n\r\n")
        if b"text/html" in headers:
            return body
    raise AssertionError("no text/html part")


@pytest.mark.parametrize(("language", "stories", "limit"), [("en", 10, BUDGET), ("ar", 10, BUDGET),
                                                             ("en", 15, CLIP), ("ar", 15, CLIP)])
def test_html_part_as_sent_fits_the_budget(language: str, stories: int, limit: int) -> None:
    message = build(render(language, stories), language).personalize(recipient(language))
    size = len(html_part_as_sent(message))
    assert size <= limit, f"{language}, {stories} stories: HTML part {size / 1024:.1f} KB as sent"


def test_arabic_goes_base64_english_quoted_printable() -> None:
    assert build(render("ar"), "ar").encodings == (BASE64, BASE64)
    assert build(render("en"), "en").encodings == (QUOTED_PRINTABLE, QUOTED_PRINTABLE)
    assert choose_encoding("plain ascii text " * 50) == QUOTED_PRINTABLE
    assert choose_encoding("نص عربي " * 50) == BASE64


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage) and message.defects == []
    return message


@pytest.mark.parametrize("name", ["", "S", "Sa", "Sam", "سامر", "س&<>\"'", "Zoë Zoë Zoë Zoë"])
def test_base64_parts_decode_to_the_filled_digest_for_any_value_length(name: str) -> None:
    digest = render("ar")
    person = recipient("ar")
    person = person.__class__(**{**person.__dict__, "name": name})
    data = build(digest, "ar").personalize(person)
    body = data.partition(b"\r\n\r\n")[2]
    lines = [line for line in body.split(b"\r\n") if not line.startswith(b"--")]
    assert max(len(line) for line in lines) <= 76
    message = parse(data)
    values = {"UNSUBSCRIBE": person.unsubscribe_url, "PREFERENCES": person.preferences_url,
              "NAME": name, "EMAIL": person.email}
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and rich is not None
    assert plain["Content-Transfer-Encoding"] == "base64"
    assert plain.get_content().replace("\r\n", "\n") == fill_slots(digest.text, values)
    assert rich.get_content().replace("\r\n", "\n") == fill_slots(digest.html, values, escape_html=True)


@pytest.mark.parametrize("body", ["", "ab", "PUBSLOT0NAME0", "xPUBSLOT0NAME0PUBSLOT0EMAIL0y", "ع" * 100 + "PUBSLOT0NAME0"])
def test_base64_body_edge_cases(body: str) -> None:
    import base64

    encoded = Base64Body(body, in_html=False).fill({"NAME": "ن".encode(), "EMAIL": b"e@x.org"})
    expected = body.replace("PUBSLOT0NAME0", "ن").replace("PUBSLOT0EMAIL0", "e@x.org")
    assert base64.b64decode(encoded.replace(b"\r\n", b"")).decode("utf-8") == expected
