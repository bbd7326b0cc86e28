"""GET /r/<token>: count a click on a story link of a digest, then 302 to exactly the signed URL.

A token that does not verify is a 400 with a short page, never a redirect: no open redirect.
Scanners that follow every link in a message count as clicks too; the console says so.
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


class ClickRedirects:
    def __init__(self, web: WebContext) -> None:
        self.web = web
        self.clicks = ClickLedger(web.store.engine)

    def routes(self) -> list[Route]:
        return [Route("/r/{token}", self.follow, methods=["GET", "HEAD"])]

    def follow(self, request: Request) -> Response:
        config = self.web.config
        try:
            target = ClickLinks(config.site.secret, config.site.public_url).verify(str(request.path_params["token"]))
        except InvalidClick as exc:
            return PlainTextResponse(f"This link is not valid ({exc}).\n", status_code=400,
                                     headers={**PAGE_HEADERS, **PRIVATE})
        if request.method == "GET" and self.web.store.digests.get(target.digest_id) is not None:
            self.clicks.record(target.digest_id, target.position)
        return RedirectResponse(target.url, status_code=302, headers={**PRIVATE, "Referrer-Policy": "no-referrer"})
