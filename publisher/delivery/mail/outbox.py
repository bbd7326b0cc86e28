"""A Maildir outbox: every message becomes one file an operator (or a mail client) can open.

Layout follows the Maildir convention: tmp/, new/, cur/. Each message is written into tmp/, fsynced,
then renamed into new/, so new/ never holds a half-written file, even after a crash; a crash can only
leave a stray file in tmp/, which readers ignore. The directory new/ is fsynced once per batch, before
the report is returned, so a message reported accepted survives a power cut.

Each file holds the message bytes exactly as given, preceded by the two envelope lines a local
delivery agent writes (Return-Path, Delivered-To), because the envelope is otherwise lost.
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from publisher.delivery.mail.base import MailTransport, accepted, envelope_problem, refused
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SendReport, SendResult

_FILE_MODE = 0o640  # messages carry subscriber addresses: not world-readable


class OutboxTransport(MailTransport):
    """Writes messages into a Maildir. provider_message_id is the file name inside new/."""

    name = "outbox"
    max_batch = 1  # one message per call keeps the ledger exact (costs a directory fsync each)

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sequence = itertools.count(1)
        # Maildir names must not contain "/" or ":"; the convention escapes them as octal.
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"
        self._prepared = False

    @property
    def new_directory(self) -> Path:
        return self.directory / "new"

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport:
        if not batch:
            return SendReport()
        self._prepare()
        results: list[SendResult] = []
        wrote_any = False
        for message in batch:
            problem = envelope_problem(message)
            if problem:
                results.append(refused(message, problem, temporary=False))
                continue
            try:
                file_name = self._write(message)
            except OSError as exc:
                # disk full, quota, permissions changed under us: may pass later
                results.append(refused(message, f"cannot write to outbox {self.directory}: {exc}", temporary=True))
                continue
            wrote_any = True
            results.append(accepted(message, file_name))
        if wrote_any:
            try:
                _fsync_directory(self.new_directory)
            except OSError as exc:
                # without a durable directory entry the files may vanish: do not claim them
                reason = f"cannot make outbox {self.new_directory} durable (fsync): {exc}"
                results = [refused(m, reason, temporary=True) if r.ok else r for m, r in zip(batch, results, strict=True)]
        return SendReport(results)

    def close(self) -> None:
        """Nothing stays open between batches."""

    def _prepare(self) -> None:
        if self._prepared:
            return
        try:
            for sub in ("tmp", "new", "cur"):
                (self.directory / sub).mkdir(parents=True, exist_ok=True)
            if not os.access(self.directory / "tmp", os.W_OK) or not os.access(self.new_directory, os.W_OK):
                raise PermissionError(f"{self.directory}/tmp or /new is not writable")
        except OSError as exc:
            raise TransportUnavailable(
                f"cannot use the outbox at {self.directory}: {exc}; "
                "check mail.transport.path in config.yaml (relative paths start at the config file's folder)"
            ) from exc
        self._prepared = True

    def _unique_name(self) -> str:
        """time.MusecPpidQseqRrandom.host.eml: unique across processes and hosts sharing the folder."""
        now = time.time()
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        return f"{seconds}.M{micros}P{os.getpid()}Q{next(self._sequence)}R{secrets.token_hex(4)}.{self._host}.eml"

    def _write(self, message: OutgoingMessage) -> str:
        name = self._unique_name()
        temporary_path = self.directory / "tmp" / name
        envelope = f"Return-Path: <{message.sender}>\r\nDelivered-To: {message.recipient}\r\n".encode()
        descriptor = os.open(temporary_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(envelope)
                handle.write(message.data)
                handle.flush()
                os.fsync(handle.fileno())
            # rename is atomic within one file system: new/ sees the whole file or nothing
            os.rename(temporary_path, self.new_directory / name)
        except BaseException:
            temporary_path.unlink(missing_ok=True)
            raise
        return name


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
