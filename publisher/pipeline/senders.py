"""N senders on one machine: one channel per thread, fed disjoint chunks by one claimer.

The send engine (publisher.pipeline.send) claims due ledger rows, composes them and hands each chunk
to `SenderPool.submit`; a sender thread with its own channel (its own SMTP connection, its own HTTP
client) sends it and puts the report on the results queue; the engine alone judges the results
(`verdict.decide`) and writes them. A chunk belongs to exactly one sender, and the engine goes on to
the next pass only when every chunk of this one came back, so no row is ever held by two senders.

`TokenBucket` keeps mail.rate_per_second one global cap across the senders.

What a crash can send twice: the chunks handed out and not yet committed, at most `in_flight_limit`
chunks of `chunk_size` messages (a chunk stays held until the commit carrying its results is done).
`duplicate_bound` is that number; README "Sending many messages" states it and tests check it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypedDict

from publisher.config import Config, OutboxSettings, SmtpSettings, TransportSettings
from publisher.models import OutgoingMessage, SendReport

__all__ = ["Done", "SenderPool", "TokenBucket", "chunk_size", "default_connections", "duplicate_bound", "senders_for"]

COMMIT_GROUP = 50  # acceptances per ledger commit, at most


class Channel(Protocol):
    max_batch: int

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport: ...


def default_connections(transport: TransportSettings) -> int:
    """mail.connections when unset: 1 for the outbox (a disk), 4 SMTP connections, 8 HTTP requests."""
    if isinstance(transport, OutboxSettings):
        return 1
    if isinstance(transport, SmtpSettings):
        return 4
    return 8


def chunk_size(channel: object, connections: int) -> int:
    """Messages per send() call: the channel's `batch_for(connections)` when it has one (SMTP batches
    only when there are several senders), else its `max_batch`."""
    batch_for = getattr(channel, "batch_for", None)
    size = batch_for(connections) if callable(batch_for) else getattr(channel, "max_batch", 1)
    return max(1, int(size))


def _per_sender(max_batch: int) -> int:
    # about 6 messages held per sender, and never fewer than 2 chunks: one being sent, one queued
    return max(2, -(-6 // max(1, max_batch)))


def in_flight_limit(connections: int, max_batch: int = 1) -> int:
    """Chunks held at once (handed out, or back and not yet committed): with chunks of one message, 6
    per sender; the engine refills when they are down to a third, so a commit carries several per
    sender while every sender still has work queued. Bigger chunks: fewer of them (2 per sender at
    SMTP's 4), so the messages held, and what a crash can repeat, stay about the same."""
    return 1 if connections <= 1 else _per_sender(max_batch) * connections


def low_water(connections: int, max_batch: int = 1) -> int:
    return 0 if connections <= 1 else max(1, _per_sender(max_batch) // 3) * connections


def duplicate_bound(connections: int, max_batch: int) -> int:
    """Messages a crash (SIGKILL, power loss, the store going away) can make a rerun send again.

    A chunk is held from being handed out until its results are committed, and the engine holds no
    more than in_flight_limit, so the accepted rows not yet committed are always among the chunks
    held: at most in_flight_limit × max_batch (max_batch: the chunk size, `chunk_size`).
    """
    return in_flight_limit(connections, max_batch) * max_batch


class TokenBucket:
    """A global messages-per-second cap shared by every sender: each send reserves its slots in turn."""

    def __init__(self, rate: float | None, *, burst: float = 1.0) -> None:
        self.rate = rate
        self.burst = burst
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def acquire(self, count: int, stop: threading.Event | None = None) -> float | None:
        """Wait for `count` slots; returns when (time.monotonic) the reserved slots began, None uncapped."""
        if not self.rate or count <= 0:
            return None
        with self._lock:
            now = time.monotonic()
            # unused time is not banked beyond one message: the cap holds over any window
            start = max(self._next, now - self.burst / self.rate)
            self._next = start + count / self.rate
            wait = start - now
        if wait > 0:
            if stop is None:
                time.sleep(wait)
            else:
                stop.wait(wait)
        return start


@dataclass
class Done:
    """One chunk back from a sender: its report, or what the channel raised."""

    token: object
    report: SendReport | None
    error: BaseException | None


class SenderPool:
    """`connections` sender threads, each with its own channel from `factory` (the first may be given)."""

    def __init__(
        self,
        first: Channel,
        factory: Callable[[], Channel] | None,
        connections: int,
        limiter: TokenBucket,
        stop: threading.Event,
    ) -> None:
        self.limiter = limiter
        self.stop = stop
        self.connections = connections if factory is not None else 1
        self.chunk = chunk_size(first, self.connections)
        self.limit = in_flight_limit(self.connections, self.chunk)
        self.low = low_water(self.connections, self.chunk)
        self._first = self._watching(first)
        self._factory = factory
        self._extra: list[Channel] = []
        self._work: queue.Queue[tuple[object, Sequence[OutgoingMessage]] | None] = queue.Queue()
        self.results: queue.Queue[Done | None] = queue.Queue()  # None: a wake-up (a commit is done)
        self.in_flight = 0
        self._threads: list[threading.Thread] = []
        if self.connections > 1:
            for number in range(self.connections):
                channel = self._first if number == 0 else self._watching(self._build())
                thread = threading.Thread(target=self._serve, args=(channel,), name=f"sender-{number}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _build(self) -> Channel:
        assert self._factory is not None
        channel = self._factory()
        self._extra.append(channel)
        return channel

    def _watching(self, channel: Channel) -> Channel:
        """A channel that can stop mid-batch (SMTP) is told about the stop event: the rest of its
        batch is then left out of the report, pending and untouched (SIGTERM repeats nothing)."""
        interrupt_on = getattr(channel, "interrupt_on", None)
        if callable(interrupt_on):
            interrupt_on(self.stop)
        return channel

    @property
    def full(self) -> bool:
        return self.in_flight >= self.limit

    def submit(self, token: object, messages: Sequence[OutgoingMessage]) -> None:
        """Hand one chunk to a sender (inline when there is one connection: no thread at all)."""
        self.in_flight += 1
        if not self._threads:
            self.results.put(self._send(self._first, messages, token))
            return
        self._work.put((token, messages))

    def next_done(self, timeout: float | None) -> Done | None:
        """The next chunk back, or None when none came within `timeout` seconds or `wake` was called."""
        try:
            done = self.results.get(timeout=timeout) if timeout is None or timeout > 0 else self.results.get_nowait()
        except queue.Empty:
            return None
        if done is not None:
            self.in_flight -= 1
        return done

    def wake(self) -> None:
        """Make a waiting `next_done` return None (the ledger committer calls it after each commit)."""
        self.results.put(None)

    def _serve(self, channel: Channel) -> None:
        while (item := self._work.get()) is not None:
            token, messages = item
            self.results.put(self._send(channel, messages, token))

    def _send(self, channel: Channel, messages: Sequence[OutgoingMessage], token: object) -> Done:
        try:
            self.limiter.acquire(len(messages), self.stop)  # returns early once stop is set
            if self.stop.is_set():  # stopping: a chunk not begun is not begun; its rows stay pending
                return Done(token, SendReport([]), None)
            return Done(token, channel.send(messages), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the engine, which decides
            return Done(token, None, exc)

    def close(self) -> None:
        """Stop the threads (after the chunks in hand) and close the channels this pool built."""
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join()
        for channel in self._extra:
            close = getattr(channel, "close", None)
            if close is not None:
                close()


class _Senders(TypedDict):
    channel_factory: Callable[[], Channel] | None
    connections: int


def senders_for(config: Config, transport: object) -> _Senders:
    """How many senders a run uses and how it builds their channels: mail.connections (or the
    transport's default), each one more transport of the kind config.yaml names. A transport the
    caller built from other settings (a test's, a benchmark's) is used alone."""
    from publisher.delivery.mail import build_transport

    settings = config.mail.transport
    connections = config.mail.connections or default_connections(settings)
    # only a transport built from these very settings can be cloned faithfully
    if connections <= 1 or getattr(transport, "settings", None) is not settings:
        return {"channel_factory": None, "connections": 1}

    def factory() -> Channel:
        channel: Channel = build_transport(settings, base_dir=config.base_dir)
        return channel

    return {"channel_factory": factory, "connections": connections}
