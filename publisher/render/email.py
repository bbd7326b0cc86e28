"""The daily digest of one edition: Jinja2 -> MJML -> HTML (css-inline), plus its own plain-text part.

Rendered once per edition and day. Per-recipient values (unsubscribe and preferences URLs, name,
address) are left as slots (publisher.render.slots) for MessageTemplate to fill, so MJML is never
compiled per subscriber.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Sequence
from datetime import date
from typing import Any

import css_inline
import jinja2
import nh3
from jinja2.nodes import EvalContext
from markupsafe import Markup, escape

from publisher.config import EditionSettings, SiteSettings
from publisher.errors import TemplateError
from publisher.models import Article, RenderedDigest
from publisher.render.htmlmail import compile_mjml, ensure_language, render_template, skip_engine_styles
from publisher.render.layout import ArticleView, arrange, group
from publisher.render.slots import (
    REQUIRED_SLOTS,
    Slot,
    check_tokens,
    conditional,
    defuse,
    defuse_url,
    fill_slots,
    slots_in,
    token,
)
from publisher.render.strings import UiStrings, load_strings
from publisher.render.templates import absolute_url, fill, format_date, text_direction

__all__ = ["ArticleView", "DigestRenderer", "ensure_language", "fill_slots", "localize_digits", "skip_engine_styles"]

MJML_TEMPLATE = "email/digest.mjml.j2"
TEXT_TEMPLATE = "email/digest.txt.j2"
SUMMARY_LIMIT = 360  # characters: a digest teases, the site tells
PREHEADER_LIMIT = 140  # what inbox previews show at most

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def localize_digits(text: str, digits: str) -> str:
    """Latin digits as the edition writes them: "arabic" gives Arabic-Indic digits (٢٠٢٤)."""
    return text.translate(_ARABIC_INDIC) if digits == "arabic" else text


def clean_line(value: str | None) -> str:
    """One line of plain text: control characters dropped, CR/LF and runs of spaces collapsed."""
    if not value:
        return ""
    return defuse(" ".join(_CONTROL.sub(" ", value).split()))


def tagline(title: str, site_name: str) -> str:
    """The edition's title without the site's name the masthead already shows:
    "Levant Today — Morning Digest" -> "Morning Digest"; "" when nothing is left."""
    if title.startswith(site_name):
        return title[len(site_name) :].lstrip(" —–-:|·،")
    return title


def shorten(text: str, limit: int) -> str:
    """Cut at a word boundary before `limit` characters and mark the cut with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,.;:،؛")
    return cut + "…"


def summary_of(article: Article) -> str:
    """The article's summary, else the start of its (already sanitized) HTML as plain text."""
    text = article.summary or html_lib.unescape(nh3.clean(article.content_html, tags=set()))
    return shorten(clean_line(text), SUMMARY_LIMIT)


class DigestRenderer:
    """Renders one edition's digest for a day; reusable across days (holds no per-day state)."""

    def __init__(self, env: jinja2.Environment, site: SiteSettings, edition: EditionSettings) -> None:
        self._env = env
        self._site = site
        self._edition = edition
        self.language = edition.language
        self.site_name = clean_line(edition.site_name) or clean_line(site.name)
        self.direction = text_direction(edition.language)
        self.strings: UiStrings = load_strings(env, edition.language)
        # keep_style_tags: the @media blocks (dark mode, phones) cannot be inlined and must stay in
        # a <style>; the inlined copies serve clients that drop <style> (some webmail, old Outlook).
        self._inliner = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)

    # --- public -------------------------------------------------------------------------------

    def render(self, articles: Sequence[Article], day: date, *, archive_url: str | None) -> RenderedDigest:
        """The digest with slots for per-recipient values. Raises TemplateError with a remedy."""
        context = self.context(articles, day, archive_url=archive_url)
        html = self.compile(self._render(MJML_TEMPLATE, context))
        text = normalize_text(self._render(TEXT_TEMPLATE, context))
        for name, body in ((MJML_TEMPLATE, html), (TEXT_TEMPLATE, text)):
            self._check_slots(name, body)
        return RenderedDigest(
            subject=context["subject"],
            html=html,
            text=text,
            preheader=context["preheader"],
            language=self.language,
            direction=self.direction,
        )

    def render_mjml(self, articles: Sequence[Article], day: date, *, archive_url: str | None) -> str:
        """The MJML source before compiling (for validation with the official compiler)."""
        return self._render(MJML_TEMPLATE, self.context(articles, day, archive_url=archive_url))

    def subject(self, count: int, day: date, lead: str = "") -> str:
        """edition.subject with {site}, {date} (localized), {count} and {lead}, on one line."""
        return clean_line(
            self._edition.subject.format(
                site=self.site_name,
                date=self.digits(format_date(day, "long", locale=self.language)),
                count=self.digits(str(count)),
                lead=lead,
            )
        )

    def digits(self, text: str) -> str:
        return localize_digits(text, self._edition.digits)

    def compile(self, mjml_source: str) -> str:
        """MJML -> HTML -> CSS inlined, with lang and dir checked on <html> and the body wrapper."""
        return compile_mjml(mjml_source, MJML_TEMPLATE, self.language, self.direction, self._inliner)

    def context(self, articles: Sequence[Article], day: date, *, archive_url: str | None) -> dict[str, Any]:
        """Everything the email templates can use (documented in templates/email/README.md)."""
        base = self._site.base_url
        views = [self._view(number, article) for number, article in enumerate(articles, start=1)]

        def label(key: str | None, first: bool) -> str:
            # articles without a section lead the digest unlabeled, or follow as "More news"
            return self.strings.section(key) if key or not first else ""

        sections = group(views, label)
        layout = arrange(views, lambda key, first: self.strings.section(key) if key else "")
        title = clean_line(self._edition.title) or self.site_name
        rtl = self.direction == "rtl"
        return {
            "lang": self.language,
            "dir": self.direction,
            "align": "right" if rtl else "left",
            "opposite": "left" if rtl else "right",
            "arrow": "←" if rtl else "→",
            "site": {
                "name": self.site_name,
                "url": absolute_url(base, base),
                "logo_url": absolute_url(self._site.logo_url, base),
                "public_url": self._site.public_url,
                "postal_address": clean_line(self._site.postal_address),
            },
            "edition": {"id": self._edition.id, "title": title, "language": self.language,
                        "tagline": tagline(title, self.site_name)},
            "day": day,
            "date_label": self.digits(format_date(day, "full", locale=self.language)),
            "subject": self.subject(len(views), day, layout.lead.title if layout.lead else ""),
            "preheader": self.preheader(([layout.lead] if layout.lead else []) + [v for v in views if v is not layout.lead]),
            "articles": views,
            "sections": sections,
            "lead": layout.lead,
            "secondary": layout.secondary,
            "more": layout.more,
            "count": len(views),
            "archive_url": defuse_url(absolute_url(archive_url, self._site.public_url))
            if archive_url
            else "",
            "strings": self.strings,
            "slots": {slot.name.lower(): token(slot) for slot in Slot},
            "if_slot": _if_slot,
        }

    def preheader(self, views: Sequence[ArticleView]) -> str:
        """The inbox preview line: the first headlines, as many as fit."""
        return shorten(" • ".join(view.title for view in views), PREHEADER_LIMIT)

    # --- inside -------------------------------------------------------------------------------

    def _view(self, number: int, article: Article) -> ArticleView:
        base = self._site.base_url
        title = clean_line(article.title)
        author = clean_line(article.author)
        section = clean_line(article.section) or None
        return ArticleView(
            number=number,
            title=title,
            url=defuse_url(absolute_url(article.url, base) or absolute_url(base, base)),
            summary=summary_of(article),
            section=section,
            author=fill(self.strings["by"], author=author) if author else "",
            credit=clean_line(article.source_credit),
            image_url=defuse_url(absolute_url(article.image_url, base)),
            image_alt=clean_line(article.image_alt) or clean_line(article.image_caption) or title,
            caption=clean_line(article.image_caption),
            # sources may mark the day's most important story; Article grows the field there
            featured=bool(getattr(article, "featured", False)),
            section_label=self.strings.section(section) if section else "",
        )

    def _render(self, name: str, context: dict[str, Any]) -> str:
        return render_template(self._env, name, context)

    def _check_slots(self, name: str, body: str) -> None:
        try:
            check_tokens(body)
        except ValueError as exc:
            raise TemplateError(f"{name}: {exc}") from exc
        missing = {slot.value for slot in REQUIRED_SLOTS} - slots_in(body)
        if missing:
            raise TemplateError(
                f"{name} has no unsubscribe link (hint: every digest must carry one: "
                "add {{ slots.unsubscribe_url }})"
            )


@jinja2.pass_eval_context
def _if_slot(eval_ctx: EvalContext, key: str, present: str, absent: str = "") -> str:
    """Template helper: `present` when the recipient has a value for slot `key`, else `absent`.

    In an autoescaped template both branches are escaped unless already Markup ({% set %} blocks),
    and the result is Markup so that it is not escaped twice.
    """
    try:
        slot = Slot(key.upper())
    except ValueError as exc:
        raise TemplateError(
            f"if_slot: unknown slot {key!r}; known: {', '.join(s.value for s in Slot)}"
        ) from exc
    if eval_ctx.autoescape:
        return Markup(conditional(slot, str(escape(present)), str(escape(absent))))
    return conditional(slot, present, absent)


def normalize_text(text: str) -> str:
    """Plain-text part: no trailing spaces, at most one blank line in a row, one final newline."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n") + "\n"
