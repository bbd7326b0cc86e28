"""Wording of the web pages and of the confirmation email (web/strings.yaml), and the page language.

Merged like email/strings.yaml: the packaged file first, then an operator's file of the same name,
key by key; a language falls back from "ar-SY" to "ar" to English.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

import jinja2

from publisher.render.strings import UiStrings, load_table, template_loaders

WEB_STRINGS = "web/strings.yaml"
EMAIL_STRINGS = "email/strings.yaml"  # section names come from there


def files_stamp(env: jinja2.Environment, names: Sequence[str]) -> tuple[tuple[str, int | None], ...]:
    """Which of these template files exist in the environment's directories, and when they changed:
    cached wording is reused until this changes (an operator edits strings.yaml, the page follows)."""
    stamp: list[tuple[str, int | None]] = []
    for loader in template_loaders(env):
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


def load_web_strings(env: jinja2.Environment, language: str) -> UiStrings:
    return load_table(env, WEB_STRINGS, language)


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
