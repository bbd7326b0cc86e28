"""Unsubscribing from the link in every digest (List-Unsubscribe header and footer).

- GET shows one button and changes nothing: link scanners and prefetchers follow GETs.
- POST with the body `List-Unsubscribe=One-Click` (RFC 8058, sent by the mailbox provider) acts at
  once: no cookie, no login, no CSRF field (the signed token is the authority), a short 200 answer.
- POST from our own page's button needs its signed CSRF field.
Both are idempotent; a bounced or complained address keeps that stronger status.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from publisher.models import SubscriberStatus
from publisher.web.context import PRIVATE, WebContext, isolate
from publisher.web.csrf import same_origin
from publisher.web.links import PREFERENCES, UNSUBSCRIBE, check_link, link_path
from publisher.web.strings import choose_language

log = logging.getLogger(__name__)

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


class UnsubscribePages:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    def routes(self) -> list[Route]:
        return [
            Route("/unsubscribe/{token}", self.page, methods=["GET"]),
            Route("/unsubscribe/{token}", self.submit, methods=["POST"]),
        ]

    def page(self, request: Request) -> Response:
        return self._handle(request, None)

    async def submit(self, request: Request) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.form()
            one_click = form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE
        else:
            # a sender that omits the Content-Type still means RFC 8058 when the body says so
            form = FormData()
            one_click = parse_qs((await request.body())[:200].decode("ascii", "replace")).get(ONE_CLICK_FIELD) == [
                ONE_CLICK_VALUE
            ]
        if one_click:
            return await run_in_threadpool(self._one_click, request)
        return await run_in_threadpool(self._handle, request, form)

    def _one_click(self, request: Request) -> Response:
        token = str(request.path_params["token"])
        check = check_link(self.web.signer(), token, UNSUBSCRIBE)
        headers = {**PRIVATE, "X-Content-Type-Options": "nosniff"}
        if not check.ok:
            return PlainTextResponse("This unsubscribe link is not valid.\n", status_code=400, headers=headers)
        assert check.claims is not None
        before = self.web.consent.unsubscribe(check.claims.subscriber_id, reason="one-click (RFC 8058)")
        if before in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
            log.info("subscriber %d unsubscribed (one-click)", check.claims.subscriber_id)
        return PlainTextResponse("You are unsubscribed.\n", headers=headers)

    def _handle(self, request: Request, form: FormData | None) -> Response:
        config = self.web.config
        token = str(request.path_params["token"])
        check = check_link(self.web.signer(config), token, UNSUBSCRIBE)
        fallback = choose_language(request.query_params.get("lang"), request.headers.get("accept-language"),
                                   self.web.languages(config))
        if not check.ok:
            return self.web.notice(fallback, "bad_link_title", "bad_link_text", status_code=400,
                                   extra_key="bad_link_mailto" if config.site.unsubscribe_mailto else None,
                                   values={"mailto": config.site.unsubscribe_mailto or ""})
        assert check.claims is not None
        subscriber_id = check.claims.subscriber_id
        subscriber = self.web.store.subscribers.get(subscriber_id)
        if subscriber is None:
            return self.web.notice(fallback, "gone_title", "gone_text")
        language = subscriber.language
        values = {"email": isolate(subscriber.email), "edition": isolate(self.web.edition_title(language, config))}
        done_links = [
            ("subscribe_again_link", f"/subscribe?lang={language}"),
            ("preferences_link", link_path(self.web.signer(config), PREFERENCES, subscriber_id)),
        ]
        if subscriber.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
            return self.web.notice(language, "unsubscribed_title", "unsubscribed_text", links=done_links, values=values)
        guard = self.web.csrf(config)
        if form is not None:
            value = form.get("csrf")
            if same_origin(request, config.site.public_url) and guard.check(value if isinstance(value, str) else None, token):
                self.web.consent.unsubscribe(subscriber_id, reason="unsubscribe page")
                log.info("subscriber %d unsubscribed (page)", subscriber_id)
                return self.web.notice(language, "unsubscribed_title", "unsubscribed_text", links=done_links, values=values)
        return self.web.page(
            "web/action.html.j2",
            language,
            {
                "title_key": "unsubscribe_title",
                "text_key": "unsubscribe_text",
                "button_key": "unsubscribe_button",
                "action": f"/unsubscribe/{token}",
                "csrf": guard.issue(token),
                "values": values,
                "errors": [str(self.web.strings(language)["error_form"])] if form is not None else [],
                "links": [("preferences_link", link_path(self.web.signer(config), PREFERENCES, subscriber_id))],
            },
            status_code=403 if form is not None else 200,
            request=request,
        )
