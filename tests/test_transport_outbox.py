"""OutboxTransport: a Maildir an operator can read, written so a crash never leaves half a file in new/."""

from __future__ import annotations

import mailbox
import os
import stat
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from publisher.config import OutboxSettings
from publisher.delivery.mail import OutboxTransport, build_transport
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage
from tests.support.messages import sample_message


def test_each_message_becomes_one_file_in_new_that_parses_back(tmp_path: Path) -> None:
    batch = [sample_message(1, "ali@example.test"), sample_message(2, "سارة@example.test")]
    with OutboxTransport(tmp_path / "outbox") as transport:
        report = transport.send(batch)

    assert [(r.delivery_id, r.ok) for r in report.results] == [(1, True), (2, True)]
    new = tmp_path / "outbox" / "new"
    assert sorted(p.name for p in new.iterdir()) == sorted(r.provider_message_id or "" for r in report.results)
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []
    for message, result in zip(batch, report.results, strict=True):
        raw = (new / (result.provider_message_id or "")).read_bytes()
        envelope = f"Return-Path: <{message.sender}>\r\nDelivered-To: {message.recipient}\r\n".encode()
        assert raw == envelope + message.data  # the bytes as given, after the envelope lines
        parsed = message_from_bytes(raw, policy=policy.default)
        assert parsed["Message-ID"] == message.message_id
        assert parsed["Delivered-To"] == message.recipient
        assert parsed.get_content_type() == "multipart/alternative"
        assert "Tuesday" in parsed.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


def test_a_mail_reader_sees_the_outbox_as_a_maildir(tmp_path: Path) -> None:
    with OutboxTransport(tmp_path) as transport:
        transport.send([sample_message(n, f"r{n}@example.test", size=1_000) for n in range(1, 4)])
    box = mailbox.Maildir(tmp_path, factory=None, create=False)
    assert sorted(message["To"] for message in box) == ["r1@example.test", "r2@example.test", "r3@example.test"]


def test_file_names_are_unique_across_many_messages_and_two_transports(tmp_path: Path) -> None:
    first, second = OutboxTransport(tmp_path), OutboxTransport(tmp_path)
    names = []
    for number in range(150):
        transport = first if number % 2 else second
        names += [r.provider_message_id for r in transport.send([sample_message(number, "a@example.test", size=500)]).results]
    assert len(set(names)) == 150
    assert len(list((tmp_path / "new").iterdir())) == 150


def test_files_are_not_world_readable(tmp_path: Path) -> None:
    report = OutboxTransport(tmp_path).send([sample_message(1, "a@example.test", size=500)])
    mode = (tmp_path / "new" / (report.results[0].provider_message_id or "")).stat().st_mode
    assert not mode & stat.S_IROTH


def test_a_failed_write_leaves_nothing_in_new_or_tmp_and_is_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = OutboxTransport(tmp_path)
    transport.send([sample_message(1, "first@example.test", size=500)])
    real_fsync = os.fsync

    def fsync_fails_for_files(descriptor: int) -> None:
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(28, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync_fails_for_files)
    report = transport.send([sample_message(2, "second@example.test", size=500)])

    result = report.results[0]
    assert (result.ok, result.temporary) == (False, True)
    assert result.error is not None and "No space left" in result.error
    assert len(list((tmp_path / "new").iterdir())) == 1  # only the first message
    assert list((tmp_path / "tmp").iterdir()) == []


def test_an_unsafe_envelope_is_refused_permanently_and_written_nowhere(tmp_path: Path) -> None:
    injected = OutgoingMessage(7, "digest@news.example.test", "a@example.test\r\nBcc: b@example.test", "<7@x>", b"x\r\n")
    good = sample_message(8, "ok@example.test", size=500)
    report = OutboxTransport(tmp_path).send([injected, good])
    assert [(r.delivery_id, r.ok, r.temporary) for r in report.results] == [(7, False, False), (8, True, False)]
    assert len(list((tmp_path / "new").iterdir())) == 1


def test_an_unusable_directory_raises_transport_unavailable_naming_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(TransportUnavailable, match="mail.transport.path"):
        OutboxTransport(blocker / "outbox").send([sample_message(1, "a@example.test", size=500)])


def test_an_empty_batch_touches_nothing(tmp_path: Path) -> None:
    assert OutboxTransport(tmp_path / "outbox").send([]).results == []
    assert not (tmp_path / "outbox").exists()


def test_build_transport_resolves_a_relative_path_from_base_dir(tmp_path: Path) -> None:
    transport = build_transport(OutboxSettings(kind="outbox", path="var/outbox"), base_dir=tmp_path)
    assert isinstance(transport, OutboxTransport)
    transport.send([sample_message(1, "a@example.test", size=500)])
    assert len(list((tmp_path / "var" / "outbox" / "new").iterdir())) == 1


def test_build_transport_keeps_an_absolute_path(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere"
    transport = build_transport(OutboxSettings(kind="outbox", path=str(absolute)), base_dir=tmp_path / "config")
    assert isinstance(transport, OutboxTransport) and transport.directory == absolute
