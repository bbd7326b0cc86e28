"""DKIM: every personalized copy signed (Ed25519 or RSA, dkimpy) and verified by dkimpy against the
public key, covering From, Subject, Date, Message-ID, List-Unsubscribe and List-Unsubscribe-Post."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from publisher.config.schema import DkimSettings
from publisher.render.dkim import DkimError, DkimSigner, signer_for
from publisher.render.message import MessageTemplate
from tests.support.digests import EDITIONS, SENT_AT, SITE, recipient, render

REQUIRED = {"from", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"}


def key_pair(kind: str) -> tuple[bytes, bytes]:
    """(private key PEM, the DNS TXT record's value)."""
    if kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # type: ignore[assignment]
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem, record


def dns(record: bytes):  # type: ignore[no-untyped-def]
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.news.example.org."
        return record

    return lookup


def signed(language: str, signer: DkimSigner) -> bytes:
    template = MessageTemplate.build(
        render(language), sender=EDITIONS[language].from_address, reply_to=None,
        list_id=f"{language}.news.example.org", list_unsubscribe_mailto=SITE.unsubscribe_mailto,
        date=SENT_AT, signer=signer,
    )
    return template.personalize(recipient(language))


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
@pytest.mark.parametrize("language", ["ar", "en"])
def test_signed_copies_verify_with_the_public_key(kind: str, language: str, tmp_path: Path) -> None:
    pem, record = key_pair(kind)
    (tmp_path / "dkim.pem").write_bytes(pem)
    signer = signer_for(DkimSettings(domain="news.example.org", selector="s1", private_key_file="dkim.pem"), tmp_path)
    assert signer is not None
    message = signed(language, signer)
    assert message.startswith(b"DKIM-Signature: v=1; a=" + (b"ed25519" if kind == "ed25519" else b"rsa") + b"-sha256")
    assert dkim.verify(message, dnsfunc=dns(record))
    header = message.partition(b"\r\n\r\n")[0].decode("ascii")
    covered = re.search(r"h=([^;]*);", " ".join(header.split()))
    assert covered and {name.strip() for name in covered.group(1).split(":")} >= REQUIRED
    # a changed subject or unsubscribe link no longer verifies
    assert not dkim.verify(message.replace(b"\r\nSubject: ", b"\r\nSubject: X", 1), dnsfunc=dns(record))
    tampered = message.replace(b"List-Unsubscribe: <https://", b"List-Unsubscribe: <http://", 1)
    assert tampered != message and not dkim.verify(tampered, dnsfunc=dns(record))
    head, _, body = message.partition(b"\r\n\r\n")
    assert not dkim.verify(head + b"\r\n\r\n" + body.replace(b"=", b"-", 1), dnsfunc=dns(record))
    assert dkim.verify(message + b"\r\n\r\n", dnsfunc=dns(record))  # trailing empty lines: simple body


def test_no_dkim_settings_no_signer(tmp_path: Path) -> None:
    assert signer_for(None, tmp_path) is None


def test_unusable_keys_are_refused_with_the_setting_named(tmp_path: Path) -> None:
    with pytest.raises(DkimError, match="private_key_file"):
        DkimSigner.from_settings(DkimSettings(domain="x.org", selector="s", private_key_file="absent.pem"), tmp_path)
    with pytest.raises(DkimError, match="PEM"):
        DkimSigner(domain="x.org", selector="s", private_key_pem=b"not a key")
