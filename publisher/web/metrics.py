"""GET /metrics: Prometheus text format (prometheus-client), read from the store at scrape time.

The ledger is the truth, so the figures are the same whichever process sent (a manual run, the
service, a worker) and survive restarts. Readable by scrapers on this machine (web.metrics:
loopback), or by operators only (a console session or HTTP basic auth with a web.admin_users name).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from publisher.models import DeliveryStatus
from publisher.store.reports import Reports
from publisher.web.admin.session import COOKIE, AdminSessions
from publisher.web.context import PRIVATE, WebContext

_HEADERS = {"X-Content-Type-Options": "nosniff", **PRIVATE}


class StoreCollector(Collector):
    def __init__(self, web: WebContext) -> None:
        self.web = web
        self.reports = Reports(web.store.engine)

    def collect(self) -> Iterator[Metric]:
        config = self.web.config
        transport = config.mail.transport.kind
        messages = CounterMetricFamily(
            "publisher_messages", "Digest messages by final outcome (ledger rows sent or failed)",
            labels=["edition", "status", "transport"],
        )
        deferred = GaugeMetricFamily(
            "publisher_messages_deferred", "Digest messages waiting for a retry or for the rest of their send",
            labels=["edition", "transport"],
        )
        skipped = GaugeMetricFamily(
            "publisher_messages_skipped", "Ledger rows skipped (subscriber no longer active, paused)",
            labels=["edition", "transport"],
        )
        for (edition, status), number in sorted(self.reports.ledger_counts().items()):
            if status in (DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value):
                messages.add_metric([edition, status, transport], number)
            elif status == DeliveryStatus.PENDING.value:
                deferred.add_metric([edition, transport], number)
            elif status == DeliveryStatus.SKIPPED.value:
                skipped.add_metric([edition, transport], number)
        yield from (messages, deferred, skipped)

        subscribers = GaugeMetricFamily("publisher_subscribers", "Subscribers by language and status",
                                        labels=["language", "status"])
        for (language, status), number in sorted(self.reports.list_counts().items()):
            subscribers.add_metric([language, status], number)
        yield subscribers

        failures = GaugeMetricFamily("publisher_source_consecutive_failures",
                                     "Failed fetches in a row per source (3 or more: broken)", labels=["source"])
        success = GaugeMetricFamily("publisher_source_last_success_timestamp_seconds",
                                    "When each source was last fetched without error", labels=["source"])
        items = GaugeMetricFamily("publisher_source_items", "Items the last successful fetch gave", labels=["source"])
        for state, _failed_at, count in self.web.store.sources.all():
            failures.add_metric([state.name], state.consecutive_failures)
            if state.last_success_at is not None:
                success.add_metric([state.name], state.last_success_at.timestamp())
            if count is not None:
                items.add_metric([state.name], count)
        yield from (failures, success, items)

        duration = GaugeMetricFamily("publisher_digest_duration_seconds",
                                     "Send duration of each edition's newest finished digest", labels=["edition"])
        finished = GaugeMetricFamily("publisher_digest_last_finished_timestamp_seconds",
                                     "When each edition's newest digest finished sending", labels=["edition"])
        for edition, (started, ended) in sorted(self.reports.last_finished().items()):
            duration.add_metric([edition], (ended - started).total_seconds())
            finished.add_metric([edition], ended.timestamp())
        yield from (duration, finished)


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MetricsPage:
    def __init__(self, web: WebContext) -> None:
        self.web = web
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StoreCollector(web))

    def routes(self) -> list[Route]:
        return [Route("/metrics", self.metrics, methods=["GET"])]

    def _operator(self, request: Request) -> bool:
        config = self.web.config
        sessions = AdminSessions(config.site.secret, config.web.admin_users)
        if sessions.user(request.cookies.get(COOKIE)) is not None:
            return True
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or not credentials:
            return False
        try:
            user, _, password = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return sessions.authenticate(user, password)

    async def metrics(self, request: Request) -> Response:
        setting = self.web.config.web.metrics
        if setting == "off":
            return Response("Not Found\n", status_code=404, headers=_HEADERS)
        allowed = setting == "loopback" and _is_loopback(request.client.host if request.client else None)
        if not allowed and not await run_in_threadpool(self._operator, request):
            return Response("Authentication required\n", status_code=401,
                            headers={**_HEADERS, "WWW-Authenticate": 'Basic realm="publisher metrics"'})
        body = await run_in_threadpool(generate_latest, self.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers=_HEADERS)
