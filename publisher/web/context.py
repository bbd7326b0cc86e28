"""What every page handler needs: the current config, the store, templates, wording, signing keys.

The config is read through a callable on every request, so a live reload (templates directory,
secret, limits, editions) takes effect without restarting the server. The callable should return the
same Config object until the next reload: templates and wording are cached per Config object.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from publisher.config import Config, EditionSettings
from publisher.delivery.mail import MailTransport, build_transport
from publisher.errors import TemplateError
from publisher.render.strings import UiStrings, load_strings
from publisher.render.templates import make_environment, text_direction
from publisher.store import Store
from publisher.store.consent import ConsentRepository
from publisher.tokens import TokenSigner
from publisher.web.csrf import CsrfGuard
from publisher.web.strings import StringsCache, load_web_strings

log = logging.getLogger(__name__)

TransportFactory = Callable[[Config], MailTransport]

# Pages of ours: no scripts at all, forms post only to us, never framed, no referrer leaves the site
# (signed links are in our URLs).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
PRIVATE = {"Cache-Control": "no-store"}


def isolate(text: str) -> str:
    """Text wrapped in Unicode bidi isolates (FSI ... PDI), the plain-text <bdi>: an address or a Latin
    title inside an Arabic sentence keeps its own direction and does not drag punctuation along."""
    return f"\u2068{text}\u2069"


def default_transport(config: Config) -> MailTransport:
    return build_transport(config.mail.transport, base_dir=config.base_dir)


@dataclass(frozen=True)
class LanguageChoice:
    code: str
    name: str  # in its own language: "English", "العربية"


class WebContext:
    def __init__(self, config: Callable[[], Config], store: Store, transport_factory: TransportFactory | None = None) -> None:
        self._config = config
        self.store = store
        self.consent = ConsentRepository(store.engine)
        self.transport_factory = transport_factory or default_transport
        self._lock = threading.Lock()
        self._environment: tuple[Config, jinja2.Environment] | None = None
        self._strings = StringsCache()

    # --- configuration ---------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._config()

    def environment(self, config: Config | None = None) -> jinja2.Environment:
        """One environment per loaded config: edits to template files show at once (Jinja checks
        mtimes); a newly added operator file shows after the next config reload."""
        config = config or self.config
        with self._lock:
            if self._environment is not None and self._environment[0] is config:
                return self._environment[1]
        directory = config.path(config.templates) if config.templates else None
        env = make_environment(directory)
        with self._lock:
            self._environment = (config, env)
            self._strings = StringsCache()  # wording cached for the previous environment goes with it
        return env

    def signer(self, config: Config | None = None) -> TokenSigner:
        """Signs with site.secret; also verifies links signed with any of site.previous_secrets."""
        site = (config or self.config).site
        return TokenSigner(site.secret, previous=site.previous_secrets)

    def csrf(self, config: Config | None = None) -> CsrfGuard:
        site = (config or self.config).site
        return CsrfGuard(site.secret, previous=site.previous_secrets)

    def languages(self, config: Config | None = None) -> list[str]:
        return list(dict.fromkeys(e.language for e in (config or self.config).editions))

    def edition_for(self, language: str, config: Config | None = None) -> EditionSettings | None:
        for edition in (config or self.config).editions:
            if edition.language == language:
                return edition
        return None

    def site_name(self, language: str, config: Config | None = None) -> str:
        """The site's name as the edition of this language writes it (editions[].site_name)."""
        config = config or self.config
        edition = self.edition_for(language, config)
        return (edition.site_name if edition is not None and edition.site_name else None) or config.site.name

    def edition_title(self, language: str, config: Config | None = None) -> str:
        config = config or self.config
        edition = self.edition_for(language, config)
        return (edition.title if edition and edition.title else None) or config.site.name

    def sections(self, config: Config | None = None) -> list[str]:
        """Every section an edition names, in the order they first appear."""
        return list(dict.fromkeys(s for e in (config or self.config).editions for s in e.sections))

    def strings(self, language: str) -> UiStrings:
        env = self.environment()
        return self._strings.get(env, language, "web", lambda: load_web_strings(env, language))

    def section_labels(self, language: str) -> dict[str, str]:
        env = self.environment()
        names = self._strings.get(env, language, "email", lambda: load_strings(env, language))
        return {key: names.section(key) for key in self.sections()}

    def edition_choices(self) -> list[dict[str, str]]:
        """One choice per language: its name in that language, and the edition's title when it has one."""
        config = self.config
        choices = []
        for code in self.languages(config):
            edition = self.edition_for(code, config)
            title = edition.title if edition is not None and edition.title else ""
            choices.append({"code": code, "label": str(self.strings(code)["language_name"]), "title": title})
        return choices

    def language_choices(self) -> list[LanguageChoice]:
        return [LanguageChoice(code, str(self.strings(code)["language_name"])) for code in self.languages()]

    def url(self, path: str) -> str:
        """An absolute URL on the public address (never built from the Host header)."""
        return self.config.site.public_url.rstrip("/") + path

    # --- pages -----------------------------------------------------------------------------------

    def page(
        self,
        template: str,
        language: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
        private: bool = True,
        request: Request | None = None,
    ) -> HTMLResponse:
        config = self.config
        strings = self.strings(language)
        values: dict[str, Any] = {
            "lang": language,
            "dir": text_direction(language),
            "strings": strings,
            "site": {"name": self.site_name(language, config), "url": config.site.base_url},
            "languages": self.language_choices(),
            "path": request.url.path if request is not None else "",
            "mailto": config.site.unsubscribe_mailto,
            "feeds": [],
        }
        values.update(context or {})
        try:
            body = self.environment(config).get_template(template).render(values)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template {exc.name} not found (hint: operator copies go in <templates>/web/)") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename or template}:{exc.lineno}: {exc.message}") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{template}: {exc}") from exc
        headers = dict(PAGE_HEADERS)
        if private:
            headers.update(PRIVATE)
        headers["Content-Language"] = language
        return HTMLResponse(body, status_code=status_code, headers=headers)

    def notice(
        self,
        language: str,
        title_key: str,
        text_key: str,
        *,
        status_code: int = 200,
        links: list[tuple[str, str]] | None = None,
        values: Mapping[str, Any] | None = None,
        extra_key: str | None = None,
    ) -> HTMLResponse:
        """A page with a title, a paragraph and links: the answer to most actions and errors."""
        return self.page(
            "web/notice.html.j2",
            language,
            {
                "title_key": title_key,
                "text_key": text_key,
                "extra_key": extra_key,
                "links": links or [],
                "values": dict(values or {}),
            },
            status_code=status_code,
        )
