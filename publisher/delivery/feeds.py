"""Publishing feed files: atomic writes into a directory, then WebSub pings for what changed.

A feed file is only rewritten when its bytes differ, so its mtime (and the Last-Modified/ETag a web
server derives from it) moves only when there is news, and hubs are told only then.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from publisher.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from publisher.models import FeedFile

log = logging.getLogger(__name__)

# Feeds are public documents: readable by the web server that serves the directory.
FILE_MODE = 0o644
_TEMPORARY_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EBUSY}


@dataclass(frozen=True)
class PublishedFeed:
    name: str
    path: Path
    changed: bool  # False: the file already held these bytes and was left untouched


class DirectoryPublisher:
    """Writes feed files into one directory, each atomically, skipping unchanged ones."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def publish(self, files: Sequence[FeedFile]) -> list[PublishedFeed]:
        """Raises TemporaryDeliveryError (disk full, I/O) or PermanentDeliveryError (permissions,
        bad name); a file already replaced stays replaced, a failed one keeps its old content."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(self.directory, exc) from exc
        return [self._publish_one(file) for file in files]

    def _publish_one(self, file: FeedFile) -> PublishedFeed:
        if not _plain_name(file.name):
            raise PermanentDeliveryError(
                f"feed file name {file.name!r} is not a plain file name, at most one folder deep "
                "(expected e.g. 'en.atom.xml' or 'en/politics.atom.xml')"
            )
        path = self.directory / file.name
        if _current_bytes(path) == file.content:
            return PublishedFeed(name=file.name, path=path, changed=False)
        try:
            path.parent.mkdir(exist_ok=True)
            write_atomically(path, file.content)
        except OSError as exc:
            raise _write_error(path, exc) from exc
        log.info("feed %s written (%d bytes)", path, len(file.content))
        return PublishedFeed(name=file.name, path=path, changed=True)


def _plain_name(name: str) -> bool:
    """"en.atom.xml" or "en/politics.atom.xml": no empty, dot-led or parent parts, no absolute path."""
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(part and not part.startswith(".") and "\\" not in part for part in parts)


def _current_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return None  # unreadable: rewriting it is the remedy, and the write reports real trouble


def write_atomically(path: Path, content: bytes) -> None:
    """Readers see the old file or the new one, never half of it, even after a crash."""
    # a hidden temporary name, so a directory listing or a web server never offers it
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fchmod(handle.fileno(), FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; some filesystems cannot, which is harmless."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_error(path: Path, exc: OSError) -> DeliveryError:
    message = f"cannot write feed {path}: {exc.strerror or exc}"
    if exc.errno in _TEMPORARY_ERRNOS:
        return TemporaryDeliveryError(f"{message} (free disk space or fix the device; the next run retries)")
    return PermanentDeliveryError(
        f"{message} (make feeds.directory writable by this user, or point it elsewhere in config.yaml)"
    )


@dataclass(frozen=True)
class PingResult:
    hub: str
    topic: str
    ok: bool  # the hub answered 2xx: it accepted the notification
    status: int | None = None  # None: no answer (refused, timed out, bad URL)
    error: str | None = None


class WebSubPinger:
    """Tells WebSub hubs that topics (feed URLs) changed: POST hub.mode=publish, hub.url=<topic>
    (and the same as hub.topic).

    Failures are returned and logged, never raised: a hub being down must not fail a publish run;
    subscribers still get the update when the hub next polls.
    """

    def __init__(self, hubs: list[str], timeout: float, session: requests.Session | None = None) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive: requests without one can wait forever")
        self.hubs = list(dict.fromkeys(hubs))
        self.timeout = timeout
        self._session = session

    def ping(self, topic_urls: Sequence[str]) -> list[PingResult]:
        topics = list(dict.fromkeys(topic_urls))
        if not self.hubs or not topics:
            return []
        session = self._session or requests.Session()
        try:
            return [self._ping_one(session, hub, topic) for hub in self.hubs for topic in topics]
        finally:
            if self._session is None:
                session.close()

    def _ping_one(self, session: requests.Session, hub: str, topic: str) -> PingResult:
        try:
            # no redirects: a 302 would turn the POST into a GET whose 200 proves nothing
            response = session.post(
                hub,
                # hub.url is PubSubHubbub 0.4's name, hub.topic what WebSub hubs such as Flask-WebSub
                # read (WebSub leaves publishing to the hub): both, so either kind of hub understands
                data={"hub.mode": "publish", "hub.url": topic, "hub.topic": topic},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("WebSub hub %s not told about %s: %s", hub, topic, error)
            return PingResult(hub=hub, topic=topic, ok=False, error=error)
        with response:
            if 200 <= response.status_code < 300:
                log.info("WebSub hub %s accepted %s (%d)", hub, topic, response.status_code)
                return PingResult(hub=hub, topic=topic, ok=True, status=response.status_code)
            error = f"HTTP {response.status_code}"
            if response.is_redirect:
                error += f" redirect to {response.headers.get('Location', '?')} (configure the final hub URL)"
            else:
                body = response.text.strip()[:200]
                error += f": {body}" if body else ""
        log.warning("WebSub hub %s refused %s: %s", hub, topic, error)
        return PingResult(hub=hub, topic=topic, ok=False, status=response.status_code, error=error)


def changed_topics(published: Sequence[PublishedFeed], base_url: str) -> list[str]:
    """The public URLs of the feeds that changed: what WebSubPinger.ping() needs."""
    return [f"{base_url.rstrip('/')}/{feed.name}" for feed in published if feed.changed]
