"""The byte size of each enclosure image, measured once with a HEAD request and remembered.

Feeds want an enclosure's length (RSS requires the attribute; Atom and JSON Feed take it when
known). Sources rarely give it, so the feed step asks the image's server (HEAD, a bounded timeout,
redirects followed) and keeps the answer in a small JSON file keyed by image URL. A failure is
logged and remembered too, and tried again a day later; until then the length stays unknown (Atom
and JSON Feed leave it out, RSS writes 0, as the RSS Advisory Board's profile says to).
At most `max_requests` new images are measured per run, so a slow image host cannot stall a run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from publisher.delivery.feeds import write_atomically

log = logging.getLogger(__name__)

RETRY_FAILED_AFTER = timedelta(days=1)


def _now() -> datetime:
    return datetime.now(UTC)


class ImageSizes:
    def __init__(
        self,
        path: Path,
        *,
        timeout: float,
        session: requests.Session | None = None,
        max_requests: int = 20,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive: requests without one can wait forever")
        self.path = Path(path)
        self.timeout = timeout
        self.max_requests = max_requests
        self._session = session
        self._clock = clock
        self._cache: dict[str, dict[str, Any]] = self._load()
        self._dirty = False

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("image size cache %s unreadable (%s): starting afresh", self.path, exc)
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def lengths(self, urls: Iterable[str]) -> dict[str, int]:
        """Known sizes of these URLs, measuring those not known yet (within the per-run budget)."""
        wanted = [u for u in dict.fromkeys(urls) if u.startswith(("http://", "https://"))]
        budget = self.max_requests
        session = self._session or requests.Session()
        try:
            for url in wanted:
                if budget <= 0:
                    break
                if self._needs_measuring(url):
                    budget -= 1
                    self._measure(session, url)
        finally:
            if self._session is None:
                session.close()
        self._save()
        return {u: int(self._cache[u]["length"]) for u in wanted if "length" in self._cache.get(u, {})}

    def _needs_measuring(self, url: str) -> bool:
        known = self._cache.get(url)
        if known is None:
            return True
        if "length" in known:
            return False
        try:
            failed_at = datetime.fromisoformat(str(known.get("failed_at")))
        except ValueError:
            return True
        return self._clock() - failed_at >= RETRY_FAILED_AFTER

    def _measure(self, session: requests.Session, url: str) -> None:
        self._dirty = True
        try:
            with session.head(url, timeout=self.timeout, allow_redirects=True) as response:
                response.raise_for_status()
                length = response.headers.get("Content-Length", "")
        except requests.RequestException as exc:
            self._fail(url, f"{type(exc).__name__}: {exc}")
            return
        if not length.isdigit() or int(length) <= 0:
            self._fail(url, f"no usable Content-Length ({length or 'none'})")
            return
        self._cache[url] = {"length": int(length)}
        log.info("image %s is %s bytes", url, length)

    def _fail(self, url: str, error: str) -> None:
        log.warning("image size of %s unknown: %s (tried again in a day)", url, error)
        self._cache[url] = {"failed_at": self._clock().isoformat(), "error": error[:200]}

    def _save(self) -> None:
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(self._cache, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
            write_atomically(self.path, text.encode("utf-8"))
        except OSError as exc:
            log.warning("image size cache %s not saved: %s", self.path, exc)
        self._dirty = False
