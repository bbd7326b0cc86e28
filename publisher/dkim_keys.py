"""DKIM keys: made by `publisher dkim keygen`, published as the TXT record `publisher dns` prints.

RSA 2048 is the default: every receiver verifies it, while Ed25519 (RFC 8463) is still skipped by
some large mailbox providers, so an Ed25519-only signature can count as no signature there.
Keys are made and read by `cryptography` (the OpenSSL the signer in publisher.render.dkim uses).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

KeyType = Literal["rsa", "ed25519"]


class DkimKeyError(ValueError):
    """The key file cannot be read or is not an RSA or Ed25519 private key."""


def generate(kind: KeyType = "rsa", *, bits: int = 2048) -> bytes:
    """A new private key as unencrypted PKCS#8 PEM."""
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        if bits < 1024 or bits > 4096:
            raise ValueError("RSA DKIM keys are 1024 to 4096 bits (2048 recommended)")
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path: Path, pem: bytes, *, force: bool = False) -> None:
    """Write the key readable by its owner only; refuse to replace one unless forced."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)


def public_record(pem: bytes) -> str:
    """The DKIM TXT record's value for this private key (v=DKIM1; k=...; p=...)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise DkimKeyError(f"not a PEM private key without a password ({exc})") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode("ascii")
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")
    raise DkimKeyError("neither an RSA nor an Ed25519 key")
