"""Signed tokens for links in mail: unsubscribe, preferences, confirmation.

HMAC-SHA256 over (purpose, subscriber id, expiry), keyed by site.secret from the environment. A token
names its purpose and subscriber, so it cannot be reused for another action or another person, and it
carries no email address.

Keys rotate: new tokens are always signed with the current secret; tokens signed with one of
`previous` secrets (site.previous_secrets) still verify, so the links in every digest already sent
keep working after site.secret changes.

Anything that is not exactly our format (other characters, other lengths, non-ASCII digits that
int() would accept) is refused as damaged before any key is used: InvalidToken, never another error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

MAX_TOKEN_LENGTH = 200
_MAC_BYTES = 20
_TOKEN = re.compile(r"([a-z0-9]{1,40})\.([0-9a-f]{1,16})\.([0-9a-f]{1,16})\.([A-Za-z0-9_-]{27})")


class InvalidToken(ValueError):
    """Forged, damaged, for another purpose, or expired."""


@dataclass(frozen=True)
class TokenClaims:
    purpose: str
    subscriber_id: int
    expires_at: int  # unix seconds; 0 = never


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _key(secret: str) -> bytes:
    return hashlib.sha256(b"publisher-tokens:" + secret.encode("utf-8")).digest()


class TokenSigner:
    """`TokenSigner(secret).sign(purpose, id)`; `TokenSigner(secret, previous=[old, older])` also
    verifies what the older secrets signed."""

    def __init__(self, secret: str, *, previous: Iterable[str] = ()) -> None:
        self._key = _key(secret)
        self._keys = [self._key, *(_key(old) for old in previous if old and old != secret)]
        # keyed once; each signature copies it (no re-keying, and a small update keeps the GIL:
        # the one-shot hmac.digest releases it, and a send's claimer thread then waits to get it back)
        self._keyed = hmac.new(self._key, digestmod=hashlib.sha256)

    @staticmethod
    def _mac_with(key: bytes, payload: str) -> str:
        return _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()[:_MAC_BYTES])

    def sign(self, purpose: str, subscriber_id: int, *, ttl_seconds: int | None = None, now: float | None = None) -> str:
        if not (purpose.isascii() and purpose.isalnum() and purpose.lower() == purpose):
            raise ValueError("purpose must be lower-case ASCII letters and digits")
        if subscriber_id < 0:
            raise ValueError("subscriber id must not be negative")
        expires = 0 if ttl_seconds is None else int((now or time.time()) + ttl_seconds)
        payload = f"{purpose}.{subscriber_id:x}.{expires:x}"
        mac = self._keyed.copy()
        mac.update(payload.encode("ascii"))
        return f"{payload}.{_b64(mac.digest()[:_MAC_BYTES])}"

    def verify(self, token: str, purpose: str, *, now: float | None = None) -> TokenClaims:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise InvalidToken("this link is damaged")
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise InvalidToken("this link is damaged")
        token_purpose, subscriber_hex, expires_hex, mac = match.groups()
        payload = f"{token_purpose}.{subscriber_hex}.{expires_hex}"
        given = mac.encode("ascii")
        # every key is tried, so the time taken does not say which one (if any) signed it
        matched = [hmac.compare_digest(given, self._mac_with(key, payload).encode("ascii")) for key in self._keys]
        if not any(matched):
            raise InvalidToken("this link was not issued by us")
        if token_purpose != purpose:
            raise InvalidToken("this link is for something else")
        expires = int(expires_hex, 16)
        if expires and (now or time.time()) > expires:
            raise InvalidToken("this link has expired")
        return TokenClaims(token_purpose, int(subscriber_hex, 16), expires)
