"""The confirmation email of a new subscription (double opt-in): HTML and text, then one RFC 5322 message.

Same rendering path as the digest: Jinja2 -> MJML (mjml-python) -> css-inline, with lang/dir on
<html> and the body wrapper. One message at a time, so email.message.EmailMessage is fast enough here.
Its wording comes from the caller (the web face loads it from web/strings.yaml).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

import css_inline
import jinja2

from publisher.config import SiteSettings
from publisher.render.email import clean_line, normalize_text
from publisher.render.htmlmail import compile_mjml, render_template
from publisher.render.templates import absolute_url, fill, text_direction

MJML_TEMPLATE = "email/confirm.mjml.j2"
TEXT_TEMPLATE = "email/confirm.txt.j2"


@dataclass(frozen=True)
class RenderedConfirmation:
    subject: str
    html: str
    text: str
    language: str
    direction: str


class ConfirmationRenderer:
    """Renders the confirmation email for one language; reusable across requests."""

    def __init__(self, env: jinja2.Environment, site: SiteSettings, language: str, strings: Mapping[str, Any]) -> None:
        self._env = env
        self._site = site
        self.language = language
        self.direction = text_direction(language)
        self._strings = strings
        self._inliner = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)

    def render(self, *, confirm_url: str, edition_title: str, name: str, expires_hours: float) -> RenderedConfirmation:
        """Raises TemplateError with a remedy when a template is missing or broken."""
        context = self.context(confirm_url=confirm_url, edition_title=edition_title, name=name,
                               expires_hours=expires_hours)
        html = self._compile(self._render(MJML_TEMPLATE, context))
        text = normalize_text(self._render(TEXT_TEMPLATE, context))
        return RenderedConfirmation(context["subject"], html, text, self.language, self.direction)

    def render_mjml(self, **values: Any) -> str:
        """The MJML source before compiling (for validation with the official compiler)."""
        return self._render(MJML_TEMPLATE, self.context(**values))

    def context(self, *, confirm_url: str, edition_title: str, name: str, expires_hours: float) -> dict[str, Any]:
        hours = int(expires_hours) if float(expires_hours).is_integer() else round(expires_hours, 1)
        site_name = clean_line(self._site.name)
        edition = clean_line(edition_title) or site_name
        rtl = self.direction == "rtl"
        return {
            "lang": self.language,
            "dir": self.direction,
            "align": "right" if rtl else "left",
            "site": {
                "name": site_name,
                "url": absolute_url(self._site.base_url, self._site.base_url),
                "logo_url": absolute_url(self._site.logo_url, self._site.base_url),
            },
            "edition_title": edition,
            "name": clean_line(name),
            "confirm_url": confirm_url,
            "hours": hours,
            "strings": self._strings,
            "subject": clean_line(fill(str(self._strings["confirm_email_subject"]), site=site_name, edition=edition)),
        }

    def _render(self, name: str, context: dict[str, Any]) -> str:
        return render_template(self._env, name, context)

    def _compile(self, source: str) -> str:
        return compile_mjml(source, MJML_TEMPLATE, self.language, self.direction, self._inliner)


def build_confirmation_message(
    content: RenderedConfirmation,
    *,
    sender: str,
    recipient: str,
    message_id: str,
    reply_to: str | None = None,
    date: datetime | None = None,
) -> bytes:
    """A complete multipart/alternative message (text, then HTML), CRLF line ends, bodies in
    quoted-printable so that no line exceeds 76 characters. Raises ValueError for unusable headers."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = recipient
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = content.subject
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message["Message-ID"] = message_id
    # RFC 3834: sent automatically in answer to a form; auto-responders must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(content.text, cte="quoted-printable")
    message.add_alternative(content.html, subtype="html", cte="quoted-printable")
    message["Content-Language"] = content.language  # after set_content, which drops Content-* headers
    return message.as_bytes()
