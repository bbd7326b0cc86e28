"""A store with many subscribers and a real SMTP server that answers per recipient, for send tests."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path

from publisher.config import Config, load_config
from publisher.pipeline import collect
from publisher.store import Store
from publisher.store.schema import subscribers
from tests.conftest import write_config
from tests.support.smtp import ReceivedMessage

DAY = date(2024, 12, 2)
DEAD = "550 5.1.1 The email account that you tried to reach does not exist"


def smtp_transport(port: int) -> str:
    return f"kind: smtp\n    host: 127.0.0.1\n    port: {port}\n    security: none\n    timeout: 10"


def make_config(directory: Path, store_url: str, port: int, *, retry: str = "first_delay: 0") -> Config:
    path = write_config(directory, store_url=store_url, transport=smtp_transport(port))
    text = path.read_text(encoding="utf-8").replace("  retry:\n    first_delay: 0\n", f"  retry:\n    {retry}\n")
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def add_subscribers(store: Store, emails: Iterable[str], language: str = "en") -> None:
    """Insert in the order given, so subscriber ids (and the ledger's order) follow the list."""
    now = datetime.now(UTC)
    rows = [
        {"email": email, "name": f"Reader {i}", "language": language, "status": "active", "sections": "",
         "paused": False, "created_at": now, "updated_at": now}
        for i, email in enumerate(emails)
    ]
    with store.engine.begin() as connection:
        for start in range(0, len(rows), 500):
            connection.execute(subscribers.insert(), rows[start : start + 500])


def collected(config: Config) -> Store:
    store = Store.open(config.store_url)
    report = collect(config, store)
    assert not report.errors, report.errors
    return store


class Recipients:
    """Who the server accepted mail for (thread-safe: the server calls from its own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()

    def __call__(self, message: ReceivedMessage) -> None:
        with self._lock:
            self._seen.update(message.rcpt_tos)

    @property
    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._seen)
