"""Click counting: story links rewritten, once per digest, to signed redirects on our own site.

A link becomes ``<public_url>/r/<token>``, the token carrying the digest, the story's position and
the exact target URL under an HMAC (keyed by site.secret, purpose "click"): the redirect answers 302
to exactly that URL and nothing else, so it is no open redirect, and a tampered token is a 400.
Nothing in the link names the reader: counts are per story per digest. Rewriting happens on the
digest rendered once per edition (before it is frozen), so personalization stays as fast as without.
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
from publisher.render.slots import defuse_url
from publisher.render.templates import absolute_url

_MAC_BYTES = 16


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
        self._base = public_url.rstrip("/")

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def token(self, digest_id: int, position: int, url: str) -> str:
        payload = f"{digest_id}.{position}.{url}".encode()
        return _b64(payload + self._mac(payload))

    def url(self, digest_id: int, position: int, url: str) -> str:
        return f"{self._base}/r/{self.token(digest_id, position, url)}"

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


def rewrite(
    rendered: RenderedDigest, articles: Sequence[Article], *, digest_id: int, links: ClickLinks, base_url: str
) -> RenderedDigest:
    """The digest with every story link (HTML href and plain-text line) through its click redirect."""
    html_part, text_part = rendered.html, rendered.text
    for position, article in enumerate(articles, start=1):
        target = defuse_url(absolute_url(article.url, base_url) or "")
        if not target.startswith(("https://", "http://")):
            continue
        redirect = links.url(digest_id, position, target)
        escaped = html.escape(target, quote=True)
        html_part = html_part.replace(f'href="{escaped}"', f'href="{html.escape(redirect, quote=True)}"')
        text_part = re.sub(rf"(?<!\S){re.escape(target)}(?=\s|$)", redirect.replace("\\", "\\\\"), text_part)
    return replace(rendered, html=html_part, text=text_part)
