"""WebSub against a real hub: Flask-WebSub's hub (PyPI, with Celery running its tasks in place) and
its subscriber, both on loopback next to `publisher serve`'s web face. The subscriber discovers the hub
from the served feed's Link headers, subscribes (the hub verifies intent with a challenge), and when
publish_feeds changes the feed and pings the hub, the hub fetches it and delivers it to the subscriber."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
from celery import Celery
from flask import Flask
from flask_websub.hub import Hub, SQLite3HubStorage
from flask_websub.subscriber import (
    SQLite3SubscriberStorage,
    SQLite3TempSubscriberStorage,
    Subscriber,
    discover,
)
from werkzeug.serving import make_server

from publisher.config import load_config
from publisher.models import Article
from publisher.pipeline import collect, publish_feeds
from publisher.store import Store
from publisher.web import create_app
from publisher.web.server import WebServer
from tests.test_syndication_formats import feeds_config
from tests.test_syndication_sections import free_port


@dataclass
class Served:
    url: str
    stop: Any


def serve_flask(app: Flask) -> Served:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return Served(f"http://127.0.0.1:{server.server_port}", stop)


@dataclass
class Received:
    notifications: list[tuple[str, bytes]] = field(default_factory=list)
    subscribed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[str]:
    celery = Celery("websub-hub", broker="memory://", backend="cache+memory://")
    # the hub's tasks (verify intent, fetch the topic, notify) run in the request that asks for them:
    # when the publisher's ping returns, delivery has happened; no worker process, nothing to wait for
    celery.conf.task_always_eager = True
    celery.conf.task_eager_propagates = True
    app = Flask("hub")
    app.config.update(PUBLISH_SUPPORTED=True, REQUEST_TIMEOUT=10)
    real = Hub(SQLite3HubStorage(str(tmp_path / "hub.db")), celery, **app.config)
    app.register_blueprint(real.build_blueprint(url_prefix="/hub"))
    served = serve_flask(app)
    try:
        yield f"{served.url}/hub"
    finally:
        served.stop()


def test_a_changed_feed_reaches_a_real_subscriber_through_a_real_hub(tmp_path: Path, hub: str) -> None:
    port = free_port()
    path = feeds_config(tmp_path, f"formats: [atom, rss]\nmeasure_images: false\nwebsub_hubs: [{hub}]")
    path.write_text(
        path.read_text(encoding="utf-8").replace("127.0.0.1:8080/feeds", f"127.0.0.1:{port}/feeds"),
        encoding="utf-8",
    )
    config = load_config(path)
    store = Store.open(config.store_url)
    web = None
    subscriber_server = None
    try:
        collect(config, store)
        publish_feeds(config, store)  # the first run: the feeds exist before anyone subscribes
        web = WebServer(create_app(lambda: config, store), "127.0.0.1", port).start()
        topic = f"http://127.0.0.1:{port}/feeds/en.atom.xml"

        received = Received()
        subscriber = Subscriber(
            SQLite3SubscriberStorage(str(tmp_path / "subscriber.db")),
            SQLite3TempSubscriberStorage(str(tmp_path / "subscriber.db")),
            REQUEST_TIMEOUT=10,
        )
        subscriber.add_listener(lambda topic_url, _id, body: received.notifications.append((topic_url, body)))
        subscriber.add_success_handler(lambda topic_url, _id, mode: received.subscribed.append(f"{mode} {topic_url}"))
        subscriber.add_error_handler(lambda topic_url, _id, reason: received.errors.append(reason))
        subscriber_app = Flask("subscriber")
        subscriber_app.register_blueprint(subscriber.build_blueprint(url_prefix="/callbacks"))
        subscriber_server = serve_flask(subscriber_app)

        with subscriber_app.test_request_context(base_url=subscriber_server.url):
            found = discover(topic)  # reads our Link headers: rel=hub and rel=self
            assert found == {"topic_url": topic, "hub_url": hub}
            subscriber.subscribe(**found)
        assert received.subscribed == [f"subscribe {topic}"] and received.errors == []

        # nothing new: no ping, so nothing is delivered
        report = publish_feeds(config, store)
        assert report.errors == [] and not [p for p in report.published if p.changed]
        assert received.notifications == []

        # a new article: the feed changes, the hub is told, fetches the feed and delivers it
        template = store.articles.latest("en", 1)[0]
        fresh = replace(
            template,
            id="https://news.example.org/en/2024/12/03/first-snow",
            url="https://news.example.org/en/2024/12/03/first-snow",
            title="First snow on Mount Hermon",
            published_at=datetime(2024, 12, 3, 5, 0, tzinfo=UTC),
            updated_at=datetime(2024, 12, 3, 5, 0, tzinfo=UTC),
        )
        store.articles.upsert([Article(**{k: getattr(fresh, k) for k in Article.__dataclass_fields__})])
        report = publish_feeds(config, store)
        assert report.errors == []
        assert {p.name for p in report.published if p.changed} == {"en.atom.xml", "en.rss.xml"}

        assert [t for t, _ in received.notifications] == [topic]  # only the subscribed topic
        body = received.notifications[0][1]
        assert body == (config.path(config.feeds.directory) / "en.atom.xml").read_bytes()
        assert feedparser.parse(body).entries[0].title == "First snow on Mount Hermon"
    finally:
        if subscriber_server is not None:
            subscriber_server.stop()
        if web is not None:
            web.stop()
        store.close()
