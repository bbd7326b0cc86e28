"""One GET with a timeout, a size cap and an answer instead of an exception."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from publisher import __version__

MAX_BYTES = 5_000_000
USER_AGENT = f"publisher/{__version__} (+publisher init; site discovery)"


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    status: int
    content_type: str  # media type only, lower case
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class FetchFailed(Exception):
    """The address could not be read at all (no answer, bad name, TLS)."""


class Fetcher:
    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    def get(self, url: str) -> Fetched:
        try:
            with self.session.get(url, timeout=self.timeout, stream=True, allow_redirects=True) as response:
                body = b""
                for chunk in response.iter_content(65536):
                    body += chunk
                    if len(body) > MAX_BYTES:
                        break
                media = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
                return Fetched(response.url, response.status_code, media, body)
        except requests.exceptions.InvalidURL as exc:
            raise FetchFailed(f"{url} is not a valid address ({exc})") from exc
        except requests.exceptions.Timeout as exc:
            raise FetchFailed(f"{url} did not answer within {self.timeout:g} s") from exc
        except requests.exceptions.SSLError as exc:
            raise FetchFailed(f"{url}: TLS failed ({_short(exc)})") from exc
        except requests.exceptions.ConnectionError as exc:
            raise FetchFailed(
                f"{url} cannot be reached ({_short(exc)}); is the site up and the address right?"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise FetchFailed(f"{url}: {_short(exc)}") from exc

    def close(self) -> None:
        self.session.close()


def _short(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "timed out"):
        if marker in text:
            return marker.lower()
    return text[:200]
