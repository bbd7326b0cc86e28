"""A local stand-in for SendGrid's POST /v3/mail/send on 127.0.0.1, strict about what it is sent.

Every request is checked against SendGrid's own OpenAPI description (tests/fixtures/provider-specs/
sendgrid-mail-v3.openapi.json, validated with openapi-core) and against the rules the schema cannot
say (reserved headers, text/plain before text/html, string header values, the bearer key). What fails
is answered as SendGrid answers (400 with errors[]) and recorded in `violations`, which a test
asserts empty. It answers like SendGrid: 202 with X-Message-Id and no body; 401; 413; 429 with
X-RateLimit-* headers; 500. Scripted misbehaviour (also `message_ids = False`, `revoke_after = N`):

    with SendGridServer() as server:
        server.refuse("bad@example.org", 400, "Does not contain a valid address.")  # that recipient
        server.fail_next(429, times=1, reset_in=0)  # the next request, whoever it is for
        ...
        assert server.accepted[0]["personalizations"][0]["headers"]["List-Unsubscribe"] == ...
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest

SPEC = Path(__file__).resolve().parents[2] / "fixtures" / "provider-specs" / "sendgrid-mail-v3.openapi.json"
LOOPBACK = "127.0.0.1"
API_KEY = "SG.test-key"

# SendGrid refuses these in `headers` ("You may not override the following headers", Mail Send docs).
RESERVED_HEADERS = {
    "x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type", "content-transfer-encoding",
    "to", "from", "subject", "reply-to", "cc", "bcc",
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int  # what we answered
    message_id: str | None = None  # the X-Message-Id we answered with


@dataclass
class _Scripted:
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = ""
    hold: bool = False  # answer only once the server stops (a client that times out never sees it)


class SendGridServer:
    def __init__(self, *, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        spec = json.loads(SPEC.read_text(encoding="utf-8"))
        self._spec = spec
        self._openapi: OpenAPI | None = None
        self.received: list[Received] = []  # every request, in order
        self._stopping = threading.Event()
        self.accepted: list[Any] = []  # bodies answered 202
        self.violations: list[str] = []  # contract breaches found in requests
        self._refusals: dict[str, tuple[int, str]] = {}
        self._script: list[_Scripted] = []
        self.message_ids = True  # False: a 202 without X-Message-Id (what SendGrid must not, but may, do)
        self.revoke_after: int | None = None  # after this many 202s, the key is refused (revoked mid-send)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="sendgrid-server", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._spec["servers"] = [{"url": self.url}]
        self._openapi = OpenAPI.from_dict(self._spec)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- scripting ---------------------------------------------------------------------------------

    def refuse(self, recipient: str, status: int = 400, message: str = "Does not contain a valid address.") -> None:
        """Every request to this recipient gets `status` with errors[] (as SendGrid's 400s look)."""
        self._refusals[recipient.lower()] = (status, message)

    def fail_next(self, status: int, *, times: int = 1, reset_in: float | None = None, retry_after: int | None = None,
                  hold: bool = False) -> None:
        """The next `times` requests get `status` (429: with X-RateLimit-* headers; reset_in seconds).

        hold: the answer waits until the server stops (bounded), so only the client's timeout ends the wait."""
        headers: dict[str, str] = {}
        if status == 429:
            reset = int(time.time() + (reset_in if reset_in is not None else 3600))
            headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        messages = {401: "The provided authorization grant is invalid, expired, or revoked", 413: "content too large",
                    429: "too many requests", 500: "internal server error"}
        self._script.append(_Scripted(status, times, headers, messages.get(status, "error"), hold))

    # --- the HTTP side -----------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, headers, body = server._answer(self.path, dict(self.headers.items()), raw)
                payload = json.dumps(body).encode() if body is not None else b""
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    if payload:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test) before this held answer

        return Handler

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], Any]:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        status, answer_headers, answer = self._decide(path, headers, raw, body)
        with self._lock:
            self.received.append(Received(path, headers, body, status, answer_headers.get("X-Message-Id")))
            if status == 202:
                self.accepted.append(body)
        return status, answer_headers, answer

    def _decide(self, path: str, headers: dict[str, str], raw: bytes, body: Any) -> tuple[int, dict[str, str], Any]:
        if path != "/v3/mail/send":
            return 404, {}, _errors("not found")
        with self._lock:
            revoked = self.revoke_after is not None and len(self.accepted) >= self.revoke_after
        if revoked or _header(headers, "Authorization") != f"Bearer {self.api_key}":
            return 401, {}, _errors("The provided authorization grant is invalid, expired, or revoked", field=None)
        with self._lock:
            scripted = self._script[0] if self._script else None
            if scripted is not None:
                scripted.times -= 1
                if scripted.times <= 0:
                    self._script.pop(0)
        if scripted is not None:
            if scripted.hold:
                self._stopping.wait(60)
            return scripted.status, scripted.headers, _errors(scripted.message)
        problems = self._contract_problems(path, headers, raw, body)
        if problems:
            with self._lock:
                self.violations.extend(problems)
            return 400, {}, {"errors": [{"message": problem, "field": None, "help": None} for problem in problems]}
        for personalization in body["personalizations"]:
            for to in personalization["to"]:
                refusal = self._refusals.get(to["email"].lower())
                if refusal:
                    return refusal[0], {}, _errors(refusal[1], field="personalizations.0.to.0.email")
        return 202, {"X-Message-Id": uuid.uuid4().hex[:22]} if self.message_ids else {}, None

    def _contract_problems(self, path: str, headers: dict[str, str], raw: bytes, body: Any) -> list[str]:
        assert self._openapi is not None
        request = requests.Request("POST", f"{self.url}{path}", headers=headers, data=raw).prepare()
        try:
            self._openapi.validate_request(RequestsOpenAPIRequest(request))
        except Exception as exc:  # openapi-core raises a family of errors; the details say what
            details = "; ".join(str(e) for e in getattr(exc, "schema_errors", []) or [exc.__cause__ or exc])
            return [f"OpenAPI: {exc}: {details}"]
        problems: list[str] = []
        if not _header(headers, "Content-Type").startswith("application/json"):
            problems.append("Content-Type must be application/json")
        for index, personalization in enumerate(body["personalizations"]):
            for name, value in (personalization.get("headers") or {}).items():
                if name.lower() in RESERVED_HEADERS:
                    problems.append(f"personalizations.{index}.headers: {name} may not be overridden")
                if not isinstance(value, str):
                    problems.append(f"personalizations.{index}.headers.{name}: must be a string")
            for name, value in (personalization.get("custom_args") or {}).items():
                if not isinstance(value, str):
                    problems.append(f"personalizations.{index}.custom_args.{name}: must be a string")
            if "subject" not in personalization and "subject" not in body:
                problems.append(f"personalizations.{index}: subject is required")
        types = [part["type"] for part in body.get("content", [])]
        if not types:
            problems.append("content: at least one part is required")
        if "text/plain" in types and types.index("text/plain") != 0:
            problems.append("content: text/plain must come first")
        if "text/html" in types and "text/plain" in types and types.index("text/html") < types.index("text/plain"):
            problems.append("content: text/html must follow text/plain")
        return problems


def _header(headers: dict[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), "")


def _errors(message: str, *, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": field, "help": None}]}
