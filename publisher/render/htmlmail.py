"""The shared path of every email template: Jinja2 -> MJML -> HTML with lang/dir checked -> CSS inlined."""

from __future__ import annotations

import re
from typing import Any

import css_inline
import jinja2
from mjml import mjml2html

from publisher.errors import TemplateError


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render one template; every Jinja failure becomes a TemplateError naming the file and line."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"template {exc.name} not found (hint: the packaged one ships with publisher; "
            "an operator copy goes in <templates>/email/)"
        ) from exc
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{name}: {exc.message} (hint: see the variables in templates/email/README.md)") from exc
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{name}: {exc}") from exc


def compile_mjml(source: str, template_name: str, language: str, direction: str, inliner: css_inline.CSSInliner) -> str:
    try:
        compiled = mjml2html(protect_attributes(source))
    except Exception as exc:  # the Rust binding raises plain exceptions for bad MJML
        raise TemplateError(f"{template_name} is not valid MJML: {exc} (hint: check the tags)") from exc
    if _REMOTE_FONT.search(compiled):
        raise TemplateError(
            f"{template_name} makes the engine import a web font (hint: a font-family names one of MJML's "
            "default web fonts, such as Roboto or Ubuntu; remote fonts track readers and Gmail strips them)"
        )
    compiled = ensure_language(compiled, language, direction)
    # css-inline parses the document, so the numeric references written by protect_attributes come
    # out as the characters themselves
    return str(inliner.inline(skip_engine_styles(compiled)))


_TAG_OPEN = re.compile(r"<[A-Za-z][^<>]*>")
_ATTRIBUTE_VALUE = re.compile(r'="([^"]*)"')
_MJ_TITLE = re.compile(r"(<mj-title>)(.*?)(</mj-title>)", re.DOTALL)
_REMOTE_FONT = re.compile(r"@import\s+url|<link\b[^>]*\bfonts\.", re.IGNORECASE)


def protect_attributes(source: str) -> str:
    """Every non-ASCII character of an attribute value written as a numeric character reference.

    mrml (the Rust engine behind mjml-python 1.4) writes combining marks and format characters of
    attribute values in Rust's debug form: alt="حب\\u{651}ات" for "حبّات", Cafe\\u{301}, \\u{200f}.
    It passes character references through untouched, so written as &#x651; they survive, in every
    attribute (alt, title, aria-label) of the MJML tags and of the HTML inside mj-text alike.
    """

    def value(match: re.Match[str]) -> str:
        text = match.group(1)
        if text.isascii():
            return match.group(0)
        return '="' + _references(text) + '"'

    def title(match: re.Match[str]) -> str:  # the engine copies mj-title into the body's aria-label
        return match.group(1) + _references(match.group(2)) + match.group(3)

    protected = _TAG_OPEN.sub(lambda tag: _ATTRIBUTE_VALUE.sub(value, tag.group(0)), source)
    return _MJ_TITLE.sub(title, protected)


def _references(text: str) -> str:
    return "".join(char if char.isascii() else f"&#x{ord(char):x};" for char in text)


_HTML_TAG = re.compile(r"<html\b[^>]*>", re.IGNORECASE)
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def ensure_language(html: str, language: str, direction: str) -> str:
    """Make sure <html> and the body wrapper carry lang and dir, whatever the MJML engine did."""
    attrs = f'lang="{language}" dir="{direction}"'
    head = _HTML_TAG.search(html)
    if head and not re.search(r"\bdir=", head.group(0)):
        html = html[: head.start()] + f"<html {attrs}" + html[head.start() + 5 :]
    body = _BODY_TAG.search(html)
    if body:
        wrapper = re.search(r'<div\b[^>]*aria-roledescription="email"[^>]*>', html[body.end() :])
        if wrapper is None or "dir=" not in wrapper.group(0):
            html = html[: body.end()] + f"<div {attrs}>" + html[body.end() :]
            html = html.replace("</body>", "</div></body>", 1)
    return html


OWN_STYLES_MARK = "/* publisher */"
_STYLE_TAG = re.compile(r"<style\b([^>]*)>(.*?)</style>", re.IGNORECASE | re.DOTALL)


def skip_engine_styles(html: str) -> str:
    """Keep MJML's own reset styles in <style> only, not inlined into every cell.

    Inlining them adds ~40 % to the HTML (Gmail clips messages over 102 KB) and the official MJML
    compiler does not inline them either. Our template's styles start with OWN_STYLES_MARK and are
    inlined: they carry the colors and typography that must survive clients which drop <style>.
    """

    def mark(match: re.Match[str]) -> str:
        attrs, css = match.group(1), match.group(2)
        if OWN_STYLES_MARK in css or "data-css-inline" in attrs:
            return match.group(0)
        return f'<style{attrs} data-css-inline="ignore">{css}</style>'

    return _STYLE_TAG.sub(mark, html)


