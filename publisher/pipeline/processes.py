"""mail.processes: one digest sent by several processes of this machine, each over its part of the ledger.

    claim the digest's lease -> fill the ledger -> start N sender processes (spawned: a fresh
    interpreter each) -> process k runs the send engine over the rows whose id % N == k, with
    mail.connections / N connections of its own, every pass and retry of its part -> wait, renewing
    the lease, counting progress from the ledger -> finish the digest.

Why processes: one Python process sending over 4 connections spends much of the time with its sender
threads waiting for the interpreter lock while the claimer composes (README "Sending many messages");
two processes each hold their own. No broker, the same store (SQLite in WAL mode takes the writers in
turn; PostgreSQL as it does), the same engine, no row in two parts, so no row held by two senders.

The ledger is the truth: the summary counts what the ledger says (a process killed before it reported
counts too). A stop (SIGTERM, Ctrl-C) is passed to every process, which ends after the messages in
flight; a process that stops the send (a refusal about us) stops the others the same way; a process
that dies is named with its exit code, its rows stay pending and the run exits non-zero, so the next
run sends them. If this process dies, each sender process gets SIGTERM from the kernel (PDEATHSIG)
and stops after the messages in flight; what a crash can repeat is what the processes had in flight,
the sum of their bounds: about the same as one process with all the connections.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from typing import Any

from publisher.broker import BatchResult
from publisher.config import Config
from publisher.errors import StoreError
from publisher.pipeline.dispatch import NoChannel
from publisher.pipeline.outcome import SHOWN_FAILURES, SendOutcome
from publisher.pipeline.send import LEASE, SendEngine
from publisher.pipeline.senders import default_connections, duplicate_bound
from publisher.store import DigestRecord, Store
from publisher.store.deliveries import Part

log = logging.getLogger("publisher.processes")

POLL = 0.25  # seconds between looks at the processes (woken early when one ends)
COUNT_EVERY = 1.0  # seconds between progress counts of the ledger

__all__ = ["SenderProcesses", "connections_each", "processes_bound", "send_part"]


def connections_each(config: Config, processes: int) -> int:
    """The connections of each sender process: mail.connections shared out, at least one each."""
    total = config.mail.connections or default_connections(config.mail.transport)
    return max(1, total // max(1, processes))


def processes_bound(processes: int, connections: int, chunk: int) -> int:
    """Messages a crash can make the next run send again: what each process holds (`connections` each,
    chunks of `chunk`: senders.chunk_size), summed."""
    return processes * duplicate_bound(connections, chunk)


class SenderProcesses:
    """The coordinator: this process leases, fills, starts the parts, waits and finishes; it sends nothing."""

    def __init__(self, config: Config, store: Store, *, processes: int, owner: str,
                 stop: threading.Event | None = None, on_progress: Callable[[int, int], None] | None = None) -> None:
        self.config, self.store, self.processes = config, store, processes
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.engine = SendEngine(store, NoChannel(), mail=config.mail, owner=owner, stop=self.stop)

    def send(self, digest: DigestRecord) -> SendOutcome:
        outcome = SendOutcome(digest.edition)
        if not self.engine.claim(digest.id):
            outcome.held_by = self.store.digests.lease_holder(digest.id)[0]
            log.info("digest %s %s is being sent by %s; not sending it here", digest.edition, digest.day,
                     outcome.held_by)
            return outcome
        try:
            try:
                self.engine.fill_ledger(digest)
                ledger = self.store.deliveries
                start, bounced_before = ledger.counts(digest.id), ledger.bounced(digest.id)
                outcome.already_sent = start["sent"]
                try:
                    self._run_parts(digest, outcome)
                finally:
                    end = ledger.counts(digest.id)
                    outcome.sent = end["sent"] - start["sent"]
                    outcome.failed = end["failed"] - start["failed"]
                    outcome.skipped = end["skipped"] - start["skipped"]
                    outcome.bounced = ledger.bounced(digest.id) - bounced_before
                self.engine.finish(digest, outcome)
            except StoreError as exc:
                outcome.error = (f"{exc}; the send stopped. Run again once the store is back: the rest is sent, "
                                 "and only the messages in flight at the failure can go out twice")
                log.error("digest %s %s: %s", digest.edition, digest.day, outcome.error)
        finally:
            try:
                self.store.digests.release(digest.id, self.engine.owner)
            except StoreError as exc:
                log.warning("digest %s: the lease could not be released: %s", digest.id, exc)
        return outcome

    def _run_parts(self, digest: DigestRecord, outcome: SendOutcome) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process with threads
        connections = connections_each(self.config, self.processes)
        logging_setup = _logging_setup()
        parts: dict[int, tuple[Any, Connection]] = {}
        for index in range(self.processes):
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(
                target=send_part, name=f"publisher-sender-{index}", daemon=True,
                args=(self.config, digest.id, Part(index, self.processes), connections, writer, os.getpid(),
                      logging_setup),
            )
            process.start()
            writer.close()
            parts[index] = (process, reader)
        log.info("digest %s %s: %d sender processes, %d connections each", digest.edition, digest.day,
                 self.processes, connections)
        try:
            self._wait(digest, outcome, parts)
        finally:
            _signal_all(parts)
            for process, reader in parts.values():
                process.join()
                reader.close()

    def _wait(self, digest: DigestRecord, outcome: SendOutcome, parts: dict[int, tuple[Any, Connection]]) -> None:
        running = dict(parts)
        renewed = counted = time.monotonic()
        stopping = False
        while running:
            wait([process.sentinel for process, _ in running.values()], timeout=POLL)
            for index, (process, reader) in list(running.items()):
                if process.is_alive():
                    continue
                process.join()
                del running[index]
                self._ended(index, process.exitcode, _result(reader), outcome)
            if not stopping and (self.stop.is_set() or outcome.error):
                stopping = True
                outcome.interrupted = outcome.interrupted or self.stop.is_set()
                _signal_all(running)  # each ends after the messages in flight; its rows stay pending
            now = time.monotonic()
            if not stopping and now - renewed > LEASE.total_seconds() / 3:
                if not self.engine.claim(digest.id):
                    outcome.error = "lost the sending lease to another process; stopping"
                renewed = now
            if self.on_progress and now - counted >= COUNT_EVERY:
                counts, counted = self.store.deliveries.counts(digest.id), now
                self.on_progress(counts["sent"] + counts["failed"] + counts["skipped"], sum(counts.values()))

    def _ended(self, index: int, code: int | None, result: dict[str, Any] | None, outcome: SendOutcome) -> None:
        if result is None:
            reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            error = (f"sender process {index} of {self.processes} ended ({reason}) before it reported; its "
                     "remaining rows stay pending: run again to send them")
            log.error("%s", error)
            outcome.error = outcome.error or error
            return
        part = BatchResult.from_json(result)
        outcome.retried += part.retried
        room = SHOWN_FAILURES - len(outcome.failures)
        outcome.failures.extend(part.failures[: max(0, room)])
        if part.error and not outcome.error:
            outcome.error = part.error  # the first reason a part stopped (a refusal about us, with its hint)


def _signal_all(parts: dict[int, tuple[Any, Connection]]) -> None:
    for process, _ in parts.values():
        if process.is_alive() and process.pid is not None:
            with suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)


def _result(reader: Connection) -> dict[str, Any] | None:
    try:
        if reader.poll():
            found = reader.recv()
            return found if isinstance(found, dict) else None
    except (EOFError, OSError):
        pass
    return None


def _logging_setup() -> tuple[int, list[logging.Formatter | None]]:
    """The root logger's level and its console handlers' formats, for the sender processes to log alike."""
    root = logging.getLogger()
    formatters: list[logging.Formatter | None] = []
    for handler in root.handlers:
        if type(handler) is not logging.StreamHandler:  # the console's own; not a test's capture, not a file
            continue
        try:
            pickle.dumps(handler.formatter)
            formatters.append(handler.formatter)
        except (pickle.PicklingError, TypeError, AttributeError):
            formatters.append(logging.Formatter(getattr(handler.formatter, "_fmt", None)))
    return root.level, formatters


# --- in each sender process ---------------------------------------------------------------------


def send_part(config: Config, digest_id: int, part: Part, connections: int, report: Connection, parent: int,
              logging_setup: tuple[int, list[logging.Formatter | None]]) -> None:
    """One sender process: the engine over its part of the ledger, its outcome sent back on `report`."""
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C reaches the whole process group: stop, no traceback
        signal.signal(number, lambda *_: stop.set())
    _die_with(parent, stop)
    level, formatters = logging_setup
    root = logging.getLogger()
    root.setLevel(level)
    for formatter in formatters:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        root.addHandler(handler)
    try:
        result = _send_part(config, digest_id, part, connections, stop)
    except Exception as exc:  # noqa: BLE001 - reported by name to the coordinator, which exits non-zero
        log.exception("digest %s part %d of %d failed", digest_id, part.index, part.count)
        result = BatchResult(error=f"sender process {part.index}: {type(exc).__name__}: {exc}").to_json()
    report.send(result)
    report.close()


def _send_part(config: Config, digest_id: int, part: Part, connections: int, stop: threading.Event) -> dict[str, Any]:
    from publisher.delivery.mail import build_transport
    from publisher.pipeline import owner_name
    from publisher.pipeline.batch import BatchLedger, frozen_composer
    from publisher.pipeline.senders import senders_for

    mail = config.mail.model_copy(update={"connections": connections})
    config = config.model_copy(update={"mail": mail})
    store = Store.open(config.store_url)
    try:
        record = store.digests.get(digest_id)
        assert record is not None, "the coordinator rendered and stored the digest"
        transport = build_transport(mail.transport, base_dir=config.base_dir)
        try:
            composer = frozen_composer(config, store, digest_id, record.edition, transport)
            engine = SendEngine(store, transport, mail=mail, owner=owner_name(), stop=stop, lease=False,
                                ledger=BatchLedger(store.deliveries, part), **senders_for(config, transport))
            outcome = engine.send(record, composer)
        finally:
            transport.close()
    finally:
        store.close()
    log.info("digest %s part %d of %d: %d sent, %d failed, %d skipped, %d still pending", digest_id, part.index,
             part.count, outcome.sent, outcome.failed, outcome.skipped, outcome.deferred)
    result = BatchResult(sent=outcome.sent, failed=outcome.failed, skipped=outcome.skipped, bounced=outcome.bounced,
                         retried=outcome.retried, failures=tuple(outcome.failures), error=outcome.error)
    return result.to_json()


def _die_with(parent: int, stop: threading.Event) -> None:
    """Stop (after the messages in flight) when the coordinator is gone: the kernel's PDEATHSIG where
    there is one (Linux), and a look at the parent's pid in any case."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent:
                log.error("the coordinating process %d is gone: stopping after the messages in flight", parent)
                stop.set()

    if os.getppid() != parent:
        stop.set()
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()

