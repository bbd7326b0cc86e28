"""SmtpTransport against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from publisher.config import SmtpSettings
from publisher.delivery.mail import SmtpTransport, build_transport
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage
from tests.conftest import require
from tests.support.messages import sample_message
from tests.support.smtp import DROP, RecordingSmtpServer, Scripted
from tests.support.smtp_sink import SmtpSinkProcess, read_record
from tests.support.tls import Certificate, TlsUnavailable, self_signed_certificate

USER, PASSWORD = "mailer", "s3cret-Pa55word"


@pytest.fixture(params=[True, False], ids=["pipelining", "one-by-one"])
def pipelining(request: pytest.FixtureRequest) -> bool:
    """Whether the server offers PIPELINING: the transport takes a different path for each."""
    return bool(request.param)


@pytest.fixture
def server(pipelining: bool) -> Iterator[RecordingSmtpServer]:
    with RecordingSmtpServer(pipelining=pipelining) as running:
        yield running


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    try:
        return self_signed_certificate(tmp_path_factory.mktemp("tls"))
    except TlsUnavailable as exc:
        require(False, str(exc))  # a skip on a user's machine, a failure under CI
        raise


def messages(*recipients: str, size: int = 2_000, start: int = 1) -> list[OutgoingMessage]:
    return [sample_message(start + i, r, size=size) for i, r in enumerate(recipients)]


def as_received(message: OutgoingMessage) -> bytes:
    """The content a server gets for `message` (SMTP content always ends with CRLF)."""
    return message.data if message.data.endswith(b"\r\n") else message.data + b"\r\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the happy path ------------------------------------------------------------------------------


def test_messages_arrive_byte_exact_with_their_envelope(server: RecordingSmtpServer) -> None:
    batch = messages("ali@example.test", "sara@example.test", size=25_000)
    assert all(b"\r\n.leading dot line" in m.data for m in batch)  # dot-stuffing is exercised

    with SmtpTransport(server.settings()) as transport:
        report = transport.send(batch)

    assert [r.ok for r in report.results] == [True, True]
    received = server.messages
    assert [m.data for m in received] == [m.data for m in batch]
    assert [(m.mail_from, m.rcpt_tos) for m in received] == [(b.sender, (b.recipient,)) for b in batch]
    # the provider id is the server's queue id from the reply to DATA
    assert [r.provider_message_id for r in report.results] == [m.queue_id for m in received]
    assert [r.delivery_id for r in report.results] == [m.delivery_id for m in batch]


def test_lines_that_look_like_the_end_of_data_arrive_intact(server: RecordingSmtpServer) -> None:
    tricky = b"Message-ID: <t@x.test>\r\n\r\n.\r\n..two dots\r\n.\r\nlast line without CRLF"
    with SmtpTransport(server.settings()) as transport:
        report = transport.send([OutgoingMessage(1, "a@example.test", "b@example.test", "<t@x.test>", tricky)])
    assert report.results[0].ok
    assert server.messages[0].data == tricky + b"\r\n"  # SMTP content always ends with CRLF


def test_with_pipelining_the_commands_of_a_message_go_out_in_one_write(
    server: RecordingSmtpServer, pipelining: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes | str] = []
    original_send = smtplib.SMTP.send

    def recording_send(self: smtplib.SMTP, data: bytes | str) -> None:
        writes.append(data)
        original_send(self, data)

    with SmtpTransport(server.settings()) as transport:
        transport.send(messages("warm@example.test"))  # connect and EHLO before counting
        monkeypatch.setattr(smtplib.SMTP, "send", recording_send)
        batch = messages("a@example.test", "b@example.test", start=2)
        report = transport.send(batch)
        monkeypatch.undo()
    assert report.sent == 2
    if pipelining:
        # MAIL+RCPT+DATA of a; a's content with b's MAIL+RCPT+DATA behind it (RFC 2920); b's content
        assert len(writes) == 3, writes
        content, _, envelope = bytes(writes[1]).rpartition(b"\r\n.\r\n")
        assert content and envelope.startswith(b"MAIL FROM:<digest@news.example.test>")
        assert envelope.endswith(b"\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
    else:
        assert len(writes) == 8  # MAIL, RCPT, DATA, content, for each
    assert [m.rcpt_tos for m in server.messages[1:]] == [("a@example.test",), ("b@example.test",)]
    assert [m.data for m in server.messages[1:]] == [as_received(m) for m in batch]


def test_a_refusal_at_the_end_of_data_with_the_next_envelope_sent_ahead_drops_the_link_and_goes_on(
    server: RecordingSmtpServer,
) -> None:
    # an RSET now would be read as the next message's content: the transport opens a new link instead
    server.script("a@example.test", Scripted("554 5.7.1 content refused", at="data"))
    batch = messages("a@example.test", "b@example.test", "c@example.test")
    with SmtpTransport(server.settings()) as transport:
        report = transport.send(batch)
    assert [(r.ok, r.temporary) for r in report.results] == [(False, False), (True, False), (True, False)]
    assert "554 5.7.1 content refused" in (report.results[0].error or "")
    assert [m.rcpt_tos for m in server.messages] == [("b@example.test",), ("c@example.test",)]
    assert [m.data for m in server.messages] == [as_received(m) for m in batch[1:]]
    assert server.connections == (2 if server.pipelining else 1)


def test_a_stop_mid_batch_ends_it_after_the_message_in_flight_and_leaves_the_rest_out(
    server: RecordingSmtpServer,
) -> None:
    stop = threading.Event()
    server.on_message = lambda _message: stop.set()  # while the first message's reply is on its way
    batch = messages("a@example.test", "b@example.test", "c@example.test")
    with SmtpTransport(server.settings()) as transport:
        transport.interrupt_on(stop)
        report = transport.send(batch)
        assert [(r.delivery_id, r.ok) for r in report.results] == [(batch[0].delivery_id, True)]
        assert [m.rcpt_tos for m in server.messages] == [("a@example.test",)]
        server.on_message = None
        stop.clear()
        again = transport.send(batch[1:])  # b's envelope went out ahead: that link was dropped, not reused
    assert again.sent == 2
    assert [m.rcpt_tos for m in server.messages] == [("a@example.test",), ("b@example.test",), ("c@example.test",)]
    assert server.connections == (2 if server.pipelining else 1)


def test_one_connection_sends_one_message_per_call_and_several_share_batches_of_four() -> None:
    transport = SmtpTransport(SmtpSettings(kind="smtp", host="127.0.0.1", port=free_port()))
    assert (transport.batch_for(1), transport.batch_for(4)) == (1, 4)


def test_without_a_queue_id_the_message_id_is_the_provider_id() -> None:
    with RecordingSmtpServer(queue_ids=False) as server, SmtpTransport(server.settings()) as transport:
        report = transport.send(messages("ali@example.test"))
    assert report.results[0].provider_message_id == "<1.digest@news.example.test>"


def test_one_connection_carries_fifty_messages_across_batches(server: RecordingSmtpServer) -> None:
    recipients = [f"reader{i}@example.test" for i in range(50)]
    with SmtpTransport(server.settings()) as transport:
        for start in range(0, 50, 10):
            report = transport.send(messages(*recipients[start : start + 10], start=start + 1))
            assert report.sent == 10
        assert transport.connections_opened == 1
    assert server.connections == 1
    assert [m.rcpt_tos[0] for m in server.messages] == recipients


def test_an_empty_batch_opens_no_connection(server: RecordingSmtpServer) -> None:
    with SmtpTransport(server.settings()) as transport:
        assert transport.send([]).results == []
        assert not transport.connected
    assert server.connections == 0


def test_close_is_idempotent_and_a_later_send_reconnects(server: RecordingSmtpServer) -> None:
    transport = SmtpTransport(server.settings())
    transport.send(messages("a@example.test"))
    transport.close()
    transport.close()
    assert transport.send(messages("b@example.test", start=2)).sent == 1
    transport.close()
    assert server.connections == 2


def test_a_non_ascii_recipient_goes_out_with_smtputf8(server: RecordingSmtpServer) -> None:
    with SmtpTransport(server.settings()) as transport:
        report = transport.send(messages("أحمد@example.test"))
    assert report.results[0].ok, report.results[0].error
    assert server.messages[0].rcpt_tos == ("أحمد@example.test",)


def test_a_non_ascii_recipient_is_refused_for_good_by_a_server_without_smtputf8(pipelining: bool) -> None:
    with RecordingSmtpServer(smtputf8=False, pipelining=pipelining) as server:
        with SmtpTransport(server.settings()) as transport:
            report = transport.send(messages("a@example.test", "أحمد@example.test", "b@example.test"))
        ehlo = smtplib.SMTP(server.host, server.port, local_hostname="probe.test", timeout=10)
        try:
            ehlo.ehlo()
            assert not ehlo.has_extn("smtputf8"), "the server under test really lacks SMTPUTF8"
        finally:
            ehlo.quit()
    first, arabic, last = report.results
    assert first.ok and last.ok
    assert (arabic.ok, arabic.temporary) == (False, False)  # no retry can help: that server cannot take it
    assert "SMTPUTF8" in (arabic.error or "") and "أحمد@example.test" in (arabic.error or "")
    assert [m.rcpt_tos for m in server.messages] == [("a@example.test",), ("b@example.test",)]
    assert server.connections == 2  # the transport's one connection, the probe's; no reconnect for the refusal


# --- refusals ------------------------------------------------------------------------------------


def test_450_is_temporary_550_permanent_and_the_rest_of_the_batch_still_goes(pipelining: bool) -> None:
    replies = {
        "busy@example.test": "450 4.2.1 Mailbox busy",
        "gone@example.test": "550 5.1.1 No such user",
        "full@example.test": "552 5.2.2 Mailbox full",  # at RCPT, RFC 5321 says: treat as temporary
    }
    with RecordingSmtpServer(replies=replies, pipelining=pipelining) as server, SmtpTransport(server.settings()) as transport:
        report = transport.send(
            messages("a@example.test", "busy@example.test", "gone@example.test", "full@example.test", "b@example.test")
        )

    ok, busy, gone, full, last = report.results
    assert (full.ok, full.temporary) == (False, True)
    assert ok.ok and last.ok
    assert (busy.ok, busy.temporary) == (False, True)
    assert busy.error is not None and "450 4.2.1 Mailbox busy" in busy.error and "RCPT" in busy.error
    assert (gone.ok, gone.temporary) == (False, False)
    assert gone.error is not None and "550 5.1.1 No such user" in gone.error
    assert [m.rcpt_tos[0] for m in server.messages] == ["a@example.test", "b@example.test"]
    assert server.connections == 1  # RSET, not a new connection, after each refusal


def test_refusals_at_the_end_of_data_are_classified_too(pipelining: bool) -> None:
    replies = {
        "full@example.test": Scripted("452 4.3.1 Insufficient storage", at="data"),
        "spam@example.test": Scripted("554 5.7.1 Message rejected as spam", at="data"),
    }
    with RecordingSmtpServer(replies=replies, pipelining=pipelining) as server, SmtpTransport(server.settings()) as transport:
        report = transport.send(messages("full@example.test", "spam@example.test", "ok@example.test"))
    full, spam, ok = report.results
    assert (full.ok, full.temporary) == (False, True) and "452" in (full.error or "")
    assert (spam.ok, spam.temporary) == (False, False) and "554 5.7.1" in (spam.error or "")
    assert ok.ok
    assert len(server.messages) == 1


def test_a_refused_sender_never_fails_the_recipient_permanently(pipelining: bool) -> None:
    replies = {"digest@news.example.test": Scripted("553 5.7.1 Sender not owned by user", at="mail")}
    with RecordingSmtpServer(replies=replies, pipelining=pipelining) as server, SmtpTransport(server.settings()) as transport:
        report = transport.send(messages("a@example.test"))
    result = report.results[0]
    assert (result.ok, result.temporary) == (False, True)
    assert result.error is not None and "553" in result.error and "from address" in result.error


def test_a_malformed_address_fails_permanently_without_touching_the_server(server: RecordingSmtpServer) -> None:
    bad = OutgoingMessage(9, "digest@news.example.test", "x@example.test>\r\nRCPT TO:<y@example.test", "<9@x>", b"x\r\n")
    with SmtpTransport(server.settings()) as transport:
        report = transport.send([bad])
    assert (report.results[0].ok, report.results[0].temporary) == (False, False)
    assert server.connections == 0


# --- broken connections --------------------------------------------------------------------------


def test_a_connection_closed_by_the_server_is_reopened_and_no_message_is_lost_or_doubled(pipelining: bool) -> None:
    recipients = [f"r{i}@example.test" for i in range(6)]
    with RecordingSmtpServer(disconnect_after=3, pipelining=pipelining) as server, SmtpTransport(server.settings()) as transport:
        report = transport.send(messages(*recipients))
    assert report.sent == 6
    assert [m.rcpt_tos[0] for m in server.messages] == recipients
    assert server.connections == 2


def test_a_connection_dropped_during_data_is_retried_on_a_new_one(pipelining: bool) -> None:
    replies = {"r1@example.test": Scripted(DROP, at="data", times=1)}
    with RecordingSmtpServer(replies=replies, pipelining=pipelining) as server, SmtpTransport(server.settings()) as transport:
        report = transport.send(messages("r0@example.test", "r1@example.test", "r2@example.test"))
    assert [r.ok for r in report.results] == [True, True, True]
    assert [m.rcpt_tos[0] for m in server.messages] == ["r0@example.test", "r1@example.test", "r2@example.test"]
    assert server.connections == 2


def test_a_421_makes_the_transport_reconnect_and_retry_once(pipelining: bool) -> None:
    replies = {
        "once@example.test": Scripted("421 4.7.0 Try again later, closing connection", times=1),
        "always@example.test": Scripted("421 4.7.0 Too busy, closing connection"),
    }
    with RecordingSmtpServer(replies=replies, pipelining=pipelining) as server, SmtpTransport(server.settings()) as transport:
        report = transport.send(messages("once@example.test", "always@example.test", "after@example.test"))
    once, always, after = report.results
    assert once.ok
    assert (always.ok, always.temporary) == (False, True) and "421" in (always.error or "")
    assert after.ok
    assert [m.rcpt_tos[0] for m in server.messages] == ["once@example.test", "after@example.test"]


def test_a_server_gone_mid_batch_leaves_the_rest_pending_without_raising(pipelining: bool) -> None:
    server = RecordingSmtpServer(disconnect_after=1, pipelining=pipelining)
    server.on_message = lambda _message: server.refuse_new_connections()
    with server, SmtpTransport(server.settings()) as transport:
        report = transport.send(messages("a@example.test", "b@example.test", "c@example.test"))
    first, *rest = report.results
    assert first.ok
    assert [(r.ok, r.temporary) for r in rest] == [(False, True), (False, True)]
    assert all("not attempted" in (r.error or "") for r in rest)
    assert len(server.messages) == 1


def test_a_server_gone_before_anything_was_accepted_raises_transport_unavailable(pipelining: bool) -> None:
    replies = {"gone@example.test": "550 5.1.1 No such user", "drop@example.test": DROP}
    with RecordingSmtpServer(replies=replies, pipelining=pipelining) as server, SmtpTransport(server.settings()) as transport:
        assert transport.send(messages("warm@example.test")).sent == 1  # the connection is open now
        server.refuse_new_connections()
        with pytest.raises(TransportUnavailable, match="mail.transport.host"):
            transport.send(messages("gone@example.test", "drop@example.test", "c@example.test", start=2))
    assert [m.rcpt_tos[0] for m in server.messages] == ["warm@example.test"]


def test_no_answer_within_the_timeout_is_temporary_and_not_retried_at_once() -> None:
    # the server holds its answer to DATA until released (after the send): only the timeout ends the wait
    with RecordingSmtpServer(hold_after=0) as server:
        transport = SmtpTransport(server.settings(timeout=1.5))
        report = transport.send(messages("slow@example.test"))
        transport.close()
        assert server.wait_holding(timeout=30), "the wait that timed out was the held DATA"
        assert server.received == 0, "the transport gave up before the server answered"
        assert server.connections == 1, "no immediate retry on a new connection"
    result = report.results[0]
    assert (result.ok, result.temporary) == (False, True)
    assert "1.5 s" in (result.error or "") and "mail.transport.timeout" in (result.error or "")
    assert not transport.connected


# --- cannot start at all -------------------------------------------------------------------------


def test_nothing_listening_raises_transport_unavailable_naming_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    settings = SmtpSettings(kind="smtp", host="127.0.0.1", port=port, security="none", timeout=2)
    attempts: list[object] = []
    connect = socket.socket.connect

    def counting_connect(self: socket.socket, address: object) -> None:
        if isinstance(address, tuple) and address[1] == port:
            attempts.append(address)
        connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    with pytest.raises(TransportUnavailable) as raised, SmtpTransport(settings) as transport:
        transport.send(messages("a@example.test"))
    assert len(attempts) == 1, "a refused connection is reported at once, not retried"
    text = str(raised.value)
    assert f"127.0.0.1:{port}" in text and "mail.transport.host" in text


def test_starttls_with_login(certificate: Certificate, tmp_path: Path) -> None:
    with RecordingSmtpServer(tls="starttls", certificate=certificate, auth=(USER, PASSWORD)) as server:
        with SmtpTransport(server.settings(), ssl_context=certificate.client_context()) as transport:
            report = transport.send(messages("a@example.test", "b@example.test"))
        assert report.sent == 2
        assert all(m.tls and m.authenticated_as == USER for m in server.messages)
        assert server.connections == 1


def test_implicit_tls_with_login(certificate: Certificate) -> None:
    with RecordingSmtpServer(tls="implicit", certificate=certificate, auth=(USER, PASSWORD)) as server:
        assert server.settings().security == "tls"
        with SmtpTransport(server.settings(), ssl_context=certificate.client_context()) as transport:
            report = transport.send(messages("a@example.test"))
        assert report.sent == 1
        assert server.messages[0].tls and server.messages[0].authenticated_as == USER


def test_an_untrusted_certificate_is_refused_with_a_remedy(certificate: Certificate) -> None:
    with RecordingSmtpServer(tls="starttls", certificate=certificate) as server:
        transport = SmtpTransport(server.settings(), ssl_context=ssl.create_default_context(cafile=None))
        with pytest.raises(TransportUnavailable, match="certificate"):
            transport.send(messages("a@example.test"))
        assert server.messages == []


def test_a_refused_login_names_the_settings_and_never_the_password(
    certificate: Certificate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with RecordingSmtpServer(tls="starttls", certificate=certificate, auth=(USER, "the-real-one")) as server:
        transport = SmtpTransport(server.settings(password=PASSWORD), ssl_context=certificate.client_context())
        with pytest.raises(TransportUnavailable) as raised:
            transport.send(messages("a@example.test"))
        assert server.logins_refused >= 1  # smtplib tries PLAIN, then LOGIN
        assert server.messages == []
    text = str(raised.value)
    assert "mail.transport.password" in text and repr(USER) in text
    assert PASSWORD not in text and PASSWORD not in caplog.text


def test_build_transport_gives_smtp_for_smtp_settings(server: RecordingSmtpServer, tmp_path: Path) -> None:
    with build_transport(server.settings(), base_dir=tmp_path) as transport:
        assert isinstance(transport, SmtpTransport)
        assert transport.send(messages("a@example.test")).sent == 1


# --- the sink as a separate process --------------------------------------------------------------


@pytest.mark.slow
def test_the_sink_process_records_each_recipient_and_message_id(tmp_path: Path) -> None:
    record = tmp_path / "received.txt"
    rejects = {"gone@example.test": "550 5.1.1 No such user"}
    with SmtpSinkProcess(record=record, rejects=rejects) as sink:
        settings = SmtpSettings(kind="smtp", host=sink.host, port=sink.port, security="none", timeout=5)
        with SmtpTransport(settings) as transport:
            report = transport.send(messages("a@example.test", "gone@example.test", "b@example.test"))
        assert read_record(record) == [
            ("a@example.test", "<1.digest@news.example.test>"),
            ("b@example.test", "<3.digest@news.example.test>"),
        ]
    assert [r.ok for r in report.results] == [True, False, True]
    assert sink.final_line == "STOPPED received=2 connections=1"


def test_a_private_ca_is_trusted_through_ca_file_in_config(certificate: Certificate, tmp_path: Path) -> None:
    with RecordingSmtpServer(tls="starttls", certificate=certificate, auth=(USER, PASSWORD)) as server:
        with SmtpTransport(server.settings(ca_file=str(certificate.cert_file))) as transport:
            report = transport.send(messages("reader@example.org"))
        assert [r.ok for r in report.results] == [True]
        with pytest.raises(TransportUnavailable, match="mail.transport.ca_file"):
            SmtpTransport(server.settings(ca_file=str(tmp_path / "missing.pem"))).send(messages("reader@example.org"))
