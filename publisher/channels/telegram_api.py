"""The Telegram Bot API as a channel of the send engine: `send(batch) -> SendReport`, one post per call.

Plain `requests` with timeouts: the engine needs two methods (sendMessage, sendPhoto) and our own
error mapping; a bot framework would add an event loop and its own retries for nothing.

What Telegram answers, as the engine reads it:
- {"ok": true, "result": {"message_id": N}}: sent, N kept in the ledger;
- 429 with parameters.retry_after: waited in place once when it is short (max_retry_after), else
  temporary, due again no sooner than retry_after;
- 5xx, a timeout, a connection error: temporary;
- 400 (e.g. "Bad Request: can't parse entities: ..."): that post fails, with Telegram's reason; a photo
  Telegram cannot fetch ("wrong file identifier/HTTP URL specified") goes as a text post instead;
  "chat not found" stops the send: no post can go until the config is fixed;
- 401/403: stops the send, nothing marked failed, with the hint to check the token and the bot's rights.

After a temporary failure the later posts of the run are not tried (no result: they stay pending, no
attempt counted); the ledger (store.channel_posts) hands a post out only when none before it is waiting,
so a channel's posts never come out of order.

The bot token is part of every URL: it is never logged, and masked in every error text.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SendReport, SendResult

log = logging.getLogger(__name__)

DEFAULT_API = "https://api.telegram.org"
_TOKEN_IN_PATH = re.compile(r"/bot[^/\s]+/")


class _MaskTokens(logging.Filter):
    """urllib3 logs request lines (with /bot<token>/) at DEBUG: mask them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "/bot" in a for a in record.args):
            record.args = tuple(_TOKEN_IN_PATH.sub("/bot***/", a) if isinstance(a, str) else a for a in record.args)
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_MaskTokens())


class TelegramChannel:
    """Posts finished Bot API payloads (JSON built by the composer) to one chat."""

    max_batch = 1  # one post per call: a stop (401) never loses the answer of a post already made

    def __init__(
        self,
        token: str,
        *,
        where: str,
        api_base: str = DEFAULT_API,
        timeout: float = 30.0,
        max_retry_after: float = 10.0,
        sleep: Callable[[float], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._token = token
        self.where = where  # "channels[0]": names the settings in hints
        self._base = api_base.rstrip("/")
        self._timeout = timeout
        self._max_retry_after = max_retry_after
        self._sleep = sleep or time.sleep
        self._session = session or requests.Session()
        self._held: str | None = None  # why a post of this run waits for its retry

    def __repr__(self) -> str:
        return f"TelegramChannel({self.where}, api_base={self._base!r})"

    def close(self) -> None:
        self._session.close()

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport:
        # a post behind one waiting for its retry is not tried and gets no result: it stays pending,
        # untouched (no attempt counted), and the ledger hands it out only after the one before it
        return SendReport([self._post(message) for message in batch if self._held is None])

    def _mask(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _post(self, message: OutgoingMessage) -> SendResult:
        payload: dict[str, Any] = json.loads(message.data)
        method = payload.pop("method")
        waited = False
        while True:
            status, body, problem = self._call(method, payload)
            if problem is not None:
                return self._temporary(message, f"telegram {method}: {problem}", None)
            description = str(body.get("description") or "no description")
            if status == 200 and body.get("ok") is True:
                result = body.get("result") or {}
                return SendResult(message.delivery_id, True, provider_message_id=str(result.get("message_id", "")))
            if status == 429:
                after = _retry_after(body)
                if not waited and after <= self._max_retry_after:
                    log.info("telegram asks to wait %.0f s (429); waiting once", after)
                    self._sleep(after)
                    waited = True
                    continue
                return self._temporary(message, f"telegram 429: {description} (retry after {after:.0f} s)", after)
            if status in (401, 403, 404) or (status == 400 and "chat not found" in description.lower()):
                raise TransportUnavailable(
                    f"telegram {status}: {self._mask(description)}; stopped, nothing marked failed "
                    f"(hint: check {self.where}.bot_token and {self.where}.chat / add the bot as an admin of the channel)"
                )
            if status == 400 and method == "sendPhoto" and _PHOTO_REFUSED.search(description):
                # Telegram could not fetch the image: the story still goes, as text
                log.warning("telegram could not use the photo (%s); posting the text without it", description)
                method, payload = "sendMessage", _without_photo(payload)
                continue
            if status >= 500:
                return self._temporary(message, f"telegram {status}: {self._mask(description)}", None)
            return SendResult(message.delivery_id, False, error=f"telegram {status}: {self._mask(description)}")

    def _temporary(self, message: OutgoingMessage, reason: str, after: float | None) -> SendResult:
        self._held = reason
        return SendResult(message.delivery_id, False, error=reason, temporary=True, retry_after=after)

    def _call(self, method: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any], str | None]:
        url = f"{self._base}/bot{self._token}/{method}"
        try:
            response = self._session.post(url, json=payload, timeout=self._timeout)
        except requests.Timeout:
            return 0, {}, f"no answer within {self._timeout:g} s"
        except requests.RequestException as exc:
            return 0, {}, self._mask(f"{type(exc).__name__}: {exc}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code == 200 and body.get("ok") is not True:
            return 0, {}, "an answer that is not the Bot API's (check the channel's api_base)"
        return response.status_code, body, None


_PHOTO_REFUSED = re.compile(r"wrong file identifier|HTTP URL|failed to get|web page content|IMAGE_PROCESS_FAILED|"
                            r"PHOTO_INVALID", re.IGNORECASE)


def _without_photo(payload: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in payload.items() if k not in ("photo", "caption")}
    return {**kept, "text": payload.get("caption") or "", "link_preview_options": {"is_disabled": True}}


def _retry_after(body: dict[str, Any]) -> float:
    parameters = body.get("parameters")
    value = parameters.get("retry_after") if isinstance(parameters, dict) else None
    return float(value) if isinstance(value, int | float) and value >= 0 else 30.0
