"""The config a running service uses: config.yaml, re-read when it changes, swapped only when valid.

A thread polls the file's size and modification time (every second by default) and, when they
change, compares a hash of the content, so touching the file or saving it unchanged does nothing.
A new version is validated completely (publisher.config plus any extra checks, such as the
scheduler's) before it replaces the current one in a single assignment: readers call current() and
always get one whole, valid Config. A refused edit is logged once with every problem's file, line,
key and hint; the last good config keeps running.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from publisher.config import Config, parse_config
from publisher.errors import ConfigError

log = logging.getLogger(__name__)

Listener = Callable[[Config, Config], None]
Validator = Callable[[Config], list[str]]

# An editor may write a file in several steps: wait until it has stopped changing for this long.
SETTLE_SECONDS = 0.2


@dataclass(frozen=True)
class _Seen:
    size: int
    mtime_ns: int


class LiveConfig:
    """Holds the current Config; start() watches the file; listeners hear of each accepted change."""

    def __init__(
        self,
        path: str | Path,
        *,
        interval: float = 1.0,
        validators: list[Validator] | None = None,
    ) -> None:
        self.path = Path(path)
        self.interval = interval
        self._validators = list(validators or [])
        self._listeners: list[Listener] = []
        self._refusal_listeners: list[Callable[[list[str]], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            content, seen = self._read()
        except OSError as exc:
            raise ConfigError([f"{self.path}: cannot read it: {exc} (hint: pass --config PATH)"]) from exc
        self._config = self._validated(content)  # ConfigError on a bad first load: the caller reports it
        self._good_hash = self._last_hash = _digest(content)
        self._seen = seen
        self.loaded_at = datetime.now(UTC)
        self.problems: list[str] = []  # of the newest refused version; empty when the file is good

    def current(self) -> Config:
        return self._config

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_refusal_listener(self, listener: Callable[[list[str]], None]) -> None:
        """Called with the problems whenever an edit is refused, and with [] when the file is good again."""
        self._refusal_listeners.append(listener)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="config-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def check_now(self) -> bool:
        """Look at the file once. True if a new config was accepted."""
        with self._lock:
            try:
                seen = _stat(self.path)
            except OSError as exc:
                if self._seen.mtime_ns != -1:
                    log.error("config reload: cannot read %s: %s; keeping the last good config", self.path, exc)
                    self._seen = _Seen(-1, -1)
                return False
            if seen == self._seen:
                return False
            time.sleep(SETTLE_SECONDS)
            try:
                content, settled = self._read()
            except OSError:
                return False
            if settled != seen:
                return False  # still being written: look again next time
            self._seen = settled
            digest = _digest(content)
            if digest == self._last_hash:
                return False
            self._last_hash = digest
            refused: list[str] | None = None
            if digest == self._good_hash:
                self.problems = refused = []
                log.info("config reload: %s is back to the config in use", self.path)
            else:
                previous, config, refused = self._take(content)
        if refused is not None:
            self._notify(self._refusal_listeners, refused)
            return False
        log.info("config reload: %s accepted", self.path)
        self._notify(self._listeners, previous, config)
        return True

    def _take(self, content: bytes) -> tuple[Config, Config, list[str] | None]:
        """Validate and swap. Returns (previous, current, problems or None if accepted)."""
        previous = self._config
        try:
            config = self._validated(content)
        except ConfigError as exc:
            self.problems = list(exc.problems)
            log.error(
                "config reload refused: %d problem(s) in %s; the last good config (loaded %s) keeps running",
                len(exc.problems),
                self.path,
                self.loaded_at.isoformat(timespec="seconds"),
            )
            for problem in exc.problems:
                log.error("config reload refused: %s", problem)
            return previous, previous, list(exc.problems)
        self._config = config
        self._good_hash = _digest(content)
        self.loaded_at = datetime.now(UTC)
        self.problems = []
        return previous, config, None

    @staticmethod
    def _notify(listeners: list[Any], *args: Any) -> None:
        for listener in listeners:
            try:
                listener(*args)
            except Exception:  # one failing listener must not keep the others from the change
                log.exception("config reload: a listener failed")

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_now()
            except Exception:  # the watcher must survive anything; the service depends on it
                log.exception("config reload: unexpected error while checking %s", self.path)

    def _read(self) -> tuple[bytes, _Seen]:
        seen = _stat(self.path)
        return self.path.read_bytes(), seen

    def _validated(self, content: bytes) -> Config:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError([f"{self.path}: not UTF-8 text: {exc} (hint: save the file as UTF-8)"]) from exc
        config = parse_config(text, source=str(self.path), base_dir=self.path.resolve().parent)
        problems = [problem for validate in self._validators for problem in validate(config)]
        if problems:
            raise ConfigError(problems)
        return config


def _stat(path: Path) -> _Seen:
    result = os.stat(path)
    return _Seen(result.st_size, result.st_mtime_ns)


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
