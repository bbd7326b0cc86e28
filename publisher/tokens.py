"""Signed tokens for links in mail: unsubscribe, preferences, confirmation.

HMAC-SHA256 over (purpose, subscriber id, expiry), keyed by site.secret from the environment. A token
names its purpose and subscriber, so it cannot be reused for another action or another person, and it
carries no email address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass


class InvalidToken(ValueError):
    """Forged, damaged, for another purpose, or expired."""


@dataclass(frozen=True)
class TokenClaims:
    purpose: str
    subscriber_id: int
    expires_at: int  # unix seconds; 0 = never


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"publisher-tokens:" + secret.encode("utf-8")).digest()

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()[:20])

    def sign(self, purpose: str, subscriber_id: int, *, ttl_seconds: int | None = None, now: float | None = None) -> str:
        if not purpose.isalnum():
            raise ValueError("purpose must be alphanumeric")
        expires = 0 if ttl_seconds is None else int((now or time.time()) + ttl_seconds)
        payload = f"{purpose}.{subscriber_id:x}.{expires:x}"
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str, purpose: str, *, now: float | None = None) -> TokenClaims:
        try:
            token_purpose, subscriber_hex, expires_hex, mac = token.split(".")
            payload = f"{token_purpose}.{subscriber_hex}.{expires_hex}"
            subscriber_id, expires = int(subscriber_hex, 16), int(expires_hex, 16)
        except ValueError as exc:
            raise InvalidToken("this link is damaged") from exc
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidToken("this link was not issued by us")
        if token_purpose != purpose:
            raise InvalidToken("this link is for something else")
        if expires and (now or time.time()) > expires:
            raise InvalidToken("this link has expired")
        return TokenClaims(token_purpose, subscriber_id, expires)
