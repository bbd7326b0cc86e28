"""Subscribing: the form, the confirmation email (double opt-in) and the confirmation page.

The answer to the form is the same whatever the address (new, pending, active, unsubscribed,
forgotten), and so is the work behind it: the request checks the form and the client's limit, and
queues one row for the confirmation worker (publisher/web/confirmations.py), which decides later and
elsewhere whether to send. Neither the page nor its timing tells a visitor whether an address is on
the list. Limits per address and per client, kept in the store, stop the form from being used to
bomb a mailbox.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from publisher.models import SubscriberStatus
from publisher.store.consent import client_key
from publisher.web.confirmations import ConfirmationWorker
from publisher.web.context import WebContext, isolate
from publisher.web.csrf import COOKIE, cookie_nonce, new_nonce, same_origin
from publisher.web.forms import Choices, field_text, read_choices
from publisher.web.links import CONFIRM, PREFERENCES, check_link, link_path
from publisher.web.strings import choose_language

log = logging.getLogger(__name__)

CLIENT_WINDOW = timedelta(hours=1)
PRUNE_EVERY = timedelta(hours=1)


def client_address(request: Request) -> str:
    # uvicorn already replaced it with X-Forwarded-For when the proxy is trusted (forwarded_allow_ips)
    return request.client.host if request.client else "unknown"


class SubscribePages:
    def __init__(self, web: WebContext, confirmations: ConfirmationWorker) -> None:
        self.web = web
        self.confirmations = confirmations

    def routes(self) -> list[Route]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/subscribe", self.form, methods=["GET"]),
            Route("/subscribe", self.submit, methods=["POST"]),
            Route("/subscribe/sent", self.sent, methods=["GET"]),
            Route("/confirm/{token}", self.confirm_page, methods=["GET"]),
            Route("/confirm/{token}", self.confirm, methods=["POST"]),
        ]

    def _language(self, request: Request, requested: str | None = None) -> str:
        return choose_language(
            requested or request.query_params.get("lang"),
            request.headers.get("accept-language"),
            self.web.languages(),
        )

    # --- the form --------------------------------------------------------------------------------

    def home(self, request: Request) -> Response:
        return RedirectResponse("/subscribe", status_code=303)

    def form(self, request: Request) -> Response:
        language = self._language(request)
        edition = self.web.edition_for(language)
        return self._form_page(request, language, Choices(language=edition.language if edition else language))

    def _form_page(self, request: Request, language: str, choices: Choices, *, status_code: int = 200) -> Response:
        nonce = cookie_nonce(request) or new_nonce()
        labels = self.web.section_labels(language)
        response = self.web.page(
            "web/subscribe.html.j2",
            language,
            {
                "form": choices,
                "errors": choices.errors,
                "editions": self.web.edition_choices(),
                "sections": [{"key": key, "label": label} for key, label in labels.items()],
                "csrf": self.web.csrf().issue("subscribe", nonce),
                "switch_languages": True,
            },
            status_code=status_code,
            request=request,
        )
        response.set_cookie(
            COOKIE,
            nonce,
            max_age=12 * 3600,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.web.config.site.public_url.startswith("https://"),
        )
        return response

    async def submit(self, request: Request) -> Response:
        form = await request.form()
        return await run_in_threadpool(self._submit, request, form)

    def _submit(self, request: Request, form: FormData) -> Response:
        config = self.web.config
        language = self._language(request, field_text(form, "lang", 40) or None)
        strings = self.web.strings(language)
        nonce = cookie_nonce(request)
        choices = read_choices(
            form, strings, languages=self.web.languages(config), sections=self.web.sections(config), with_email=True
        )
        signed = nonce is not None and self.web.csrf(config).check(field_text(form, "csrf", 200), "subscribe", nonce)
        if not (signed and same_origin(request, config.site.public_url)):
            choices.errors = [str(strings["error_form"])]
            return self._form_page(request, language, choices, status_code=403)
        self._prune_now_and_then()
        if not self.web.consent.allow(
            "subscribe-client",
            client_key(client_address(request)),
            limit=config.web.max_requests_per_client_per_hour,
            window=CLIENT_WINDOW,
        ):
            response = self.web.notice(language, "too_many_title", "too_many_text", status_code=429)
            response.headers["Retry-After"] = str(int(CLIENT_WINDOW.total_seconds()))
            return response
        if choices.errors:
            return self._form_page(request, language, choices, status_code=400)
        self.confirmations.request(choices.email, name=choices.name, language=choices.language,
                                   sections=choices.sections)
        return RedirectResponse(f"/subscribe/sent?lang={language}", status_code=303)

    def _prune_now_and_then(self) -> None:
        if secrets.randbelow(100) == 0:  # about once per hundred posts: old events go, cheaply
            self.web.consent.prune(timedelta(days=2))

    def sent(self, request: Request) -> Response:
        language = self._language(request)
        hours = self.web.config.web.confirm_hours
        return self.web.notice(
            language, "sent_title", "sent_text", values={"hours": _hours(hours)}, extra_key="sent_hint"
        )

    # --- confirmation ----------------------------------------------------------------------------

    def confirm_page(self, request: Request) -> Response:
        return self._confirm(request, None)

    async def confirm(self, request: Request) -> Response:
        form = await request.form()
        return await run_in_threadpool(self._confirm, request, form)

    def _confirm(self, request: Request, form: FormData | None) -> Response:
        """GET (form None) asks; POST with a valid field confirms. Scanners that follow links confirm nobody."""
        config = self.web.config
        token = str(request.path_params["token"])
        check = check_link(self.web.signer(config), token, CONFIRM)
        if not check.ok:
            language = self._language(request)
            if check.expired:
                return self.web.notice(language, "confirm_expired_title", "confirm_expired_text", status_code=410,
                                       links=[("subscribe_again_link", f"/subscribe?lang={language}")])
            return self.web.notice(language, "bad_link_title", "bad_link_text", status_code=400)
        assert check.claims is not None
        subscriber_id = check.claims.subscriber_id
        subscriber = self.web.store.subscribers.get(subscriber_id)
        if subscriber is None:
            return self.web.notice(self._language(request), "gone_title", "gone_text", status_code=404)
        language = subscriber.language
        # the name typed into the form is shown here, on our page, before the click that makes it theirs
        shown = f"{subscriber.name} <{subscriber.email}>" if subscriber.name else subscriber.email
        values: dict[str, Any] = {"email": isolate(shown), "edition": isolate(self.web.edition_title(language, config))}
        preferences = [("preferences_link", link_path(self.web.signer(config), PREFERENCES, subscriber_id))]
        if subscriber.status is SubscriberStatus.ACTIVE:
            return self.web.notice(language, "confirmed_title", "already_confirmed_text", links=preferences, values=values)
        if not self.web.consent.is_open(subscriber_id, token):
            return self.web.notice(language, "confirm_used_title", "confirm_used_text", status_code=410,
                                   links=[("subscribe_again_link", f"/subscribe?lang={language}")])
        guard = self.web.csrf(config)
        if form is not None:
            value = form.get("csrf")
            if same_origin(request, config.site.public_url) and guard.check(value if isinstance(value, str) else None, token):
                if self.web.consent.confirm(subscriber_id, token):
                    log.info("subscriber %d confirmed", subscriber_id)
                    return self.web.notice(language, "confirmed_title", "confirmed_text", links=preferences, values=values)
                return self.web.notice(language, "confirm_used_title", "confirm_used_text", status_code=410)
        return self.web.page(
            "web/action.html.j2",
            language,
            {
                "title_key": "confirm_title",
                "text_key": "confirm_text",
                "button_key": "confirm_button",
                "action": f"/confirm/{token}",
                "csrf": guard.issue(token),
                "values": values,
                "errors": [str(self.web.strings(language)["error_form"])] if form is not None else [],
                "links": [],
            },
            status_code=403 if form is not None else 200,
            request=request,
        )


def _hours(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 1)


