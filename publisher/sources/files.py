"""A directory of articles: Markdown files with YAML front matter, or JSON files with the same keys.

---
title: Water talks open in Amman
date: 2024-12-02 08:30          # site time zone unless it names an offset
language: en
section: politics
author: Rana Haddad
source: Levant - Agencies       # the credit line
image: /media/2024/12/02/amman-talks.jpg
image_caption: Delegates arrive at the conference centre
image_alt: Delegates walking into a conference hall
summary: One or two plain sentences.
url: /en/water-talks-amman      # optional; default: <site>/<language>/<file-name-slug>
id: water-talks-amman           # optional, stored as "<source name>:water-talks-amman"; default: the URL
updated: 2024-12-02 10:00       # optional
---
Body in Markdown.
"""

from __future__ import annotations

import difflib
import html
import json
import re
import unicodedata
from collections.abc import Callable, Collection
from datetime import UTC, datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urljoin

import yaml
from pydantic import Field

from publisher.config.base import SourceSettingsBase
from publisher.errors import SourceError
from publisher.models import SourceResult, SourceState
from publisher.sources.base import SourceContext, SourceKind
from publisher.sources.fetching import local_path
from publisher.sources.normalize import (
    ItemSkipped,
    RawItem,
    coerce_datetime,
    normalize_items,
    normalize_language,
)

ARTICLE_SUFFIXES = (".md", ".markdown", ".json")
KNOWN_KEYS = frozenset(
    {"title", "date", "language", "section", "author", "source", "image", "image_caption", "image_alt",
     "summary", "url", "id", "updated", "draft", "content_html"}
)  # fmt: skip
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
@cache
def _markdown() -> Any:
    from markdown_it import MarkdownIt  # imported when a Markdown file is read, not by every command

    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


class FilesSourceSettings(SourceSettingsBase):
    kind: Literal["files"]
    path: str = Field(description="a directory of Markdown (front matter) or JSON articles")


def utc_now() -> datetime:
    return datetime.now(UTC)


def slugify(name: str) -> str:
    """A stable URL segment from a file name: lower case, words joined by '-', letters of any script kept."""
    text = unicodedata.normalize("NFKC", name).lower()
    text = re.sub(r"[^\w]+", "-", text, flags=re.UNICODE).replace("_", "-")
    return re.sub(r"-{2,}", "-", text).strip("-") or "article"


def render_markdown(text: str) -> str:
    return str(_markdown().render(text))


class FilesSource:
    """Reads every .md/.markdown/.json file under one directory (recursively) on each fetch.

    Names starting with '.' or '_' are ignored (drafts, editor files), and so is `draft: true`.
    """

    def __init__(
        self,
        settings: FilesSourceSettings,
        *,
        site_base_url: str,
        site_timezone: tzinfo,
        default_language: str | None = None,
        languages: Collection[str] = (),
        base_dir: Path | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self._site = site_base_url.rstrip("/")
        self._zone = site_timezone
        self._default_language = default_language
        self._languages = tuple(languages)
        self.directory = local_path(settings.path, base_dir)
        self._clock = clock

    def fetch(self, state: SourceState) -> SourceResult:
        paths = self._article_paths()
        items: list[RawItem] = []
        warnings: list[str] = []
        for path in paths:
            where = path.relative_to(self.directory).as_posix()
            try:
                item, item_warnings = self._read(path, where)
            except ItemSkipped as skipped:
                warnings.append(str(skipped))
                continue
            warnings.extend(item_warnings)
            if item is not None:
                items.append(item)
        if not paths:
            warnings.append(f"{self.directory} holds no {', '.join(ARTICLE_SUFFIXES)} files")
        articles, normalize_warnings = normalize_items(
            items,
            source_name=self.name,
            zone=self._zone,
            now=self._clock(),
            fallback_language=self._default_language,
            language_hint="add language: en (or ar, ...) to its front matter",
            languages=self._languages,
        )
        return SourceResult(source_name=self.name, articles=articles, warnings=warnings + normalize_warnings)

    def _article_paths(self) -> list[Path]:
        setting = f"sources[{self.name}].path"
        if not self.directory.exists():
            raise SourceError(
                self.name,
                f"no such directory: {self.directory}; check {setting} in config.yaml "
                "(a relative path is relative to config.yaml's directory)",
            )
        if not self.directory.is_dir():
            raise SourceError(
                self.name, f"{self.directory} is not a directory; check {setting} in config.yaml"
            )
        try:
            return sorted(
                path
                for path in self.directory.rglob("*")
                if path.suffix.lower() in ARTICLE_SUFFIXES
                and path.is_file()
                and not any(part.startswith((".", "_")) for part in path.relative_to(self.directory).parts)
            )
        except OSError as exc:
            raise SourceError(
                self.name, f"cannot list {self.directory}: {exc.strerror}; check permissions"
            ) from exc

    def _read(self, path: Path, where: str) -> tuple[RawItem | None, list[str]]:
        try:
            text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
        except UnicodeDecodeError as exc:
            raise ItemSkipped(
                f"{where}: skipped: not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from exc
        except OSError as exc:
            raise ItemSkipped(f"{where}: skipped: cannot read it ({exc.strerror})") from exc
        if path.suffix.lower() == ".json":
            meta = _json_meta(text, where)
            body_html = meta.get("content_html")
            body_html = body_html if isinstance(body_html, str) else ""
        else:
            meta, markdown = _front_matter(text, where)
            body_html = render_markdown(markdown)
        if meta.get("draft") is True:
            return None, []
        warnings = [
            f"{where}: unknown key {key!r} ignored" + _suggestion(str(key))
            for key in meta
            if key not in KNOWN_KEYS
        ]
        return self._item(meta, body_html, path, where), warnings

    def _item(self, meta: dict[str, Any], body_html: str, path: Path, where: str) -> RawItem:
        try:
            published = coerce_datetime(meta.get("date"))
            updated = coerce_datetime(meta.get("updated"))
        except ValueError as exc:
            raise ItemSkipped(f"{where}: skipped: {exc}") from exc
        language = normalize_language(_string(meta.get("language"))) or normalize_language(
            self._default_language
        )
        url = _string(meta.get("url"))
        if url:
            url = urljoin(self._site + "/", url)
        else:
            # stable: depends only on the language and the file name, never on the file's contents
            url = f"{self._site}/{quote(language or 'und')}/{quote(slugify(path.stem))}"
        image = _string(meta.get("image"))
        summary = _string(meta.get("summary"))
        return RawItem(
            where=where,
            url=url,
            title=_string(meta.get("title")),
            guid=_string(meta.get("id")),
            published=published,
            updated=updated,
            language=language,
            section=_string(meta.get("section")),
            author=_string(meta.get("author")),
            source_credit=_string(meta.get("source")),
            summary_html=html.escape(summary) if summary else None,  # front matter is plain text
            content_html=body_html,
            image_url=urljoin(self._site + "/", image) if image else None,
            image_caption=_string(meta.get("image_caption")),
            image_alt=_string(meta.get("image_alt")),
        )


def _string(value: object) -> str | None:
    """YAML turns `id: 2024` into an int and `title: yes` into a bool: keep what the author wrote."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).strip()
    return text or None


def _suggestion(key: str) -> str:
    close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _front_matter(text: str, where: str) -> tuple[dict[str, Any], str]:
    match = _FRONT_MATTER.match(text)
    if match is None:
        raise ItemSkipped(
            f"{where}: skipped: no front matter (start the file with a '---' line, then title:, date:, "
            "language: ..., then another '---' line)"
        )
    try:
        meta = yaml.safe_load(match.group(1) or "")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 2}" if mark is not None else ""  # +1 for 0-based, +1 for the '---'
        problem = getattr(exc, "problem", None) or str(exc)
        raise ItemSkipped(
            f"{where}: skipped: its front matter is not valid YAML{line} ({problem}); "
            "quote values that contain ': ' or start with a special character"
        ) from exc
    if not isinstance(meta, dict):
        raise ItemSkipped(f"{where}: skipped: its front matter must be key: value lines")
    return meta, text[match.end() :]


def _json_meta(text: str, where: str) -> dict[str, Any]:
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ItemSkipped(
            f"{where}: skipped: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    if not isinstance(meta, dict):
        raise ItemSkipped(f"{where}: skipped: it must be a JSON object with title, date, language ...")
    return meta


def _build(settings: FilesSourceSettings, context: SourceContext) -> FilesSource:
    return FilesSource(
        settings,
        site_base_url=context.site_base_url,
        site_timezone=context.site_timezone,
        default_language=context.default_language,
        languages=context.languages,
        base_dir=context.base_dir,
    )


KIND = SourceKind("files", FilesSourceSettings, _build, "a folder (path) of Markdown or JSON articles")
