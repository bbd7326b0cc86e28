"""Click and open counting: story links rewritten, once per digest, to signed redirects on our site.

A link becomes ``<public_url>/r/<token>``, the token carrying the digest, the story's position and
the exact target URL under an HMAC (keyed by site.secret, purpose "click"): the redirect answers 302
to exactly that URL and nothing else, so it is no open redirect, and a tampered token is a 400.
By default nothing in the link names the reader: counts are per story per digest.

With analytics.per_subscriber the link ends in a reader part, ``/r/<token>/<reader>``: the
subscriber's id under its own HMAC bound to the digest (purpose "reader"), left in the rendered
digest as the READER slot and filled per recipient (one HMAC per message, the same value in every
link of it). Public copies fill the slot with nothing, so their links count anonymously.

analytics.opens adds a 1x1 image ``/o/<token>[/<reader>]`` (the token signs the digest, purpose
"open") inside an IFMAILED conditional block: only mailed copies carry it, never the archive.

Rewriting happens on the digest rendered once per edition (before it is frozen), so
personalization only fills slots, as it does without.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from publisher.models import Article, RenderedDigest
from publisher.render.slots import Slot, conditional, defuse_url, token
from publisher.render.templates import absolute_url

_MAC_BYTES = 16
_READER_MAC_BYTES = 12
_READER = re.compile(r"/[A-Za-z0-9_-]{1,64}")


class InvalidClick(ValueError):
    """Not a click link we issued (damaged, forged, or pointing elsewhere)."""


@dataclass(frozen=True)
class ClickTarget:
    digest_id: int
    position: int  # the story's place in the digest, from 1
    url: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ClickLinks:
    def __init__(self, secret: str, public_url: str) -> None:
        self._key = hashlib.sha256(b"publisher-click:" + secret.encode("utf-8")).digest()
        self._open_key = hashlib.sha256(b"publisher-open:" + secret.encode("utf-8")).digest()
        self._reader_key = hashlib.sha256(b"publisher-reader:" + secret.encode("utf-8")).digest()
        self._base = public_url.rstrip("/")

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def token(self, digest_id: int, position: int, url: str) -> str:
        payload = f"{digest_id}.{position}.{url}".encode()
        return _b64(payload + self._mac(payload))

    def url(self, digest_id: int, position: int, url: str, *, per_reader: bool = False) -> str:
        """The redirect; per_reader: followed by the READER slot, filled per recipient."""
        return f"{self._base}/r/{self.token(digest_id, position, url)}" + (token(Slot.READER) if per_reader else "")

    def reader(self, digest_id: int, subscriber_id: int) -> str:
        """The READER slot's value for one recipient of a digest: "/<id and its MAC>"."""
        payload = str(subscriber_id).encode("ascii")  # per recipient: hmac.digest is the one-shot C path
        mac = hmac.digest(self._reader_key, b"%d.%s" % (digest_id, payload), "sha256")
        return "/" + _b64(payload + mac[:_READER_MAC_BYTES])

    def verify_reader(self, digest_id: int, reader: str) -> int:
        """The subscriber id in a reader part of a link of that digest; InvalidClick when not ours."""
        try:
            raw = _unb64(reader)
        except (ValueError, UnicodeError) as exc:
            raise InvalidClick("damaged link") from exc
        payload, mac = raw[:-_READER_MAC_BYTES], raw[-_READER_MAC_BYTES:]
        expected = hmac.new(self._reader_key, b"%d.%s" % (digest_id, payload), hashlib.sha256).digest()
        if len(raw) <= _READER_MAC_BYTES or not hmac.compare_digest(mac, expected[:_READER_MAC_BYTES]):
            raise InvalidClick("not a link we issued")
        if not payload.isdigit():
            raise InvalidClick("damaged link")
        return int(payload)

    def open_token(self, digest_id: int) -> str:
        payload = f"open.{digest_id}".encode()
        return _b64(payload + hmac.new(self._open_key, payload, hashlib.sha256).digest()[:_MAC_BYTES])

    def open_url(self, digest_id: int, *, per_reader: bool = False) -> str:
        return f"{self._base}/o/{self.open_token(digest_id)}" + (token(Slot.READER) if per_reader else "")

    def verify_open(self, value: str) -> int:
        """The digest id of an open pixel's token; InvalidClick when not ours."""
        try:
            raw = _unb64(value)
        except (ValueError, UnicodeError) as exc:
            raise InvalidClick("damaged link") from exc
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        expected = hmac.new(self._open_key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, expected):
            raise InvalidClick("not a link we issued")
        kind, _, digest_text = payload.decode("ascii", "replace").partition(".")
        if kind != "open" or not digest_text.isdigit():
            raise InvalidClick("damaged link")
        return int(digest_text)

    def verify(self, token: str) -> ClickTarget:
        try:
            raw = _unb64(token)
        except (ValueError, UnicodeError) as exc:
            raise InvalidClick("damaged link") from exc
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidClick("not a link we issued")
        try:
            digest_text, position_text, url = payload.decode("utf-8").split(".", 2)
            target = ClickTarget(int(digest_text), int(position_text), url)
        except (ValueError, UnicodeError) as exc:
            raise InvalidClick("damaged link") from exc
        if not target.url.startswith(("https://", "http://")):
            raise InvalidClick("not a web address")
        return target


def is_reader(value: str) -> bool:
    """A READER slot value as reader() makes them (checked before it goes into a message)."""
    return not value or _READER.fullmatch(value) is not None


def open_pixel(url: str) -> str:
    """The pixel's HTML, in a block only mailed copies keep (the archive and console show none)."""
    image = (f'<img src="{html.escape(url, quote=True)}" width="1" height="1" alt="" '
             'style="display:block;width:1px;height:1px;border:0;" aria-hidden="true">')
    return conditional(Slot.MAILED, image, "")


def rewrite(
    rendered: RenderedDigest,
    articles: Sequence[Article],
    *,
    digest_id: int,
    links: ClickLinks,
    base_url: str,
    positions: Sequence[int] | None = None,
    clicks: bool = True,
    per_reader: bool = False,
    opens: bool = False,
) -> RenderedDigest:
    """The digest with every story link (HTML href and plain-text line) through its click redirect
    (clicks), and the open pixel before </body> (opens). `positions`: each article's place in the
    whole digest (a section variant's articles keep the numbers they have there); default 1, 2, ..."""
    html_part, text_part = rendered.html, rendered.text
    numbers = list(positions) if positions is not None else list(range(1, len(articles) + 1))
    for position, article in zip(numbers, articles, strict=True):
        target = defuse_url(absolute_url(article.url, base_url) or "")
        if not clicks or not target.startswith(("https://", "http://")):
            continue
        redirect = links.url(digest_id, position, target, per_reader=per_reader)
        escaped = html.escape(target, quote=True)
        html_part = html_part.replace(f'href="{escaped}"', f'href="{html.escape(redirect, quote=True)}"')
        text_part = re.sub(rf"(?<!\S){re.escape(target)}(?=\s|$)", redirect.replace("\\", "\\\\"), text_part)
    if opens:
        pixel = open_pixel(links.open_url(digest_id, per_reader=per_reader))
        end = html_part.lower().rfind("</body>")
        html_part = html_part[:end] + pixel + html_part[end:] if end >= 0 else html_part + pixel
    return replace(rendered, html=html_part, text=text_part)
