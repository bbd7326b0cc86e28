"""DKIM signatures (RFC 6376, RFC 8463) on the digest's messages: Ed25519 or RSA keys in PEM files.

Every copy differs (To, Message-ID, List-Unsubscribe, the unsubscribe link in the body), so each is
signed when it is personalized. The signature covers From, Subject, Date, Message-ID,
List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 requires the last two to be covered) and the
other headers a receiver shows or relies on; c=relaxed/simple.

Written here rather than with dkimpy's signer, on purpose: dkimpy signs RSA in pure Python (33
messages/s with a 2048-bit key on the development machine, slower than an SMTP server takes them)
and re-parses the whole message with a regex; signing is the small part of DKIM (hash the body, hash
a few canonicalized headers, one OpenSSL signature through `cryptography`). dkimpy, an independent
implementation, verifies our signatures in tests/test_email_dkim.py, for both key types.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from publisher.config.schema import DkimSettings

SIGNED_HEADERS = (
    "from", "to", "subject", "date", "message-id", "reply-to", "list-id",
    "list-unsubscribe", "list-unsubscribe-post", "mime-version", "content-type", "content-language",
)
_WSP = re.compile(rb"[ \t]+")


class DkimError(ValueError):
    """The key cannot be used (unreadable, not PEM, or neither Ed25519 nor RSA)."""


class DkimSigner:
    """Callable: the message (CRLF line ends) with a DKIM-Signature header in front."""

    prepends = True  # the signed message is the signature header + the message, unchanged

    def __init__(self, *, domain: str, selector: str, private_key_pem: bytes) -> None:
        self.domain = domain
        self.selector = selector
        try:
            key = serialization.load_pem_private_key(private_key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise DkimError(f"mail.dkim.private_key_file is not an unencrypted PEM private key: {exc}") from exc
        if isinstance(key, ed25519.Ed25519PrivateKey):
            self.algorithm = "ed25519-sha256"
        elif isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 1024:
                raise DkimError("mail.dkim: an RSA key needs at least 1024 bits (2048 recommended)")
            self.algorithm = "rsa-sha256"
        else:
            raise DkimError("mail.dkim: the key must be Ed25519 or RSA")
        self._key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey = key

    @classmethod
    def from_settings(cls, settings: DkimSettings, base_dir: Path) -> DkimSigner:
        path = Path(settings.private_key_file)
        path = path if path.is_absolute() else base_dir / path
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise DkimError(f"mail.dkim.private_key_file {path}: {exc.strerror}") from exc
        return cls(domain=settings.domain, selector=settings.selector, private_key_pem=pem)

    def __call__(self, message: bytes, *, now: int | None = None) -> bytes:
        head, _, body = message.partition(b"\r\n\r\n")
        fields = _fields(head)
        names = [name for name in SIGNED_HEADERS if name in fields]
        body_hash = base64.b64encode(hashlib.sha256(_simple_body(body)).digest()).decode("ascii")
        tags = (
            f"v=1; a={self.algorithm}; c=relaxed/simple; d={self.domain}; s={self.selector};\r\n"
            f" t={int(time.time()) if now is None else now}; h={':'.join(names)};\r\n bh={body_hash};\r\n b="
        )
        data = b"".join(_relaxed(name, fields[name]) + b"\r\n" for name in names)
        data += _relaxed("dkim-signature", b" " + tags.encode("ascii"))
        signature = base64.b64encode(self._sign(data)).decode("ascii")
        folded = "\r\n ".join(signature[i : i + 72] for i in range(0, len(signature), 72))
        return f"DKIM-Signature: {tags}{folded}\r\n".encode("ascii") + message

    def _sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(hashlib.sha256(data).digest())  # RFC 8463: Ed25519 over the SHA-256 hash
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _fields(head: bytes) -> dict[str, bytes]:
    """Header name (lower case) -> raw value, folding kept; the last occurrence wins (signed bottom-up)."""
    fields: dict[str, bytes] = {}
    name = ""
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and name:
            fields[name] += b"\r\n" + line
        elif b":" in line:
            raw, _, value = line.partition(b":")
            name = raw.decode("ascii").strip().lower()
            fields[name] = value
    return fields


def _relaxed(name: str, value: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case name, unfolded value, runs of WSP as one space, trimmed."""
    return name.encode("ascii") + b":" + _WSP.sub(b" ", value.replace(b"\r\n", b"")).strip(b" \t")


def _simple_body(body: bytes) -> bytes:
    """RFC 6376 3.4.3: the body without trailing empty lines, ending in one CRLF."""
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def signer_for(settings: DkimSettings | None, base_dir: Path) -> DkimSigner | None:
    """The signer config.yaml asks for (mail.dkim), or None: MessageTemplate.build(signer=...)."""
    return DkimSigner.from_settings(settings, base_dir) if settings is not None else None
