"""An in-memory transport for tests of the pipeline: records what it accepts, fails on request.

It keeps the same contract as the real transports (see base.MailTransport), so a pipeline test can
script refusals per recipient, a whole transport outage, or a crash in the middle of a batch (the
accepted messages stay recorded, but no report comes back: what a kill -9 looks like from inside).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from publisher.delivery.mail.base import MailTransport, accepted, envelope_problem, refused
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SendReport, SendResult


class SimulatedCrash(RuntimeError):
    """Raised by InMemoryTransport.crash_after: the process 'died' mid-batch, no report returned."""


@dataclass
class _ScriptedFailure:
    temporary: bool
    error: str
    remaining: int | None  # None: every time


class InMemoryTransport(MailTransport):
    """Accepts every message unless told otherwise. Not thread-safe (neither are the real ones)."""

    name = "memory"

    def __init__(self, *, max_batch: int = 1) -> None:
        self.max_batch = max_batch
        self.accepted: list[OutgoingMessage] = []  # in the order accepted
        self.batches: list[list[OutgoingMessage]] = []  # every batch handed to send(), as given
        self.unavailable: str | None = None  # when set, send() raises TransportUnavailable(this)
        self.close_count = 0
        self._failures: dict[str, _ScriptedFailure] = {}
        self._crash_after: int | None = None
        self._ids = itertools.count(1)

    @property
    def recipients(self) -> list[str]:
        return [message.recipient for message in self.accepted]

    @property
    def closed(self) -> bool:
        return self.close_count > 0

    def fail(self, recipient: str, *, temporary: bool = True, error: str | None = None,
             times: int | None = None) -> None:
        """Refuse messages to recipient (case-insensitive): `times` times, or always when None."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for always")
        code = "450 4.2.1 mailbox busy, try later" if temporary else "550 5.1.1 no such user"
        self._failures[recipient.lower()] = _ScriptedFailure(temporary, error or code, times)

    def crash_after(self, accepted_messages: int) -> None:
        """Accept this many more messages, then raise SimulatedCrash instead of handling the next one."""
        if accepted_messages < 0:
            raise ValueError("accepted_messages must be >= 0")
        self._crash_after = accepted_messages

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport:
        self.batches.append(list(batch))
        if batch and self.unavailable is not None:
            raise TransportUnavailable(self.unavailable)
        results: list[SendResult] = []
        for message in batch:
            if self._crash_after == 0:
                self._crash_after = None
                raise SimulatedCrash(f"simulated crash before {message.recipient} (delivery {message.delivery_id})")
            results.append(self._deliver(message))
        return SendReport(results)

    def close(self) -> None:
        self.close_count += 1

    def _deliver(self, message: OutgoingMessage) -> SendResult:
        problem = envelope_problem(message)
        if problem:
            return refused(message, problem, temporary=False)
        failure = self._failures.get(message.recipient.lower())
        if failure is not None:
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining == 0:
                    del self._failures[message.recipient.lower()]
            return refused(message, failure.error, temporary=failure.temporary)
        self.accepted.append(message)
        if self._crash_after is not None:
            self._crash_after -= 1
        return accepted(message, f"memory-{next(self._ids)}")
