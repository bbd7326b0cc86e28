"""GET /healthz: is the store reachable, and how did the last digests and scheduled jobs go. 503 when
the store cannot be reached, so a load balancer or a monitor can act on the status code alone."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from publisher.web.context import WebContext

log = logging.getLogger(__name__)

RECENT = 5


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class HealthCheck:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    def routes(self) -> list[Route]:
        return [Route("/healthz", self.check, methods=["GET"])]

    def check(self, request: Request) -> Response:
        headers = {"Cache-Control": "no-store"}
        if not self.web.store.ping():
            return JSONResponse({"ok": False, "store": "unreachable"}, status_code=503, headers=headers)
        body: dict[str, Any] = {"ok": True, "store": "ok"}
        try:
            body["digests"] = [
                {
                    "edition": record.edition,
                    "day": record.day.isoformat(),
                    "status": record.status,
                    "recipients": record.recipients,
                    "started_at": _iso(record.started_at),
                    "finished_at": _iso(record.finished_at),
                    "note": record.note,
                }
                for record in self.web.store.digests.recent(RECENT)
            ]
            body["jobs"] = [
                {
                    "job": run.job,
                    "slot": _iso(run.slot),
                    "status": run.status,
                    "started_at": _iso(run.started_at),
                    "finished_at": _iso(run.finished_at),
                    "reason": run.reason,
                }
                for run in self.web.store.jobs.recent(RECENT)
            ]
        except Exception as exc:  # the store answered ping but not this: say so, still 503
            log.exception("health check could not read the store")
            return JSONResponse({"ok": False, "store": f"error: {type(exc).__name__}"}, status_code=503, headers=headers)
        last_run = body["jobs"][0] if body["jobs"] else None
        body["last_run"] = last_run
        if last_run is not None and last_run["status"] == "failed":
            body["ok"] = False  # still 200: the web face works; the body says what needs a look
        return JSONResponse(body, headers=headers)
