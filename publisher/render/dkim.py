"""DKIM signatures on the digest's messages, with dkimpy (Ed25519 or RSA keys in PEM files).

Every copy differs (To, Message-ID, List-Unsubscribe, the unsubscribe link in the body), so each is
signed when it is personalized. The signature covers From, Subject, Date, Message-ID,
List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 requires the last two to be covered) and the
other headers a receiver shows or relies on.
"""

from __future__ import annotations

import base64
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from publisher.config.schema import DkimSettings

SIGNED_HEADERS = (
    b"From", b"To", b"Subject", b"Date", b"Message-ID", b"Reply-To", b"List-Id",
    b"List-Unsubscribe", b"List-Unsubscribe-Post", b"MIME-Version", b"Content-Type", b"Content-Language",
)


class DkimError(ValueError):
    """The key cannot be used (unreadable, not PEM, or neither Ed25519 nor RSA)."""


class DkimSigner:
    """Callable: the message with a DKIM-Signature header in front."""

    def __init__(self, *, domain: str, selector: str, private_key_pem: bytes) -> None:
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        try:
            key = serialization.load_pem_private_key(private_key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise DkimError(f"mail.dkim.private_key_file is not an unencrypted PEM private key: {exc}") from exc
        if isinstance(key, ed25519.Ed25519PrivateKey):
            raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
            self.algorithm = b"ed25519-sha256"
            self._key = base64.b64encode(raw)  # dkimpy takes the 32-byte seed in base64
        elif isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 1024:
                raise DkimError("mail.dkim: an RSA key needs at least 1024 bits (2048 recommended)")
            self.algorithm = b"rsa-sha256"
            self._key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption())
        else:
            raise DkimError("mail.dkim: the key must be Ed25519 or RSA")

    @classmethod
    def from_settings(cls, settings: DkimSettings, base_dir: Path) -> DkimSigner:
        path = Path(settings.private_key_file)
        path = path if path.is_absolute() else base_dir / path
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise DkimError(f"mail.dkim.private_key_file {path}: {exc.strerror}") from exc
        return cls(domain=settings.domain, selector=settings.selector, private_key_pem=pem)

    def __call__(self, message: bytes) -> bytes:
        head = message.partition(b"\r\n\r\n")[0].lower()
        present = [name for name in SIGNED_HEADERS if head.startswith(name.lower() + b":")
                   or b"\r\n" + name.lower() + b":" in head]
        signature = dkim.sign(
            message, self.selector, self.domain, self._key,
            canonicalize=(b"relaxed", b"simple"), signature_algorithm=self.algorithm, include_headers=present,
        )
        return signature + message


def signer_for(settings: DkimSettings | None, base_dir: Path) -> DkimSigner | None:
    """The signer config.yaml asks for (mail.dkim), or None: MessageTemplate.build(signer=...)."""
    return DkimSigner.from_settings(settings, base_dir) if settings is not None else None
