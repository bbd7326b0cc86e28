"""Content-Transfer-Encoding of a body with slots, chosen by size: quoted-printable or base64.

Quoted-printable keeps ASCII as it is but writes every other byte as =XX: Arabic UTF-8 grows about
3x, so an Arabic HTML part is smaller in base64 (4/3 of every byte); English stays quoted-printable.

Both encoders keep the body split at its slots so that per recipient only the small values are
encoded. Quoted-printable: every static piece and every value ends with a soft line break (column 0).
Base64 works in groups of 3 bytes, so a value shifts the grouping of what follows: each static piece
is encoded ahead for the three possible shifts, and per recipient only the value, the 0-2 bytes
left over before it and the 0-2 bytes after it that complete its last group are encoded.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping

from publisher.render.slots import SLOT_PATTERN

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"
QP_LINE = 76  # RFC 2045: encoded lines at most 76 characters, CRLF excluded
B64_LINE = 76
QUOTED_PRINTABLE, BASE64 = "quoted-printable", "base64"


def choose_encoding(body: str) -> str:
    """The smaller of the two encodings for this body."""
    data = body.encode("utf-8")
    qp_size = len(binascii.b2a_qp(data, istext=True))
    return BASE64 if (len(data) + 2) // 3 * 4 * 78 // 76 < qp_size else QUOTED_PRINTABLE


# --- quoted-printable -----------------------------------------------------------------------------


def qp(text: str) -> bytes:
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", CRLF)


def encode_qp_piece(text: str) -> bytes:
    """Quoted-printable for a piece followed by more text: it ends at column 0 (soft break added)."""
    if not text:
        return b""
    encoded = qp(text)
    if encoded.endswith(CRLF):
        return encoded
    start = encoded.rfind(b"\n") + 1
    last = encoded[start:]
    if len(last) < QP_LINE:
        return encoded + SOFT_BREAK
    cut = QP_LINE - 1
    if last[cut - 1 : cut] == b"=":  # never split an =XX escape
        cut -= 1
    elif last[cut - 2 : cut - 1] == b"=":
        cut -= 2
    return encoded[:start] + last[:cut] + SOFT_BREAK + last[cut:] + SOFT_BREAK


# --- base64 ---------------------------------------------------------------------------------------


def _lines(data: bytes) -> bytes:
    """Base64 of `data` (a whole number of 3-byte groups, or the very end) in lines of <= 76 + CRLF."""
    if not data:
        return b""
    encoded = binascii.b2a_base64(data, newline=False)
    if len(encoded) <= B64_LINE:  # the bytes around a value (per recipient, per slot): one line
        return encoded + CRLF
    return b"".join(encoded[i : i + B64_LINE] + CRLF for i in range(0, len(encoded), B64_LINE))


class Base64Body:
    """A body with slots, encoded in base64 ahead of time except around the values."""

    def __init__(self, body: str, *, in_html: bool) -> None:
        self.in_html = in_html  # values are HTML-escaped in the HTML part
        chunks = SLOT_PATTERN.split(body.replace("\r\n", "\n").replace("\r", "\n"))
        self.first = chunks[0].encode("utf-8")
        self.keys: list[str] = chunks[1::2]
        statics = [chunk.encode("utf-8") for chunk in chunks[2::2]]
        head_cut = len(self.first) - len(self.first) % 3
        self._head = _lines(self.first[:head_cut])
        self._head_rest = self.first[head_cut:]
        # per static piece and skip k (bytes taken by the value before it): (head bytes, encoded, rest)
        self._statics: list[tuple[bytes, list[tuple[bytes, bytes]]]] = []
        for data in statics:
            shifted = []
            for skip in range(3):
                body_part = data[skip:]
                cut = len(body_part) - len(body_part) % 3
                shifted.append((_lines(body_part[:cut]), body_part[cut:]))
            self._statics.append((data, shifted))

    def fill(self, values: Mapping[str, bytes]) -> bytes:
        """The encoded body for one recipient (values already escaped as the part needs, UTF-8)."""
        # Per recipient and per slot (a click link carries one): plain statements, the short case inline.
        out = [self._head]
        append = out.append
        carry = self._head_rest
        for key, (data, shifted) in zip(self.keys, self._statics, strict=True):
            pending = carry + values[key]
            skip = -len(pending) % 3
            if skip > len(data):  # a static piece too short to realign: take all of it
                carry = pending + data
                continue
            if skip:
                pending += data[:skip]
            if pending:
                encoded = binascii.b2a_base64(pending, newline=False)
                append(encoded + CRLF if len(encoded) <= B64_LINE else _lines(pending))
            encoded, carry = shifted[skip]
            append(encoded)
        append(_lines(carry))
        return b"".join(out)[:-2]  # the CRLF before the boundary belongs to the boundary
