"""GET /r/<token>[/<reader>]: count a click on a story link of a digest, then 302 to exactly the signed URL.
GET /o/<token>[/<reader>]: count an open of a digest (its 1x1 pixel), answer the GIF, never cached.

A token or reader part that does not verify is a 400 with a short page, never a redirect: no open
redirect, and nobody can file clicks or opens under another subscriber. The subscriber is recorded
only while analytics.per_subscriber is on (a link mailed before it was turned off counts
anonymously). Scanners that follow every link count as clicks, and Apple Mail Privacy Protection
loads every image: the console says so.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from publisher.render.clicks import ClickLinks, InvalidClick
from publisher.store.clicks import ClickLedger
from publisher.web.context import PAGE_HEADERS, PRIVATE, WebContext

log = logging.getLogger(__name__)

# The smallest transparent 1x1 GIF89a (43 bytes).
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
         b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
PIXEL_HEADERS = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache",
                 "Expires": "0", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class ClickRedirects:
    def __init__(self, web: WebContext) -> None:
        self.web = web
        self.clicks = ClickLedger(web.store.engine)

    def routes(self) -> list[Route]:
        return [
            Route("/r/{token}", self.follow, methods=["GET", "HEAD"]),
            Route("/r/{token}/{reader}", self.follow, methods=["GET", "HEAD"]),
            Route("/o/{token}", self.opened, methods=["GET", "HEAD"]),
            Route("/o/{token}/{reader}", self.opened, methods=["GET", "HEAD"]),
        ]

    def _links(self) -> ClickLinks:
        return ClickLinks(self.web.config.site.secret, self.web.config.site.public_url)

    def _subscriber(self, links: ClickLinks, digest_id: int, request: Request) -> int | None:
        """The verified subscriber of a reader part, when one is there and per_subscriber is on."""
        reader = request.path_params.get("reader")
        if reader is None:
            return None
        subscriber_id = links.verify_reader(digest_id, str(reader))  # InvalidClick for a forged one
        if not self.web.config.analytics.per_subscriber:
            return None
        return subscriber_id if self.web.store.subscribers.get(subscriber_id) is not None else None

    def follow(self, request: Request) -> Response:
        links = self._links()
        try:
            target = links.verify(str(request.path_params["token"]))
            subscriber_id = self._subscriber(links, target.digest_id, request)
        except InvalidClick as exc:
            return _refused(exc)
        if request.method == "GET" and self.web.store.digests.get(target.digest_id) is not None:
            self.clicks.record(target.digest_id, target.position, subscriber_id=subscriber_id)
        return RedirectResponse(target.url, status_code=302, headers={**PRIVATE, "Referrer-Policy": "no-referrer"})

    def opened(self, request: Request) -> Response:
        links = self._links()
        try:
            digest_id = links.verify_open(str(request.path_params["token"]))
            subscriber_id = self._subscriber(links, digest_id, request)
        except InvalidClick as exc:
            return _refused(exc)
        if request.method == "GET" and self.web.store.digests.get(digest_id) is not None:
            self.clicks.record_open(digest_id, subscriber_id=subscriber_id)
        return Response(PIXEL, media_type="image/gif", headers=PIXEL_HEADERS)


def _refused(exc: InvalidClick) -> Response:
    return PlainTextResponse(f"This link is not valid ({exc}).\n", status_code=400, headers={**PAGE_HEADERS, **PRIVATE})
