"""Cross-site request forgery protection for the forms: a signed double-submit value.

The hidden form field is `<issued>.<HMAC(secret, binding, nonce, issued)>`. On a page reached through
a signed link (confirm, unsubscribe, preferences) the binding is that link's token, which only its
owner has; on the subscribe form the binding is a random nonce kept in a SameSite=Strict cookie, which
another site can neither read nor set. Values expire, and a request whose Origin (or Referer) names
another site is refused before anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request

FIELD = "csrf"
COOKIE = "publisher_csrf"
MAX_AGE_SECONDS = 12 * 3600
_VALUE = re.compile(r"([0-9]{1,12})\.([0-9a-f]{40})")


class CsrfGuard:
    def __init__(self, secret: str, *, max_age: int = MAX_AGE_SECONDS, previous: Iterable[str] = ()) -> None:
        self._key = _key(secret)
        self._keys = [self._key, *(_key(old) for old in previous if old and old != secret)]
        self._max_age = max_age

    @staticmethod
    def _mac(key: bytes, binding: str, nonce: str, issued: int) -> str:
        message = f"{binding}\x00{nonce}\x00{issued}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()[:40]

    def issue(self, binding: str, nonce: str = "", *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        return f"{issued}.{self._mac(self._key, binding, nonce, issued)}"

    def check(self, value: str | None, binding: str, nonce: str = "", *, now: float | None = None) -> bool:
        """False for anything but a value we issued within max_age (any bytes a client sends: never raises)."""
        if not isinstance(value, str) or len(value) > 100 or not value.isascii():
            return False
        match = _VALUE.fullmatch(value)
        if match is None:
            return False
        issued = int(match.group(1))
        current = now if now is not None else time.time()
        if not 0 <= current - issued <= self._max_age:
            return False
        given = match.group(2).encode("ascii")
        return any([hmac.compare_digest(given, self._mac(key, binding, nonce, issued).encode("ascii"))
                    for key in self._keys])


def _key(secret: str) -> bytes:
    return hashlib.sha256(b"publisher-csrf:" + secret.encode("utf-8")).digest()


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def cookie_nonce(request: Request) -> str | None:
    value = request.cookies.get(COOKIE)
    return value if value and 16 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum() else None


def same_origin(request: Request, public_url: str) -> bool:
    """False when the browser says the form was sent from another site (Origin, else Referer)."""
    source = request.headers.get("origin")
    if source is None:
        referer = request.headers.get("referer")
        if not referer:
            return True  # no claim either way: the signed field decides
        source = referer
    if source == "null":
        return True  # privacy settings and no-referrer pages send this for any origin: the field decides
    parts = urlsplit(source)
    allowed = {request.headers.get("host", ""), urlsplit(public_url).netloc}
    return bool(parts.netloc) and parts.netloc in allowed
