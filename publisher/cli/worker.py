"""`publisher worker`: take batches of deliveries from the broker (mail.broker) and send them."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import click

from publisher.cli.common import (
    EXIT_CONFIG,
    config_option,
    err_console,
    handles_errors,
    load,
    main_group,
    open_store,
)

log = logging.getLogger(__name__)


@main_group.command()
@config_option
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Tasks sent at once by this worker (threads; each uses mail.connections connections).")
@handles_errors
def worker(config_path: Path, concurrency: int) -> None:
    """Send the deliveries `publisher run` / `serve` enqueue on mail.broker, until SIGTERM.

    SIGTERM (or one Ctrl-C) finishes the task in hand, commits it, and exits 0. Run as many as you
    like, on as many machines as share the config's PostgreSQL store and broker.
    """
    config = load(config_path)
    if config.mail.broker is None:
        err_console.print(f"{config_path}: mail.broker is not set: there is no queue to work from (hint: add "
                          "mail.broker.url, or send with `publisher run` alone)", highlight=False, markup=False)
        raise SystemExit(EXIT_CONFIG)
    from publisher.broker import TASK, celery_app  # the broker library only in broker mode
    from publisher.pipeline.batch import BatchSender

    store = open_store(config)
    try:
        app = celery_app(config.mail.broker)
        sender = BatchSender(config, store)

        def send_batch(digest_id: int, ids: list[int]) -> dict[str, object]:
            return sender(digest_id, ids)

        app.task(name=TASK, acks_late=True, reject_on_worker_lost=True)(send_batch)
        node = f"publisher-{os.getpid()}@{socket.gethostname()}"
        log.info("worker %s: %d task(s) at a time from queue %s", node, concurrency, config.mail.broker.queue)
        instance = app.Worker(hostname=node, pool="threads", concurrency=concurrency, quiet=True,
                              queues=[config.mail.broker.queue], without_gossip=True, without_mingle=True,
                              without_heartbeat=True, loglevel=logging.getLevelName(logging.getLogger().level))
        instance.start()
        code = int(instance.exitcode or 0)
    finally:
        store.close()
    raise SystemExit(code)
