"""Preferences from the signed link in every digest: edition (language), sections, pause, name, and
"delete my data" (the row goes; only a hashed suppression entry stays, see SubscriberRepository.forget).

Nothing here can re-activate an unsubscribed, bounced or complained address: that takes a new
confirmed opt-in through the subscribe form.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from publisher.models import Subscriber
from publisher.tokens import TokenClaims
from publisher.web.context import WebContext, isolate
from publisher.web.csrf import same_origin
from publisher.web.forms import read_choices
from publisher.web.links import PREFERENCES, UNSUBSCRIBE, check_link, link_path
from publisher.web.strings import choose_language

log = logging.getLogger(__name__)


class PreferencesPages:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    def routes(self) -> list[Route]:
        return [
            Route("/preferences/{token}", self.show, methods=["GET"]),
            Route("/preferences/{token}", self.save, methods=["POST"]),
            Route("/preferences/{token}/delete", self.delete, methods=["POST"]),
        ]

    def _fallback_language(self, request: Request) -> str:
        return choose_language(
            request.query_params.get("lang"), request.headers.get("accept-language"), self.web.languages()
        )

    def _subscriber(self, request: Request) -> tuple[str, Subscriber | None, Response | None]:
        """(token, subscriber, None) or (token, None, the error page to answer with)."""
        token = str(request.path_params["token"])
        check = check_link(self.web.signer(), token, PREFERENCES)
        if not check.ok:
            return token, None, self.web.notice(self._fallback_language(request), "bad_link_title", "bad_link_text",
                                                status_code=400)
        claims: TokenClaims | None = check.claims
        assert claims is not None
        subscriber = self.web.store.subscribers.get(claims.subscriber_id)
        if subscriber is None:
            return token, None, self.web.notice(self._fallback_language(request), "gone_title", "gone_text",
                                                status_code=404)
        return token, subscriber, None

    def show(self, request: Request) -> Response:
        token, subscriber, problem = self._subscriber(request)
        if problem is not None:
            return problem
        assert subscriber is not None
        return self._page(request, token, subscriber, saved=request.query_params.get("saved") == "1")

    def _page(
        self, request: Request, token: str, subscriber: Subscriber, *, saved: bool = False,
        errors: list[str] | None = None, status_code: int = 200,
    ) -> Response:
        language = subscriber.language
        labels = self.web.section_labels(language)
        return self.web.page(
            "web/preferences.html.j2",
            language,
            {
                "subscriber": {
                    "email": subscriber.email,
                    "display_email": isolate(subscriber.email),
                    "name": subscriber.name,
                    "language": subscriber.language,
                    "sections": list(subscriber.sections),
                    "paused": subscriber.paused,
                    "status": subscriber.status.value,
                },
                "editions": self.web.edition_choices(),
                "sections": [{"key": key, "label": label} for key, label in labels.items()],
                "csrf": self.web.csrf().issue(token),
                "saved": saved,
                "errors": errors or [],
                "action": f"/preferences/{token}",
                "delete_action": f"/preferences/{token}/delete",
                "unsubscribe_url": link_path(self.web.signer(), UNSUBSCRIBE, subscriber.id),
            },
            status_code=status_code,
            request=request,
        )

    def _form_allowed(self, request: Request, form: FormData, token: str) -> bool:
        value = form.get("csrf")
        return same_origin(request, self.web.config.site.public_url) and self.web.csrf().check(
            value if isinstance(value, str) else None, token
        )

    async def save(self, request: Request) -> Response:
        form = await request.form()
        return await run_in_threadpool(self._save, request, form)

    def _save(self, request: Request, form: FormData) -> Response:
        token, subscriber, problem = self._subscriber(request)
        if problem is not None:
            return problem
        assert subscriber is not None
        strings = self.web.strings(subscriber.language)
        if not self._form_allowed(request, form, token):
            return self._page(request, token, subscriber, errors=[str(strings["error_form"])], status_code=403)
        choices = read_choices(
            form, strings, languages=self.web.languages(), sections=self.web.sections(), with_email=False
        )
        if choices.errors:
            return self._page(request, token, subscriber, errors=choices.errors, status_code=400)
        self.web.store.subscribers.set_preferences(
            subscriber.id, language=choices.language, sections=choices.sections, paused=choices.paused,
            name=choices.name,
        )
        log.info("subscriber %d changed preferences", subscriber.id)
        # Post/Redirect/Get to our own path: a reload does not post again; nothing here comes from input
        return RedirectResponse(f"/preferences/{token}?saved=1", status_code=303)

    async def delete(self, request: Request) -> Response:
        form = await request.form()
        return await run_in_threadpool(self._delete, request, form)

    def _delete(self, request: Request, form: FormData) -> Response:
        token, subscriber, problem = self._subscriber(request)
        if problem is not None:
            return problem
        assert subscriber is not None
        strings = self.web.strings(subscriber.language)
        if not self._form_allowed(request, form, token):
            return self._page(request, token, subscriber, errors=[str(strings["error_form"])], status_code=403)
        if form.get("confirm") != "yes":
            return self._page(request, token, subscriber, errors=[str(strings["delete_confirm_missing"])],
                              status_code=400)
        self.web.consent.close_confirmations(subscriber.id)
        self.web.store.subscribers.forget(subscriber.id, reason="deleted by the subscriber")
        log.info("subscriber %d deleted their data", subscriber.id)
        return self.web.notice(subscriber.language, "deleted_title", "deleted_text",
                               links=[("home_link", self.web.config.site.base_url)],
                               values={"site": self.web.config.site.name})
