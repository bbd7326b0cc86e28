"""Wording of the web pages and of the confirmation email (web/strings.yaml), and the page language.

Merged like email/strings.yaml: the packaged file first, then an operator's file of the same name,
key by key; a language falls back from "ar-SY" to "ar" to English.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import jinja2
import yaml

from publisher.errors import TemplateError
from publisher.render.strings import UiStrings, merge_tables

WEB_STRINGS = "web/strings.yaml"
EMAIL_STRINGS = "email/strings.yaml"  # section names come from there
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FALLBACK = "en"


def _loaders(env: jinja2.Environment) -> list[jinja2.BaseLoader]:
    loader = env.loader
    return list(loader.loaders) if isinstance(loader, jinja2.ChoiceLoader) else [loader] if loader else []


def files_stamp(env: jinja2.Environment, names: Sequence[str]) -> tuple[tuple[str, int | None], ...]:
    """Which of these template files exist in the environment's directories, and when they changed:
    cached wording is reused until this changes (an operator edits strings.yaml, the page follows)."""
    stamp: list[tuple[str, int | None]] = []
    for loader in _loaders(env):
        for directory in getattr(loader, "searchpath", []):
            for name in names:
                path = os.path.join(directory, name)
                try:
                    stamp.append((path, os.stat(path).st_mtime_ns))
                except OSError:
                    stamp.append((path, None))
    return tuple(stamp)


class StringsCache:
    """Parsed wording per (environment, language, kind), dropped when a strings file changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, str, str], tuple[object, UiStrings]] = {}

    def get(self, env: jinja2.Environment, language: str, kind: str, load: Callable[[], UiStrings]) -> UiStrings:
        stamp = files_stamp(env, (WEB_STRINGS, EMAIL_STRINGS))
        key = (id(env), language, kind)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] == stamp:
            return entry[1]
        value = load()
        with self._lock:
            self._entries[key] = (stamp, value)
        return value


def _tables(env: jinja2.Environment) -> dict[str, Any]:
    loaders = _loaders(env)
    tables: dict[str, Any] = {}
    found = False
    for each in reversed(loaders):  # the packaged files are the base; earlier loaders (operator) win
        try:
            source, filename, _ = each.get_source(env, WEB_STRINGS)
        except jinja2.TemplateNotFound:
            continue
        try:
            data = yaml.load(source, Loader=_YAML_LOADER) or {}
        except yaml.YAMLError as exc:
            raise TemplateError(f"{filename}: not valid YAML: {exc} (hint: quote strings that contain ':')") from exc
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise TemplateError(f"{filename}: expected a mapping of language -> mapping of strings")
        tables = merge_tables(tables, data)
        found = True
    if not found:
        raise TemplateError(f"{WEB_STRINGS} not found in any template directory (reinstall publisher?)")
    return tables


def load_web_strings(env: jinja2.Environment, language: str) -> UiStrings:
    tables = _tables(env)
    merged: dict[str, Any] = {}
    for tag in dict.fromkeys([FALLBACK, language.split("-")[0].lower(), language]):
        merged = merge_tables(merged, tables.get(tag, {}))
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
