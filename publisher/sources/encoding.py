"""Bytes of a feed as text in the right encoding, and item text checked for mojibake.

Feeds lie about their encoding: an Arabic feed in windows-1256 declared as UTF-8, or not declared at
all, or declared windows-1252. feedparser would fall back to windows-1252 and hand us mojibake
(ÊÕÚíÏ ÚÓßÑí) that looks like success. So we decide the encoding ourselves, before feedparser:

1. a byte order mark wins;
2. each declared charset (HTTP Content-Type, then the XML declaration, then XML's default UTF-8) is
   tried strictly; a Unicode encoding that decodes is trusted, a single-byte one only when the
   result does not read as mojibake (charset-normalizer's mess measure);
3. else charset-normalizer detects it: maintained, already installed with requests, and it judges
   candidates by how the decoded text reads, which is what tells windows-1256 from windows-1252;
4. else the text is decoded with replacement characters and every item that contains one is
   skipped by name (never delivered).

Double-encoded UTF-8 (valid UTF-8 whose text reads "Ø§Ù„") cannot be caught at the byte level: the
bytes are fine. ftfy repairs it per item (repair_text): it is built for exactly that case, undoes
only what it can undo losslessly, and leaves good text alone.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from charset_normalizer import from_bytes  # imported by requests anyway
from charset_normalizer.md import mess_ratio

# More than this share of "messy" characters in the non-ASCII words: mojibake, not text.
MESS_LIMIT = 0.2
REPLACEMENT = "\ufffd"
# charset-normalizer's coherence (how much the decoded words look like a language) needed to trust it.
MIN_COHERENCE = 0.2

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_XML_DECLARATION = re.compile(rb"^(\s*<\?xml[^>]*?encoding\s*=\s*[\"'])([A-Za-z0-9._:-]+)([\"'])")
_NON_ASCII_WORD = re.compile(r"\S*[^\x00-\x7f]\S*")
_NON_ASCII_BYTES = re.compile(rb"[^\s<>]*[\x80-\xff][^\s<>]*")
# A single-byte misreading yields Latin-1/Latin Extended, Greek or Cyrillic letters: text without any
# (Arabic, say) needs no mess measure.
_MISREAD_LETTERS = re.compile(r"[\u0080-\u04ff]")
# Every pattern of ftfy's badness test needs one of these (Latin-1 to Cyrillic, general punctuation
# to box drawing, U+F8FF, the fi/fl ligatures, U+FFFD): text without any, Arabic say, is not bad
# and skips ftfy's large regex (tests/test_sources_fast_paths.py checks the set against ftfy's).
MOJIBAKE_CHARACTERS = "\u0080-\u04ff\u2000-\u2bff\uf8ff\ufb01\ufb02\ufffd"
_MOJIBAKE_CHARACTER = re.compile(f"[{MOJIBAKE_CHARACTERS}]")
_UNICODE_CODECS = frozenset({"utf-8", "utf-8-sig", "utf-16", "utf-32", "utf-16-le", "utf-16-be"})


@dataclass(frozen=True)
class DecodedBody:
    text: str
    encoding: str  # the codec used, by Python's name
    warning: str | None = None  # set when the feed's own declaration was wrong or missing
    reliable: bool = True  # False: decoded with replacement characters


@cache
def _ftfy() -> Any:
    """ftfy, imported on first use (a tenth of a second every command would pay)."""
    import ftfy
    import ftfy.badness

    return ftfy


def is_bad(text: str) -> bool:
    """ftfy's test for text that reads as mojibake."""
    return bool(_ftfy().badness.is_bad(text))


def declared_xml_encoding(body: bytes) -> str | None:
    found = _XML_DECLARATION.match(body[:200])
    return found.group(2).decode("ascii") if found else None


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip()).name
    except LookupError:
        return None


def reads_as_mojibake(text: str) -> bool:
    """Text whose non-ASCII words are mostly the wrong letters: a single-byte misreading."""
    words = " ".join(_NON_ASCII_WORD.findall(text))
    if not words:
        return False
    return mess_ratio(words[:20000], maximum_threshold=1.0) > MESS_LIMIT or is_bad(words[:20000])


def decode_body(body: bytes, http_charset: str | None) -> DecodedBody:
    """The feed as text. Never raises: undecodable bytes become U+FFFD and reliable=False."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return DecodedBody(body.decode(codec, errors="replace"), codec)
    declared_xml = declared_xml_encoding(body)
    declared = [c for c in (_codec(http_charset), _codec(declared_xml)) if c]
    named = ", ".join(dict.fromkeys(declared)) or "none"
    for codec in dict.fromkeys([*declared, "utf-8"]):
        try:
            text = body.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        if codec in _UNICODE_CODECS or not reads_as_mojibake(text):
            if declared and codec not in declared:
                return DecodedBody(text, codec, f"the feed declares {named} but is UTF-8; read as UTF-8")
            return DecodedBody(text, codec)
    if _mostly_utf8(body):
        return DecodedBody(
            body.decode("utf-8", errors="replace"),
            "utf-8",
            "the feed is UTF-8 with some broken bytes; items whose text has them are skipped",
            reliable=False,
        )
    detected = _detect(body)
    if detected is not None:
        what = f"declares {named}" if declared else "declares no encoding"
        return DecodedBody(
            body.decode(detected),
            detected,
            f"the feed {what} but is {detected}; read as {detected} "
            "(ask its publisher to declare the right charset)",
        )
    fallback = declared[0] if declared else "utf-8"
    return DecodedBody(
        body.decode(fallback, errors="replace"),
        fallback,
        f"the feed's encoding cannot be told (it declares {named}); items whose text "
        "cannot be decoded are skipped",
        reliable=False,
    )


def _mostly_utf8(body: bytes) -> bool:
    """UTF-8 with a few broken sequences (a bad copy-paste), not another encoding."""
    text = body.decode("utf-8", errors="replace")
    broken = text.count(REPLACEMENT)
    good = sum(1 for ch in text if ord(ch) > 127) - broken
    return good >= 4 * broken


def _detect(body: bytes) -> str | None:
    """charset-normalizer's verdict on the words that are not ASCII (the markup around them says
    nothing), when it is confident and the whole body decodes with it."""
    sample = b" ".join(_NON_ASCII_BYTES.findall(body))[:100_000]
    best = from_bytes(sample).best()
    if best is None or not best.encoding or best.coherence < MIN_COHERENCE or best.chaos > MESS_LIMIT / 2:
        return None
    try:
        text = body.decode(best.encoding)
    except (UnicodeDecodeError, LookupError):
        return None
    return None if reads_as_mojibake(text) else str(best.encoding)


def as_utf8_document(decoded: DecodedBody) -> bytes:
    """The text as UTF-8 bytes, with the XML declaration saying so (feedparser reads that too)."""
    data = decoded.text.encode("utf-8")
    return _XML_DECLARATION.sub(rb"\1utf-8\3", data, count=1)


class GarbledText(Exception):
    """An item's text is mojibake or has undecodable bytes; the message says which."""


def repair_text(value: str | None) -> tuple[str | None, bool]:
    """(text, repaired): double-encoded UTF-8 undone by ftfy. Raises GarbledText when the text still
    holds replacement characters or reads as mojibake."""
    if not value or value.isascii():
        return value, False
    repaired = False
    if _MOJIBAKE_CHARACTER.search(value) and is_bad(value):
        fixed = str(_ftfy().fix_encoding(value))
        if fixed != value:
            value, repaired = fixed, True
    if REPLACEMENT in value:
        raise GarbledText("its text has bytes that cannot be decoded in any encoding we can tell")
    if _MISREAD_LETTERS.search(value) and reads_as_mojibake(value):
        raise GarbledText("its text is garbled (mojibake: decoded in the wrong encoding)")
    return value, repaired
