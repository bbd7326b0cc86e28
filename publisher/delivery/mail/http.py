"""What every HTTP mail provider adapter shares: one session, a timeout always, errors mapped.

Provider answers become our own outcomes, the same for every provider (README, "Sending through a mail
provider's API"; tests/test_transport_conformance.py): 2xx accepted; 429 and 5xx temporary, after
waiting out a Retry-After of at most max_retry_after once, and a longer one kept as the result's
retry_after so the retry is not due before it; 401/403 mean our key is wrong and 404 that base_url is
not the provider's API, which no retry fixes and which is not the subscriber's fault:
TransportUnavailable naming the setting; other 4xx are permanent for what was sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from publisher.errors import TransportUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderAnswer:
    """One HTTP exchange, classified."""

    status: int | None  # None: no answer (connection refused, timeout)
    ok: bool
    temporary: bool
    error: str | None
    body: Any = None  # parsed JSON when the provider sent some
    headers: Mapping[str, str] | None = None
    # True when no connection could be opened at all (refused, no route, connect timeout): nothing
    # was handed over, so the caller may raise TransportUnavailable. A read timeout or a connection
    # lost mid-request leaves it False: the provider may have accepted what was sent.
    unreachable: bool = False
    retry_after: float | None = None  # temporary: the provider's own wait (Retry-After), in seconds


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Retry-After (seconds or an HTTP date), or X-RateLimit-Reset (unix time) as SendGrid sends it."""
    value = headers.get("Retry-After")
    if value:
        if value.strip().isdigit():
            return float(value.strip())
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - (now or time.time()))
        except (TypeError, ValueError):
            return None
    reset = headers.get("X-RateLimit-Reset")
    if reset and reset.strip().isdigit():
        return max(0.0, float(reset) - (now or time.time()))
    return None


class ProviderClient:
    """A requests session bound to one provider's base URL, with its remedies in error messages."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        timeout: float,
        max_retry_after: float,
        credentials_hint: str,
        address_hint: str = "mail.transport.base_url",
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retry_after = max_retry_after
        self.credentials_hint = credentials_hint
        self.address_hint = address_hint
        self.session = session or requests.Session()
        self.sleep = sleep

    def request(self, method: str, path: str, **kwargs: Any) -> ProviderAnswer:
        """Send once; on a 429 with a short enough Retry-After, wait and send once more."""
        answer = self._once(method, path, **kwargs)
        if answer.status == 429 and answer.headers is not None:
            wait = retry_after_seconds(answer.headers)
            if wait is not None and wait <= self.max_retry_after:
                log.info("%s asked us to slow down: waiting %.1f s", self.provider, wait)
                self.sleep(wait)
                answer = self._once(method, path, **kwargs)
        return answer

    def _once(self, method: str, path: str, **kwargs: Any) -> ProviderAnswer:
        url = f"{self.base_url}{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectTimeout:
            return ProviderAnswer(None, False, True, f"{self.provider}: cannot connect to {url} within {self.timeout} s",
                                  unreachable=True)
        except requests.Timeout:
            return ProviderAnswer(None, False, True, f"{self.provider}: no answer within {self.timeout} s")
        except requests.ConnectionError as exc:
            return ProviderAnswer(None, False, True, f"{self.provider}: cannot connect to {url}: {exc}",
                                  unreachable=_never_connected(exc))
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:500]
        status = response.status_code
        if 200 <= status < 300:
            return ProviderAnswer(status, True, False, None, body, response.headers)
        detail = f"{self.provider} answered HTTP {status}: {_summary(body)}"
        if status in (401, 403):
            raise TransportUnavailable(f"{detail} (hint: check {self.credentials_hint} in config.yaml)")
        if status == 404:  # no such API here: every message would get the same
            raise TransportUnavailable(f"{detail} at {url} (hint: check {self.address_hint} in config.yaml)")
        temporary = status == 429 or status >= 500 or status == 408
        wait = retry_after_seconds(response.headers) if temporary else None
        return ProviderAnswer(status, False, temporary, detail, body, response.headers, retry_after=wait)


def _never_connected(exc: requests.ConnectionError) -> bool:
    """Whether the connection itself failed (refused, DNS, no route), as opposed to one that broke
    after the request may have been sent. requests wraps urllib3's MaxRetryError, whose `reason`
    holds the real error."""
    cause: object = exc.args[0] if exc.args else None
    for _ in range(3):
        if isinstance(cause, NewConnectionError):
            return True
        cause = getattr(cause, "reason", None)
    return False


def _summary(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("errors", "message", "Message", "error"):
            if key in body:
                return str(body[key])[:300]
    return str(body)[:300]
