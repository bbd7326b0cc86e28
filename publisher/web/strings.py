"""Wording of the web pages and of the confirmation email (web/strings.yaml), and the page language.

Merged like email/strings.yaml: the packaged file first, then an operator's file of the same name,
key by key; a language falls back from "ar-SY" to "ar" to English.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import yaml

from publisher.errors import TemplateError
from publisher.render.strings import UiStrings

WEB_STRINGS = "web/strings.yaml"
FALLBACK = "en"


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _tables(env: jinja2.Environment) -> dict[str, Any]:
    loader = env.loader
    loaders = list(loader.loaders) if isinstance(loader, jinja2.ChoiceLoader) else [loader] if loader else []
    tables: dict[str, Any] = {}
    found = False
    for each in reversed(loaders):  # the packaged files are the base; earlier loaders (operator) win
        try:
            source, filename, _ = each.get_source(env, WEB_STRINGS)
        except jinja2.TemplateNotFound:
            continue
        try:
            data = yaml.safe_load(source) or {}
        except yaml.YAMLError as exc:
            raise TemplateError(f"{filename}: not valid YAML: {exc} (hint: quote strings that contain ':')") from exc
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise TemplateError(f"{filename}: expected a mapping of language -> mapping of strings")
        tables = _merge(tables, data)
        found = True
    if not found:
        raise TemplateError(f"{WEB_STRINGS} not found in any template directory (reinstall publisher?)")
    return tables


def load_web_strings(env: jinja2.Environment, language: str) -> UiStrings:
    tables = _tables(env)
    merged: dict[str, Any] = {}
    for tag in dict.fromkeys([FALLBACK, language.split("-")[0].lower(), language]):
        merged = _merge(merged, tables.get(tag, {}))
    return UiStrings(merged)


def choose_language(requested: str | None, accept_language: str | None, available: Sequence[str]) -> str:
    """The page language: ?lang= when it is one of ours, else the best Accept-Language match, else the
    first edition's language. Never echoes an unknown value back."""
    if requested and requested in available:
        return requested
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag:
            weighted.append((-quality, position, tag.strip().lower()))
    for negative_quality, _, tag in sorted(weighted):
        if negative_quality >= 0:
            break
        for language in available:
            if tag == language.lower() or tag.split("-")[0] == language.split("-")[0].lower():
                return language
    return available[0]
