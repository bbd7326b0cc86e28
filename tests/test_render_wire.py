"""The SMTP DATA content built with the message, from parts stuffed once, is exactly what stuffing the
finished message gives, whatever opens a line: fixed text, a slot value, a DKIM header. And a real
SMTP server receives the message itself."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from publisher.delivery.mail import SmtpTransport
from publisher.models import OutgoingMessage, RenderedDigest
from publisher.render.dkim import DkimSigner
from publisher.render.message import MessageTemplate
from publisher.render.wire import stuff_message
from tests.support.smtp import RecordingSmtpServer
from tests.test_render_message import recipient, template

NAMES = ["سامر الحلبي", ".dot first", "Sam", "", "a\n.b", "..", "x" * 200 + "\n.y"]

DOTTY = RenderedDigest(
    subject="Dots",
    html='<style>\n.x{color:red}\n</style>\n.<p>PUBSLOT0NAME0</p>\n.PUBSLOT0EMAIL0\n<a href="PUBSLOT0UNSUBSCRIBE0">.</a>\n.',
    text=".opening dot\nPUBSLOT0NAME0\n.PUBSLOT0NAME0.\n..\n.\nPUBSLOT0UNSUBSCRIBE0\n.",
    preheader="",
    language="en",
    direction="ltr",
)


def signer() -> DkimSigner:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return DkimSigner(domain="news.example.org", selector="s1", private_key_pem=pem)


def dotty(**options: object) -> MessageTemplate:
    return MessageTemplate.build(DOTTY, sender="A <a@example.org>", reply_to=None, list_id="l.example.org",
                                 list_unsubscribe_mailto=None, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [
    lambda: template("ar"), lambda: template("en"), dotty, lambda: dotty(signer=signer()),
    lambda: template("ar", signer=signer()),
], ids=["ar", "en", "dots", "dots-dkim", "ar-dkim"])
def test_wire_is_the_stuffed_message(make) -> None:  # type: ignore[no-untyped-def]
    built = make()
    for name in NAMES:
        person = recipient(name=name)
        message, wire = built.personalize_for_smtp(person)
        if built._signer is None:
            assert message == built.personalize(person)
        assert wire == stuff_message(message), name
        assert wire.endswith(b"\r\n.\r\n")


def test_a_real_server_receives_the_message_itself() -> None:
    built = dotty()
    messages = []
    for number, name in enumerate(NAMES):
        data, wire = built.personalize_for_smtp(recipient(name=name, delivery_id=number))
        messages.append(OutgoingMessage(number, "a@example.org", f"r{number}@example.test", f"<{number}@x>", data, wire))
    with RecordingSmtpServer() as server, SmtpTransport(server.settings()) as transport:
        assert transport.send(messages).sent == len(messages)
        received = server.messages
    assert [m.data.replace(b"\r\n", b"\n") for m in received] == [m.data.replace(b"\r\n", b"\n") for m in messages]
