"""Getting bytes from an http(s) URL or a local file, with a deadline, conditional requests, and
errors that tell the operator what to do."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import requests
import urllib3

from publisher import __version__
from publisher.errors import SourceError

MAX_BYTES = 20 * 1024 * 1024  # a feed or an article page is far smaller; more means something is wrong


def user_agent(site_url: str | None = None) -> str:
    """publisher/<installed version>, with the site's address when known (who to ask about us)."""
    about = f"+{site_url}" if site_url else "newsletter and feed syndication"
    return f"publisher/{__version__} ({about})"


USER_AGENT = user_agent()
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Download:
    body: bytes
    url: str  # where the bytes came from, after redirects: the base for relative links
    content_type: str  # lower case, without parameters; "" when unknown
    charset: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False


def is_remote(location: str) -> bool:
    return location.strip().lower().startswith(("http://", "https://"))


def local_path(location: str, base_dir: Path | None) -> Path:
    """A file path or file:// URL as a Path; relative paths are relative to base_dir (the config file's
    directory) when given."""
    location = location.strip()
    if location.lower().startswith("file:"):
        parts = urlsplit(location)
        path = Path(url2pathname(unquote(parts.path)))
    else:
        path = Path(location).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def _status_hint(status: int, setting: str) -> str:
    if status in (401, 403):
        return f"the server refuses access; check {setting} in config.yaml or ask the publisher to allow us"
    if status in (404, 410):
        return f"nothing at that address (moved or removed?); check {setting} in config.yaml"
    if status == 429:
        return "the server is rate-limiting us; collect less often (schedule.collect) or retry later"
    if status >= 500:
        return f"the server failed; retry later or check {setting} in config.yaml"
    return f"check {setting} in config.yaml"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer of any status, its body read within the deadline (none for a 304)."""

    status: int
    headers: Mapping[str, str]  # case-insensitive (requests' CaseInsensitiveDict)
    body: bytes
    url: str  # after redirects


def get(
    url: str,
    *,
    source_name: str,
    setting: str,
    timeout: float,
    session: requests.Session | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    accept: str = "*/*",
    auth: tuple[str, str] | None = None,
) -> Answer:
    """The one way a source talks HTTP. Connecting and each wait for data are limited to `timeout`
    seconds, and the body download is abandoned once `timeout` seconds have passed since the start
    (a server dripping bytes cannot hold a collection hostage). Conditional when etag/last_modified
    are given; our user agent unless the session names its own.

    `setting` names the config key to fix in messages, e.g. "sources[site-en].url". Raises
    SourceError when no answer arrives; any HTTP status is returned for the caller to judge.
    """
    headers = {"Accept": accept}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    owned = session is None
    http = requests.Session() if session is None else session
    if str(http.headers.get("User-Agent", "")).startswith("python-requests"):  # not chosen by the caller
        headers["User-Agent"] = USER_AGENT
    deadline = time.monotonic() + timeout
    try:
        try:
            response = http.get(url, headers=headers, auth=auth, timeout=(timeout, timeout), stream=True)
        except requests.Timeout as exc:
            raise SourceError(
                source_name,
                f"no answer from {url} within {timeout:g} s; the server is slow or down: retry later, "
                f"or raise {setting.rsplit('.', 1)[0]}.timeout in config.yaml",
            ) from exc
        except requests.ConnectionError as exc:
            raise SourceError(
                source_name,
                f"cannot connect to {url} ({root_cause(exc)}); check {setting} in config.yaml "
                "and that the server is up",
            ) from exc
        except requests.RequestException as exc:
            raise SourceError(
                source_name, f"cannot fetch {url}: {exc}; check {setting} in config.yaml"
            ) from exc
        with response:
            body = b""
            if response.status_code != 304:
                body = read_body(response, deadline=deadline, source_name=source_name, url=url, timeout=timeout)
            return Answer(response.status_code, response.headers, body, response.url)
    finally:
        if owned:
            http.close()


def download(
    url: str,
    *,
    source_name: str,
    setting: str,
    timeout: float,
    session: requests.Session | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    accept: str = "*/*",
) -> Download:
    """GET `url` (see get) for a body: a 304 gives Download(not_modified=True); any status from 400
    on is a SourceError with a hint."""
    answer = get(
        url,
        source_name=source_name,
        setting=setting,
        timeout=timeout,
        session=session,
        etag=etag,
        last_modified=last_modified,
        accept=accept,
    )
    if answer.status == 304:
        return Download(
            body=b"",
            url=answer.url,
            content_type="",
            etag=answer.headers.get("ETag") or etag,
            last_modified=answer.headers.get("Last-Modified") or last_modified,
            not_modified=True,
        )
    if answer.status >= 400:
        raise SourceError(source_name, f"HTTP {answer.status} from {url}: {_status_hint(answer.status, setting)}")
    content_type, _, params = (answer.headers.get("Content-Type") or "").partition(";")
    return Download(
        body=answer.body,
        url=answer.url,
        content_type=content_type.strip().lower(),
        charset=_charset(params),
        etag=answer.headers.get("ETag"),
        last_modified=answer.headers.get("Last-Modified"),
    )


def read_body(
    response: requests.Response, *, deadline: float, source_name: str, url: str, timeout: float
) -> bytes:
    """Read the body so that a server dripping bytes cannot outlast the deadline: read1 returns as
    soon as any data arrives (iter_content would wait for a whole chunk)."""
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := response.raw.read1(_CHUNK, decode_content=True):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BYTES:
                raise SourceError(
                    source_name,
                    f"{url} sent more than {MAX_BYTES // (1024 * 1024)} MB; is it really a feed?",
                )
            if time.monotonic() > deadline:
                raise SourceError(
                    source_name,
                    f"{url} did not finish sending within {timeout:g} s; retry later, or raise "
                    "the source's timeout in config.yaml",
                )
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise SourceError(
            source_name, f"the connection to {url} broke off ({root_cause(exc)}); retry later"
        ) from exc
    return b"".join(chunks)


def read_file(path: Path, *, source_name: str, setting: str, last_modified: str | None = None) -> Download:
    """A local feed file. Its modification time stands in for Last-Modified, so an unchanged file is
    reported as not modified, like a 304."""
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise SourceError(source_name, f"no such file: {path}; check {setting} in config.yaml") from exc
    except OSError as exc:
        raise SourceError(source_name, f"cannot read {path}: {exc.strerror}; check {setting}") from exc
    if not path.is_file():
        raise SourceError(source_name, f"{path} is not a file; check {setting} in config.yaml")
    modified = formatdate(stat.st_mtime, usegmt=True)
    if last_modified is not None and last_modified == modified:
        return Download(
            body=b"", url=path.as_uri(), content_type="", last_modified=modified, not_modified=True
        )
    if stat.st_size > MAX_BYTES:
        raise SourceError(
            source_name, f"{path} is larger than {MAX_BYTES // (1024 * 1024)} MB; is it a feed?"
        )
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise SourceError(source_name, f"cannot read {path}: {exc.strerror}; check its permissions") from exc
    return Download(body=body, url=path.as_uri(), content_type="", last_modified=modified)


def _charset(params: str) -> str | None:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"').lower()
    return None


def root_cause(exc: BaseException) -> str:
    """The innermost reason ("Connection refused", "Name or service not known"), not urllib3's essay."""
    seen: BaseException = exc
    while True:
        nested = seen.__cause__ or seen.__context__
        if nested is None and seen.args and isinstance(seen.args[0], BaseException):
            nested = seen.args[0]
        if nested is None or nested is seen:
            break
        seen = nested
    reason = getattr(seen, "strerror", None) or str(seen)
    return reason.split("] ", 1)[-1] if reason.startswith("[") else reason
