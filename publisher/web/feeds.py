"""Feed files served from config.feeds.directory at /feeds/<name>, as a CDN would serve them:
validators and 304 answers, gzip or brotli when the client asks, and WebSub Link headers.

Only plain names inside the directory are served, at most one folder deep (`ar/politics.atom.xml`):
no path traversal, no dot files such as the publisher's temporary files and caches, no symlinks
leading out, and only the suffixes of the feed-format registry and OPML. The ETag is a hash of the
bytes, so it changes exactly when the content does (the feed publisher rewrites a file only when its
bytes differ); a compressed answer has its own ETag (RFC 9110 8.8.3: representations differ).
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections import OrderedDict
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import brotli
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from publisher.render.feeds.build import feed_url
from publisher.render.feeds.formats import format_of_file
from publisher.render.feeds.opml import MEDIA_TYPE as OPML_MEDIA_TYPE
from publisher.render.feeds.opml import SUFFIX as OPML_SUFFIX
from publisher.web.context import WebContext

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
CACHE_CONTROL = "public, max-age=300"
ENCODINGS = ("br", "gzip")  # preferred first when the client weighs them equally
_CACHED_VARIANTS = 64


def media_type(name: str) -> str | None:
    """The Content-Type of a served file, from the registry's suffixes (and OPML's), or None."""
    spec = format_of_file(name)
    if spec is not None:
        return spec.content_type
    if name.endswith(OPML_SUFFIX) and len(name) > len(OPML_SUFFIX):
        return f"{OPML_MEDIA_TYPE}; charset=utf-8"
    return None


def etag_matches(header: str, etags: set[str]) -> bool:
    """If-None-Match uses the weak comparison: W/"x" matches "x"; * matches anything."""
    if header.strip() == "*":
        return True
    wanted = {etag.removeprefix("W/") for etag in etags}
    return any(part.strip().removeprefix("W/") in wanted for part in header.split(","))


def not_modified_since(header: str, modified: datetime) -> bool:
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return modified.replace(microsecond=0) <= since


def choose_encoding(header: str | None) -> str | None:
    """The content coding to answer with for an Accept-Encoding header (RFC 9110 12.5.3): the
    acceptable one of br and gzip with the highest weight, br on a tie; None for identity."""
    if not header:
        return None
    weights: dict[str, float] = {}
    for part in header.split(","):
        token, _, params = part.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if token.strip():
            weights[token.strip().lower()] = weight
    best: tuple[float, str] | None = None
    for encoding in ENCODINGS:
        weight = weights.get(encoding, weights.get("*", 0.0))
        if weight > 0 and (best is None or weight > best[0]):
            best = (weight, encoding)
    return best[1] if best else None


def compress(content: bytes, encoding: str) -> bytes:
    """Deterministic output (gzip without a timestamp), so a compressed ETag means one body."""
    if encoding == "br":
        compressed: bytes = brotli.compress(content, quality=9)
        return compressed
    return gzip.compress(content, compresslevel=9, mtime=0)


class FeedFiles:
    def __init__(self, web: WebContext) -> None:
        self.web = web
        self._variants: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def routes(self) -> list[Route]:
        return [Route("/feeds/{name:path}", self.serve, methods=["GET", "HEAD"])]

    def _locate(self, name: str) -> Path | None:
        parts = name.split("/")
        if not 1 <= len(parts) <= 2 or not all(_NAME.match(p) and ".." not in p for p in parts):
            return None
        if media_type(parts[-1]) is None:
            return None
        config = self.web.config
        directory = config.path(config.feeds.directory).resolve()
        path = (directory / name).resolve()
        try:
            inside = path.relative_to(directory).parts == tuple(parts)  # a symlink resolves elsewhere
        except ValueError:
            return None
        if not inside or not path.is_file():
            return None
        return path

    def _compressed(self, digest: str, content: bytes, encoding: str) -> bytes:
        key = (digest, encoding)
        body = self._variants.get(key)
        if body is None:
            body = compress(content, encoding)
            self._variants[key] = body
            while len(self._variants) > _CACHED_VARIANTS:
                self._variants.popitem(last=False)
        else:
            self._variants.move_to_end(key)
        return body

    def serve(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        path = self._locate(name)
        if path is None:
            return Response("Not found\n", status_code=404, media_type="text/plain")
        try:
            content = path.read_bytes()
            modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except OSError:
            return Response("Not found\n", status_code=404, media_type="text/plain")
        digest = hashlib.sha256(content).hexdigest()[:32]
        encoding = choose_encoding(request.headers.get("accept-encoding"))
        etag = f'"{digest}-{encoding}"' if encoding else f'"{digest}"'
        headers = {
            "ETag": etag,
            "Last-Modified": format_datetime(modified.replace(microsecond=0), usegmt=True),
            "Cache-Control": CACHE_CONTROL,
            "Vary": "Accept-Encoding",
            "Access-Control-Allow-Origin": "*",
            "X-Content-Type-Options": "nosniff",
        }
        links = self._links(name)
        if links:
            headers["Link"] = links
        # RFC 9110 13.2.2: If-None-Match decides when present; If-Modified-Since only without it.
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None:
            # the same bytes under another coding are the same news: no need to send them again
            variants = {f'"{digest}"'} | {f'"{digest}-{e}"' for e in ENCODINGS}
            fresh = etag_matches(if_none_match, variants)
        else:
            since = request.headers.get("if-modified-since")
            fresh = since is not None and not_modified_since(since, modified)
        if fresh:
            return Response(status_code=304, headers=headers)
        body = self._compressed(digest, content, encoding) if encoding else content
        if encoding:
            headers["Content-Encoding"] = encoding
        response = Response(b"" if request.method == "HEAD" else body, media_type=media_type(name), headers=headers)
        if request.method == "HEAD":
            response.headers["Content-Length"] = str(len(body))
        return response

    def _links(self, name: str) -> str:
        """WebSub discovery (W3C WebSub 4): rel=hub for each hub, rel=self for the topic URL."""
        if format_of_file(name) is None:
            return ""
        feeds = self.web.config.feeds
        # an archive document never changes: no hub has anything to deliver for it
        hubs = [] if ".archive/" in name else dict.fromkeys(feeds.websub_hubs)
        links = [f'<{hub}>; rel="hub"' for hub in hubs]
        links.append(f'<{feed_url(feeds, name)}>; rel="self"')
        return ", ".join(links)
