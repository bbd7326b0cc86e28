"""Database errors reach the rest of the program as StoreError with a remedy, never as raw SQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError

from publisher.errors import StoreError
from publisher.models import SubscriberStatus
from publisher.store import Store
from publisher.store.failures import describe
from publisher.store.schema import subscribers


def test_a_read_only_database_is_a_store_error_that_says_what_to_fix(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.engine.dispose()

        def read_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA query_only=1")

        event.listen(store.engine, "connect", read_only)
        with pytest.raises(StoreError) as caught:
            store.subscribers.upsert("reader@example.org", name="Secret Name", language="en")
        message = str(caught.value)
        assert "read-only" in message and "hint:" in message
        # neither the SQL nor the values it carried leak into the message
        assert "INSERT" not in message.upper().split("HINT")[0] and "Secret Name" not in message
        assert "reader@example.org" not in message
    finally:
        store.close()


def test_integrity_errors_stay_for_the_repositories_that_expect_them(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        store.subscribers.upsert("reader@example.org", language="en", status=SubscriberStatus.ACTIVE)
        row = {"email": "reader@example.org", "name": "", "language": "en", "status": "active", "sections": "",
               "paused": False}
        with pytest.raises(IntegrityError), store.engine.begin() as connection:
            connection.execute(subscribers.insert().values(**row, created_at=None, updated_at=None))
    finally:
        store.close()


@pytest.mark.postgres
def test_a_server_that_goes_away_mid_connection_is_a_store_error(postgres_url: str) -> None:
    store = Store.open(postgres_url)
    try:
        with store.engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with store.engine.connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                admin.commit()
            with pytest.raises(StoreError) as caught:
                connection.execute(text("SELECT 1"))
        assert "hint:" in str(caught.value)
        # the pool recovers: the next checkout gets a fresh connection
        assert store.ping()
    finally:
        store.close()


@pytest.mark.parametrize(
    ("driver_text", "remedy"),
    [
        ("attempt to write a readonly database", "read-only"),
        ("database or disk is full", "full"),
        ("database is locked", "another process"),
        ("connection refused\n  Is the server running?", "unreachable"),
        ("something nobody anticipated", "store.url"),
    ],
)
def test_each_driver_message_gets_one_line_and_its_remedy(driver_text: str, remedy: str) -> None:
    line = describe(RuntimeError(driver_text))
    assert "\n" not in line and remedy in line.split("hint:")[1]


def test_a_store_failure_during_a_web_request_is_a_503_without_sql(tmp_path: Path) -> None:
    import warnings

    from publisher.config import load_config
    from publisher.web import create_app
    from tests.conftest import write_config

    warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
    from starlette.testclient import TestClient

    config = load_config(write_config(tmp_path))
    store = Store.open(config.store_url)
    try:
        store.engine.dispose()
        for leftover in tmp_path.glob("store.db*"):
            leftover.unlink()  # the database is gone under the running server: its tables with it
        with TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080") as client:
            answer = client.get("/archive/")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "60"
        assert "SELECT" not in answer.text and "Traceback" not in answer.text
        assert answer.headers["x-content-type-options"] == "nosniff"
    finally:
        store.close()
