"""Operator passwords, hashed with scrypt (memory-hard, in Python's hashlib through OpenSSL).

scrypt rather than argon2: it is in the standard library, so the console adds no compiled
dependency, and its memory cost (n=2**15, r=8: 32 MiB) defeats GPU guessing just as well at this
scale. The encoded form carries its parameters, so they can be raised later without breaking old
hashes: ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (salt and hash in unpadded URL-safe base64).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N, R, P = 2**15, 8, 1
_MAX_N = 2**20  # refuse absurd parameters in a tampered hash instead of allocating gigabytes
_PREFIX = "scrypt"


class PasswordHashError(ValueError):
    """The stored hash is not one we wrote (damaged, or another scheme)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    if not password:
        raise ValueError("an empty password cannot be hashed")
    salt = secrets.token_bytes(16)
    return f"{_PREFIX}${n}${r}${p}${_b64(salt)}${_b64(_derive(password, salt, n, r, p))}"


def parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    try:
        prefix, n_text, r_text, p_text, salt_text, hash_text = encoded.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt, digest = _unb64(salt_text), _unb64(hash_text)
    except (ValueError, UnicodeError) as exc:
        raise PasswordHashError("not a scrypt hash written by `publisher admin passwd`") from exc
    if prefix != _PREFIX or not (2 <= n <= _MAX_N and n & (n - 1) == 0) or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise PasswordHashError("not a scrypt hash written by `publisher admin passwd`")
    if len(salt) < 8 or len(digest) != 32:
        raise PasswordHashError("the hash is truncated")
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True only for the right password; a damaged hash or an empty password is simply False."""
    if not password:
        return False
    try:
        n, r, p, salt, digest = parse_hash(encoded)
    except PasswordHashError:
        return False
    return hmac.compare_digest(_derive(password, salt, n, r, p), digest)


def fingerprint(encoded: str) -> str:
    """A short, non-secret tag of a hash: sessions carry it, so changing a password ends them."""
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:16]
