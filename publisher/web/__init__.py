"""The web face of `publisher serve`: subscribe, confirm, unsubscribe (RFC 8058), preferences,
archive, feeds and a health check, as one Starlette application.

    app = create_app(lambda: current_config, store)
    server = WebServer(app, host, port).start()

Starlette because it is small, ASGI (uvicorn runs it in a thread beside the scheduler) and runs plain
def endpoints in a thread pool, so the synchronous store and SMTP code need no async rewrite.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.body_limit import RequestBodyLimitResponder
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from publisher.config import Config
from publisher.errors import StoreError
from publisher.store import Store
from publisher.web.admin import AdminPages
from publisher.web.archive import ArchivePages
from publisher.web.clicks import ClickRedirects
from publisher.web.confirmations import ConfirmationWorker
from publisher.web.context import TransportFactory, WebContext
from publisher.web.feeds import FeedFiles
from publisher.web.headers import SecurityHeaders, security_headers
from publisher.web.health import HealthCheck
from publisher.web.metrics import MetricsPage
from publisher.web.preferences import PreferencesPages
from publisher.web.strings import choose_language
from publisher.web.subscribe import SubscribePages
from publisher.web.unsubscribe import UnsubscribePages
from publisher.web.webhooks import routes as webhook_routes

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # forms are small; a bigger body is refused before it is read
# Providers post batches of events (SendGrid up to ~768 KB; SNS with original headers ~256 KB).
MAX_WEBHOOK_BODY_BYTES = 1024 * 1024


class BodyLimit:
    """Refuse oversized request bodies before they are read: small for forms, larger for webhooks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = MAX_WEBHOOK_BODY_BYTES if scope["path"].startswith("/webhooks/") else MAX_BODY_BYTES
        await RequestBodyLimitResponder(self.app, limit)(scope, receive, send)

__all__ = ["create_app"]


def create_app(
    config: Callable[[], Config], store: Store, *, transport_factory: TransportFactory | None = None
) -> Starlette:
    """The application. `config` is called on every request (live reload); `transport_factory` builds
    the mail transport for confirmation emails (default: config.mail.transport)."""
    web = WebContext(config, store, transport_factory)
    confirmations = ConfirmationWorker(web)
    routes = [
        *SubscribePages(web, confirmations).routes(),
        *UnsubscribePages(web).routes(),
        *PreferencesPages(web).routes(),
        *ArchivePages(web).routes(),
        *FeedFiles(web).routes(),
        *HealthCheck(web).routes(),
        *AdminPages(web).routes(),
        *MetricsPage(web).routes(),
        *ClickRedirects(web).routes(),
        *webhook_routes(web),
    ]

    def language(request: Request) -> str:
        return choose_language(request.query_params.get("lang"), request.headers.get("accept-language"), web.languages())

    def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        try:
            if status == 404:
                return web.notice(language(request), "not_found_title", "not_found_text", status_code=404,
                                  links=[("subscribe_link", "/subscribe"), ("archive_link", "/archive/")])
            if status >= 500:
                return web.notice(language(request), "error_title", "error_text", status_code=status)
        except Exception:
            log.exception("the error page itself failed")
        detail = exc.detail if isinstance(exc, HTTPException) else "Internal Server Error"
        # a 500 is answered outside the middlewares: its headers are set here
        return PlainTextResponse(f"{detail}\n", status_code=status, headers=security_headers())

    def store_down(request: Request, exc: Exception) -> Response:
        log.error("store error while answering %s: %s", request.url.path, exc)
        return PlainTextResponse("The service is unavailable; please try again shortly.\n", status_code=503,
                                 headers={"Retry-After": "60", **security_headers()})

    def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("error while answering %s %s", request.method, request.url.path, exc_info=exc)
        return http_error(request, exc)

    app = Starlette(
        routes=routes,
        exception_handlers={404: http_error, 405: http_error, StoreError: store_down, Exception: unexpected},
        middleware=[Middleware(SecurityHeaders), Middleware(BodyLimit)],
    )
    app.state.confirmations = confirmations  # tests wait on it: app.state.confirmations.wait()
    confirmations.start()  # one pass now: what a previous process queued and did not send goes out
    return app
