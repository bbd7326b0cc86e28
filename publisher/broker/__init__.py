"""The broker behind `publisher worker`: Celery 5 on RabbitMQ, imported only in broker mode.

Why Celery and not Dramatiq: Celery is already installed with the test extras (flask-websub[celery]),
it acknowledges a task after it ran (task_acks_late), gives a task back when its worker dies
(task_reject_on_worker_lost) and takes one task at a time per thread (worker_prefetch_multiplier 1),
and its rpc:// result backend sends each task's outcome back over RabbitMQ itself, so the coordinator
learns which rows a task held and how it ended (counts, failures, a refusal that stops the send)
without a second server. Dramatiq acks late by default too, but its results need Redis or Memcached.

The ledger stays the truth: a task names (digest id, delivery ids); a worker re-reads those rows and
sends only what is still pending and due, so a redelivered task repeats nothing committed.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from publisher.config import BrokerSettings
from publisher.errors import BrokerUnavailable

TASK = "publisher.send_batch"

__all__ = ["TASK", "BatchResult", "CeleryQueue", "celery_app", "probe_broker"]


def celery_app(settings: BrokerSettings) -> Any:
    """A Celery app for the broker: late acks, rows given back when a worker is lost, prefetch 1."""
    from celery import Celery  # lazy: the broker-free default never imports Celery

    app = Celery("publisher", broker=settings.url, backend="rpc://", set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_create_missing_queues=True,  # durable, on a direct exchange of the same name
        task_default_queue=settings.queue,
        task_routes={TASK: {"queue": settings.queue, "routing_key": settings.queue}},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=10,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        result_persistent=False,
        result_expires=600,  # a coordinator's reply queue goes 10 minutes after it stops polling it
    )
    return app


@dataclass(frozen=True)
class BatchResult:
    """What a task reported back (the ledger has the exact counts; these name reasons)."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    bounced: int = 0
    retried: int = 0
    held_elsewhere: int = 0  # rows another task held (locked) at the time: left to it
    failures: tuple[tuple[str, str], ...] = ()
    error: str | None = None  # the send stopped: a refusal about us, the store, a task that raised

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "failures": [list(f) for f in self.failures]}

    @classmethod
    def from_json(cls, value: object) -> BatchResult:
        if not isinstance(value, dict):
            return cls(error=f"the worker answered {value!r}, not a batch result")
        failures = tuple((str(a), str(b)) for a, b in value.get("failures", ()))
        counts = {k: int(value.get(k, 0)) for k in ("sent", "failed", "skipped", "bounced", "retried", "held_elsewhere")}
        error = value.get("error")
        return cls(**counts, failures=failures, error=None if error is None else str(error))


class CeleryQueue:
    """The coordinator's side: enqueue a batch, learn when it ended and how."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.app = celery_app(settings)

    def submit(self, digest_id: int, ids: list[int]) -> _Handle:
        try:
            return _Handle(self.app.send_task(TASK, args=[digest_id, ids], queue=self.settings.queue,
                                              retry_policy={"max_retries": 3, "interval_start": 0.5,
                                                            "interval_step": 1, "interval_max": 2}))
        except Exception as exc:  # kombu's OperationalError, a socket error, a refused login
            raise BrokerUnavailable(f"cannot enqueue on mail.broker ({_where(self.settings.url)}): {exc} "
                                    "(hint: is RabbitMQ running there, and are the user and password right?)") from exc

    def close(self) -> None:
        self.app.close()


class _Handle:
    def __init__(self, result: Any) -> None:
        self._result = result

    def poll(self) -> BatchResult | None:
        """None while the task is queued or running; its result once it ended."""
        try:
            if not self._result.ready():
                return None
            value = self._result.get(propagate=False, disable_sync_subtasks=False)
        except Exception as exc:  # the broker went away while the coordinator waited
            raise BrokerUnavailable(f"lost the broker while waiting for a task's result: {exc}") from exc
        if self._result.failed():
            return BatchResult(error=f"a worker's task raised {type(value).__name__}: {value}")
        return BatchResult.from_json(value)


def _where(url: str) -> str:
    """The broker's address without its password."""
    return url.rsplit("@", 1)[-1]


def probe_broker(settings: BrokerSettings) -> tuple[bool, list[str]]:
    """For `publisher check --transport`: can we log in, and who consumes the queue (sends nothing)."""
    import kombu.connection

    where = _where(settings.url)
    factory: Any = kombu.connection.Connection
    connection: Any = factory(settings.url, connect_timeout=5)
    try:
        connection.ensure_connection(max_retries=1)
        channel: Any = connection.channel()
        try:
            _name, waiting, consumers = channel.queue_declare(settings.queue, passive=True)
        except Exception:  # amqp's NotFound: the queue was never declared
            return True, [f"broker {where}: logged in; queue {settings.queue} does not exist yet (no worker has "
                          "started, nothing was enqueued): start `publisher worker`"]
        finally:
            with suppress(Exception):  # a channel the server closed (NotFound) is closed already
                channel.close()
        line = f"broker {where}: logged in; queue {settings.queue}: {waiting} task(s) waiting, {consumers} worker(s) consuming"
        return True, [line + ("" if consumers else "; start `publisher worker`")]
    except Exception as exc:
        return False, [f"broker {where}: cannot connect: {exc} (hint: check mail.broker.url, its user and password, "
                       "and that RabbitMQ is running there)"]
    finally:
        connection.release()
