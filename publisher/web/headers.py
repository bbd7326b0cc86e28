"""The security headers of our pages on every answer: error answers (404, 405, 413, 429, 503), the
plain-text one-click answer, JSON (/healthz, webhooks) and feeds alike.

An ASGI middleware rather than a per-handler habit, so an answer made by Starlette itself (a 405 for a
wrong method, a 413 from the body limit) cannot leave without them. A header a handler set on purpose
(a feed's Cache-Control, say) is kept.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from publisher.web.context import PAGE_HEADERS


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in PAGE_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


def security_headers() -> dict[str, str]:
    """The same headers, for an answer made outside the middleware (the last-resort 500)."""
    return dict(PAGE_HEADERS)
