"""UI strings of the digest ("Read more", "Unsubscribe" ...) per language, overridable by the operator.

They live in email/strings.yaml: the packaged file is read first, then an operator's file of the
same name, key by key, so an operator can change one phrase or add a language without copying the
rest. A language falls back from its full tag ("ar-SY") to its primary tag ("ar") to English.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
import yaml

from publisher.errors import TemplateError

STRINGS_TEMPLATE = "email/strings.yaml"
FALLBACK_LANGUAGE = "en"


class UiStrings(dict[str, Any]):
    """A language's strings; a key no file defines reads as its own name, so a gap shows, not fails."""

    def __missing__(self, key: str) -> str:
        return key.replace("_", " ")

    def section(self, section: str | None) -> str:
        """The heading for a section id: the translation under `sections:`, else the id, capitalized."""
        if not section:
            return str(self["other_section"])
        names = self.get("sections") or {}
        label = names.get(section) if isinstance(names, Mapping) else None
        return str(label) if label else section.replace("-", " ").replace("_", " ").capitalize()


def template_loaders(env: jinja2.Environment) -> list[jinja2.BaseLoader]:
    """The environment's loaders, operator's first, packaged last."""
    loader = env.loader
    if isinstance(loader, jinja2.ChoiceLoader):
        return list(loader.loaders)
    return [loader] if loader is not None else []


def _read(env: jinja2.Environment, loader: jinja2.BaseLoader, name: str) -> tuple[dict[str, Any], str] | None:
    try:
        source, filename, _ = loader.get_source(env, name)
    except jinja2.TemplateNotFound:
        return None
    where = filename or name
    try:
        data = yaml.safe_load(source) or {}
    except yaml.YAMLError as exc:
        raise TemplateError(f"{where}: not valid YAML: {exc} (hint: quote strings that contain ':')") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise TemplateError(
            f"{where}: expected a mapping of language -> mapping of strings (en: {{read_more: ...}})"
        )
    return data, where


def merge_tables(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Nested merge: `override` wins key by key (an operator's strings.yaml over the packaged one)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_tables(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load_strings(env: jinja2.Environment, language: str) -> UiStrings:
    """The email's strings for `language`, merged from every email/strings.yaml the environment can see."""
    return load_table(env, STRINGS_TEMPLATE, language)


def load_table(env: jinja2.Environment, name: str, language: str) -> UiStrings:
    """The strings for `language` from every copy of the wording file `name` (email/strings.yaml,
    web/strings.yaml): the packaged one is the base, an operator's wins key by key, and a language
    falls back from "ar-SY" to "ar" to English."""
    tables: dict[str, Any] = {}
    found = False
    # ChoiceLoader tries loaders first to last; the last one (packaged) is the base, earlier ones win.
    for loader in reversed(template_loaders(env)):
        result = _read(env, loader, name)
        if result is not None:
            found = True
            tables = merge_tables(tables, result[0])
    if not found:
        raise TemplateError(f"{name} not found in any template directory (reinstall publisher?)")
    chain = [FALLBACK_LANGUAGE]
    primary = language.split("-")[0].lower()
    for tag in (primary, language):
        if tag not in chain:
            chain.append(tag)
    strings: dict[str, Any] = {}
    for tag in chain:
        strings = merge_tables(strings, tables.get(tag, {}))
    return UiStrings(strings)
