"""Operator sessions for /admin: a signed cookie naming the user, when it was issued, and a tag of
their password hash (so `publisher admin passwd` ends every old session of that user).

The cookie is HttpOnly, SameSite=Strict, Secure when site.public_url is https, and lasts 12 hours.
It carries no secret: its HMAC is keyed by site.secret under a purpose of its own, so it is never
interchangeable with a mail link token or a CSRF value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

from publisher.passwords import fingerprint, verify_password

COOKIE = "publisher_admin"
MAX_AGE_SECONDS = 12 * 3600
# A user that does not exist is checked against this, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = "scrypt$32768$8$1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AdminSessions:
    def __init__(self, secret: str, users: Mapping[str, str]) -> None:
        self._key = hashlib.sha256(b"publisher-admin-session:" + secret.encode("utf-8")).digest()
        self._users = dict(users)

    def authenticate(self, user: str, password: str) -> bool:
        stored = self._users.get(user)
        ok = verify_password(password, stored or _DUMMY_HASH)
        return ok and stored is not None

    def _mac(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest()[:24])

    def issue(self, user: str, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        payload = f"{user}\x00{issued}\x00{fingerprint(self._users[user])}".encode()
        return f"{_b64(payload)}.{self._mac(payload)}"

    def user(self, cookie: str | None, *, now: float | None = None) -> str | None:
        """The signed-in user the cookie names, or None (missing, forged, expired, password changed)."""
        if not cookie or "." not in cookie or len(cookie) > 1024:
            return None
        encoded, mac = cookie.rsplit(".", 1)
        try:
            payload = _unb64(encoded)
            user, issued_text, tag = payload.decode("utf-8").split("\x00")
            issued = int(issued_text)
        except (ValueError, UnicodeError):
            return None
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(payload).encode("ascii")):
            return None
        current = now if now is not None else time.time()
        if not 0 <= current - issued <= MAX_AGE_SECONDS:
            return None
        stored = self._users.get(user)
        if stored is None or not hmac.compare_digest(tag, fingerprint(stored)):
            return None
        return user
