"""Feed files served from config.feeds.directory at /feeds/<name>, with validators and 304 answers.

Only plain file names inside the directory are served (no path traversal, no dot files such as the
publisher's temporary files, no symlinks leading out). The ETag is a hash of the bytes, so it changes
exactly when the content does; the feed publisher rewrites a file only when its bytes differ.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from publisher.web.context import WebContext

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
MEDIA_TYPES = {
    ".atom.xml": "application/atom+xml; charset=utf-8",
    ".rss.xml": "application/rss+xml; charset=utf-8",
    ".json": "application/feed+json; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
}
CACHE_CONTROL = "public, max-age=300"


def media_type(name: str) -> str | None:
    for suffix, kind in MEDIA_TYPES.items():
        if name.endswith(suffix):
            return kind
    return None


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: W/"x" matches "x"; * matches anything."""
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(part.strip().removeprefix("W/") == wanted for part in header.split(","))


def not_modified_since(header: str, modified: datetime) -> bool:
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return modified.replace(microsecond=0) <= since


class FeedFiles:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    def routes(self) -> list[Route]:
        return [Route("/feeds/{name}", self.serve, methods=["GET", "HEAD"])]

    def _locate(self, name: str) -> Path | None:
        if not _NAME.match(name) or ".." in name or media_type(name) is None:
            return None
        config = self.web.config
        directory = config.path(config.feeds.directory).resolve()
        path = (directory / name).resolve()
        if path.parent != directory or not path.is_file():
            return None
        return path

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
        etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
        headers = {
            "ETag": etag,
            "Last-Modified": format_datetime(modified.replace(microsecond=0), usegmt=True),
            "Cache-Control": CACHE_CONTROL,
            "Access-Control-Allow-Origin": "*",
            "X-Content-Type-Options": "nosniff",
        }
        # RFC 9110 13.2.2: If-None-Match decides when present; If-Modified-Since only without it.
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None:
            fresh = etag_matches(if_none_match, etag)
        else:
            since = request.headers.get("if-modified-since")
            fresh = since is not None and not_modified_since(since, modified)
        if fresh:
            return Response(status_code=304, headers=headers)
        body = b"" if request.method == "HEAD" else content
        response = Response(body, media_type=media_type(name), headers=headers)
        if request.method == "HEAD":
            response.headers["Content-Length"] = str(len(content))
        return response
