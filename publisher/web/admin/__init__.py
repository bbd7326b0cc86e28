"""/admin: the operator's console in `publisher serve` — digests, sources, the list, its history.

Nothing under /admin answers without a signed-in operator (web.admin_users, hashes written by
`publisher admin passwd`); sign-in is rate-limited per client and per user name; every form carries a
CSRF value bound to the session. The console only reads: config.yaml stays where the operator edits.
Pages work without JavaScript, in English and Arabic.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from publisher.models import SubscriberStatus
from publisher.render.slots import fill_slots, public_values
from publisher.render.templates import PACKAGED_TEMPLATES, text_direction
from publisher.store.clicks import ClickLedger
from publisher.store.consent import client_key
from publisher.store.reports import Reports
from publisher.web.admin.charts import bar_chart, line_chart
from publisher.web.admin.session import COOKIE, MAX_AGE_SECONDS, AdminSessions
from publisher.web.admin.strings import STRINGS, console_language
from publisher.web.context import PAGE_HEADERS, PRIVATE, WebContext
from publisher.web.csrf import COOKIE as CSRF_COOKIE
from publisher.web.csrf import cookie_nonce, new_nonce, same_origin

log = logging.getLogger(__name__)

LOGIN_ATTEMPTS = 10  # per client within LOGIN_WINDOW
# Per user name, from anywhere: stops a guesser spread over many addresses, but high enough that one
# noisy client cannot lock the operator out.
LOGIN_ATTEMPTS_PER_USER = 50
LOGIN_WINDOW = timedelta(minutes=15)
Handler = Callable[[Request], Response]
Endpoint = Callable[[Request], Awaitable[Response]]
# The digest as sent, in the console's iframe: no scripts, no forms, no navigation out of the frame.
DIGEST_FRAME_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src https: data:",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    **PRIVATE,
}
SVG_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'", **PRIVATE,
               "X-Content-Type-Options": "nosniff"}


class AdminPages:
    def __init__(self, web: WebContext) -> None:
        self.web = web
        self.reports = Reports(web.store.engine)
        self.clicks = ClickLedger(web.store.engine)
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(PACKAGED_TEMPLATES / "admin")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def routes(self) -> list[Route]:
        return [
            Route("/admin", lambda request: RedirectResponse("/admin/", status_code=308), methods=["GET"]),
            Route("/admin/login", self.login_form, methods=["GET"]),
            Route("/admin/login", self.login, methods=["POST"]),
            Route("/admin/logout", self.signed_in(self.logout), methods=["POST"]),
            Route("/admin/", self.signed_in(self.dashboard), methods=["GET"]),
            Route("/admin/charts/{name}.svg", self.signed_in(self.chart), methods=["GET"]),
            Route("/admin/digests/{digest_id:int}", self.signed_in(self.digest), methods=["GET"]),
            Route("/admin/digests/{digest_id:int}/html", self.signed_in(self.digest_html), methods=["GET"]),
            Route("/admin/digests/{digest_id:int}/clicks.svg", self.signed_in(self.story_chart), methods=["GET"]),
            Route("/admin/subscribers", self.signed_in(self.subscribers), methods=["GET"]),
            Route("/admin/subscribers.csv", self.signed_in(self.export), methods=["GET"]),
            Route("/admin/subscribers/{subscriber_id:int}", self.signed_in(self.subscriber), methods=["GET"]),
        ]

    # --- sessions ---------------------------------------------------------------------------------

    def sessions(self) -> AdminSessions:
        config = self.web.config
        return AdminSessions(config.site.secret, config.web.admin_users)

    def current_user(self, request: Request) -> str | None:
        return self.sessions().user(request.cookies.get(COOKIE))

    def signed_in(self, handler: Handler) -> Endpoint:
        """The handler, for a signed-in operator only; a POST also needs this session's CSRF value."""

        @wraps(handler)
        async def guarded(request: Request) -> Response:
            if self.current_user(request) is None:
                return RedirectResponse(f"/admin/login?lang={self._language(request)}", status_code=303,
                                        headers=PRIVATE)
            if request.method == "POST":
                form = await request.form()
                value = form.get("csrf")
                cookie = request.cookies.get(COOKIE) or ""
                if not (same_origin(request, self.web.config.site.public_url)
                        and self.web.csrf().check(value if isinstance(value, str) else None, "admin:" + cookie)):
                    return Response("Forbidden: the form expired or came from another site; reload the page.\n",
                                    status_code=403, headers={**PAGE_HEADERS, **PRIVATE})
            return await run_in_threadpool(handler, request)

        return guarded

    def _secure(self) -> bool:
        return self.web.config.site.public_url.startswith("https://")

    # --- pages ------------------------------------------------------------------------------------

    def _language(self, request: Request) -> str:
        return console_language(request.query_params.get("lang"), request.headers.get("accept-language"))

    def _page(self, request: Request, template: str, values: dict[str, Any], *, status_code: int = 200,
              user: str | None = None) -> HTMLResponse:
        language = self._language(request)
        config = self.web.config
        cookie = request.cookies.get(COOKIE) or ""
        context = {
            "lang": language,
            "dir": text_direction(language),
            "s": STRINGS[language],
            "site_name": config.site.name,
            "user": user if user is not None else self.current_user(request),
            "csrf": self.web.csrf().issue("admin:" + cookie),
            **values,
        }
        body = self._env.get_template(template).render(context)
        return HTMLResponse(body, status_code=status_code, headers={**PAGE_HEADERS, **PRIVATE,
                                                                    "Content-Language": language})

    def login_form(self, request: Request, *, error: str | None = None, entered_user: str = "",
                   status_code: int = 200) -> Response:
        nonce = cookie_nonce(request) or new_nonce()
        language = self._language(request)
        context = {
            "lang": language,
            "dir": text_direction(language),
            "s": STRINGS[language],
            "site_name": self.web.config.site.name,
            "user": None,
            "csrf": self.web.csrf().issue("admin-login", nonce),
            "error": error,
            "no_users": not self.web.config.web.admin_users,
            "entered_user": entered_user,
        }
        body = self._env.get_template("login.html.j2").render(context)
        response = HTMLResponse(body, status_code=status_code, headers={**PAGE_HEADERS, **PRIVATE})
        response.set_cookie(CSRF_COOKIE, nonce, max_age=12 * 3600, httponly=True, samesite="strict",
                            secure=self._secure(), path="/")
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        strings = STRINGS[self._language(request)]
        user, password, csrf = (str(v)[:1000] if isinstance(v := form.get(k), str) else ""
                                for k in ("user", "password", "csrf"))
        user = user[:100]
        nonce = cookie_nonce(request)
        if (not same_origin(request, self.web.config.site.public_url) or nonce is None
                or not self.web.csrf().check(csrf, "admin-login", nonce)):
            return self.login_form(request, error=strings["login_failed"], entered_user=user, status_code=403)
        client = request.client.host if request.client else "unknown"
        consent = self.web.consent
        if not (consent.allow("admin-login", client_key(client), limit=LOGIN_ATTEMPTS, window=LOGIN_WINDOW)
                and consent.allow("admin-login-user", client_key(user), limit=LOGIN_ATTEMPTS_PER_USER,
                              window=LOGIN_WINDOW)):
            log.warning("console sign-in throttled for client %s, user %r", client, user)
            return self.login_form(request, error=strings["login_throttled"], entered_user=user, status_code=429)
        sessions = self.sessions()
        if not await run_in_threadpool(sessions.authenticate, user, password):
            log.warning("console sign-in failed for user %r from %s", user, client)
            return self.login_form(request, error=strings["login_failed"], entered_user=user, status_code=401)
        log.info("console sign-in: %s from %s", user, client)
        response = RedirectResponse(f"/admin/?lang={self._language(request)}", status_code=303, headers=PRIVATE)
        response.set_cookie(COOKIE, sessions.issue(user), max_age=MAX_AGE_SECONDS, httponly=True,
                            samesite="strict", secure=self._secure(), path="/admin")
        return response

    def logout(self, request: Request) -> Response:
        response = RedirectResponse(f"/admin/login?lang={self._language(request)}", status_code=303, headers=PRIVATE)
        response.delete_cookie(COOKIE, path="/admin")
        return response

    def dashboard(self, request: Request) -> Response:
        from publisher.pipeline.collect import BROKEN_AFTER
        from publisher.scheduler import next_fire_times, planned_jobs

        config = self.web.config
        now = datetime.now(UTC)
        runs = []
        for job in planned_jobs(config):
            upcoming = next_fire_times(job, now, 1)
            when = upcoming[0].astimezone(config.site.zone).strftime("%Y-%m-%d %H:%M %Z") if upcoming else "—"
            runs.append((job.id, job.line, when))
        sources = []
        for state, _failed_at, _count in self.web.store.sources.all():
            if state.consecutive_failures >= BROKEN_AFTER:
                health = "broken"
            elif state.consecutive_failures:
                health = "warnings"
            else:
                health = "ok" if state.last_success_at else "never_fetched"
            sources.append((state.name, health, state.last_error if state.consecutive_failures else None))
        counts: dict[str, dict[str, int]] = {}
        for (language, status), number in self.reports.list_counts().items():
            counts.setdefault(language, {})[status] = number
        growth = self.reports.growth()
        per_day = self.reports.deliveries_per_day()
        digests = self.reports.digests(limit=14)
        clicks = self.clicks.per_digest([d.id for d in digests]) if config.analytics.clicks else {}
        return self._page(request, "dashboard.html.j2", {
            "digests": digests,
            "clicks": {d.id: clicks.get(d.id, 0) for d in digests} if config.analytics.clicks else {},
            "opens": self._opens([d.id for d in digests]),
            "runs": runs,
            "sources": sources,
            "statuses": [s.value for s in SubscriberStatus],
            "counts": sorted(counts.items()),
            "growth_summary": f"+{sum(g.joined for g in growth)} / -{sum(g.left for g in growth)} / "
                              f"-{sum(g.bounced for g in growth)}",
            "deliveries_summary": f"{sum(s for _, s, _ in per_day)} / {sum(f for _, _, f in per_day)}",
        })

    def chart(self, request: Request) -> Response:
        strings = STRINGS[self._language(request)]
        name = request.path_params["name"]
        if name == "growth":
            growth = self.reports.growth()
            svg = line_chart(strings["growth"], [g.day for g in growth], [
                (strings["joined"], [g.joined for g in growth]),
                (strings["left"], [g.left for g in growth]),
                (strings["bounced_chart"], [g.bounced for g in growth]),
            ])
        elif name == "deliveries":
            per_day = self.reports.deliveries_per_day()
            svg = line_chart(strings["deliveries_chart"], [d for d, _, _ in per_day], [
                (strings["sent"], [s for _, s, _ in per_day]),
                (strings["failed"], [f for _, _, f in per_day]),
            ])
        else:
            return Response(strings["not_found"], status_code=404, headers=SVG_HEADERS)
        return Response(svg, media_type="image/svg+xml", headers=SVG_HEADERS)

    def digest(self, request: Request) -> Response:
        figures = self.reports.digest(int(request.path_params["digest_id"]))
        if figures is None:
            return Response(STRINGS[self._language(request)]["not_found"], status_code=404,
                            headers={**PAGE_HEADERS, **PRIVATE})
        record = self.web.store.digests.get(figures.id)
        stories = self._stories(figures.id)
        return self._page(request, "digest.html.j2", {
            "d": figures, "has_html": bool(record and record.rendered), "stories": stories,
            "clicks": sum(n for _, _, n in stories) if self.web.config.analytics.clicks else None,
            "opens": self._opens([figures.id]).get(figures.id),
        })

    def _opens(self, digest_ids: list[int]) -> dict[int, str]:
        """digest id -> its opens as the console shows them ("12", or "12 / 9 subscribers"); empty when off."""
        analytics = self.web.config.analytics
        if not analytics.opens:
            return {}
        found = self.clicks.opens(digest_ids)
        shown = {}
        for digest_id in digest_ids:
            total, unique = (found[digest_id].total, found[digest_id].unique) if digest_id in found else (0, 0)
            shown[digest_id] = f"{total} / {unique}" if analytics.per_subscriber else str(total)
        return shown

    def _stories(self, digest_id: int) -> list[tuple[int, str, int]]:
        """(position, title, clicks) of each story of a digest, most clicked first."""
        counts = self.clicks.per_story(digest_id)
        titles = [a.title for a in self.web.store.articles.in_digest(digest_id)]
        stories = [(i, title, counts.get(i, 0)) for i, title in enumerate(titles, start=1)]
        return sorted(stories, key=lambda s: (-s[2], s[0]))

    def story_chart(self, request: Request) -> Response:
        strings = STRINGS[self._language(request)]
        stories = self._stories(int(request.path_params["digest_id"]))
        svg = bar_chart(strings["clicks"], [f"{p}. {t[:60]}" for p, t, _ in stories], [n for _, _, n in stories])
        return Response(svg, media_type="image/svg+xml", headers=SVG_HEADERS)

    def digest_html(self, request: Request) -> Response:
        record = self.web.store.digests.get(int(request.path_params["digest_id"]))
        if record is None or record.rendered is None:
            return Response("", status_code=404, headers=DIGEST_FRAME_HEADERS)
        placeholder = "#"
        html = fill_slots(
            record.rendered.html,
            public_values(placeholder),
            escape_html=True,
        )
        return HTMLResponse(html, headers=DIGEST_FRAME_HEADERS)

    def _filters(self, request: Request) -> tuple[str, str | None, str | None]:
        q = str(request.query_params.get("q") or "").strip()[:200]
        status = request.query_params.get("status") or None
        if status not in {s.value for s in SubscriberStatus}:
            status = None
        language = request.query_params.get("edition") or None
        if language not in self.web.languages():
            language = None
        return q, status, language

    def subscribers(self, request: Request) -> Response:
        q, status, language = self._filters(request)
        try:
            after = max(0, int(request.query_params.get("after") or 0))
        except ValueError:
            after = 0
        page = self.reports.search(q, status=status, language=language, after_id=after)
        return self._page(request, "subscribers.html.j2", {
            "page": page, "q": q, "status_filter": status or "", "language_filter": language or "",
            "statuses": [s.value for s in SubscriberStatus], "languages": self.web.languages(),
        })

    def export(self, request: Request) -> Response:
        q, status, language = self._filters(request)
        reports = self.reports

        def rows() -> Iterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(["email", "name", "language", "status", "sections"])
            after = 0
            while True:
                page = reports.search(q, status=status, language=language, after_id=after, limit=1000)
                for sub in page.subscribers:
                    writer.writerow([sub.email, sub.name, sub.language, sub.status.value, ",".join(sub.sections)])
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
                if page.next_after is None:
                    return
                after = page.next_after

        log.info("console export by %s (q=%r status=%s edition=%s)", self.current_user(request), q, status, language)
        return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers={
            **PRIVATE, "X-Content-Type-Options": "nosniff",
            "Content-Disposition": 'attachment; filename="subscribers.csv"',
        })

    def subscriber(self, request: Request) -> Response:
        subscriber_id = int(request.path_params["subscriber_id"])
        sub = self.web.store.subscribers.get(subscriber_id)
        if sub is None:
            return Response(STRINGS[self._language(request)]["not_found"], status_code=404,
                            headers={**PAGE_HEADERS, **PRIVATE})
        return self._page(request, "subscriber.html.j2", {
            "sub": sub,
            "changes": self.reports.status_changes(subscriber_id),
            "received": self.reports.received(subscriber_id),
            "per_subscriber": self.web.config.analytics.per_subscriber,
            "reader_clicks": self.clicks.of_subscriber(subscriber_id),
            "reader_opens": self.clicks.opens_of_subscriber(subscriber_id),
        })
