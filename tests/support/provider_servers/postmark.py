"""A local stand-in for Postmark's POST /email/batch on 127.0.0.1, strict about what it is sent.

Every request is checked against Postmark's OpenAPI description (our copy in tests/fixtures/
provider-specs/postmark-server.openapi.json, extended with MessageStream and Metadata, unknown fields
refused, at most 500 messages; validated with openapi-core) and against what the schema cannot say
(the server token, the message stream exists, From and To present, a body present, Headers as
Name/Value strings). A breach is answered as Postmark answers (422 with ErrorCode and Message) and
recorded in `violations`, which a test asserts empty.

It answers like Postmark: HTTP 200 with one entry per message in request order, each with its own
ErrorCode (0 with MessageID, SubmittedAt and To when accepted; e.g. 406 "inactive recipient" with only
ErrorCode and Message when not); 401 (ErrorCode 10) for a wrong token; scripted 422, 429, 500:

    with PostmarkServer() as server:
        server.refuse("gone@example.org", 406)   # that message's entry carries ErrorCode 406
        server.fail_next(500)                    # the next request, as a whole
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest

SPEC = Path(__file__).resolve().parents[2] / "fixtures" / "provider-specs" / "postmark-server.openapi.json"
LOOPBACK = "127.0.0.1"
SERVER_TOKEN = "pm-test-token"

ERROR_MESSAGES = {
    10: "No Account or Server API tokens were supplied in the HTTP headers.",
    100: "Postmark is in maintenance.",
    300: "Invalid 'To' address.",
    400: "The 'From' address you supplied is not a Sender Signature on your account.",
    402: "Invalid JSON.",
    405: "You ran out of credits.",
    406: "You tried to send to recipient(s) that have been marked as inactive.",
    429: "Rate limit exceeded.",
    1235: "The message stream for the provided 'ID' was not found.",
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    answer: Any = None  # what we answered (for 200: the per-message entries)


@dataclass
class _Scripted:
    status: int
    times: int
    code: int
    headers: dict[str, str] = field(default_factory=dict)


class PostmarkServer:
    def __init__(self, *, server_token: str = SERVER_TOKEN, streams: tuple[str, ...] = ("outbound", "broadcast")) -> None:
        self.server_token = server_token
        self.streams = set(streams)
        self._spec = json.loads(SPEC.read_text(encoding="utf-8"))
        self._openapi: OpenAPI | None = None
        self.received: list[Received] = []
        self.accepted: list[dict[str, Any]] = []  # messages whose entry had ErrorCode 0
        self.violations: list[str] = []
        self._refusals: dict[str, int] = {}
        self._script: list[_Scripted] = []
        self.message_ids = True  # False: accepted entries (ErrorCode 0) come without a MessageID
        self.revoke_after: int | None = None  # after this many accepted messages, the token is refused
        self._reshape: list[Callable[[list[Any]], list[Any]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="postmark-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def batch_sizes(self) -> list[int]:
        return [len(r.body) for r in self.received if isinstance(r.body, list)]

    def start(self) -> Self:
        self._spec["servers"] = [{"url": self.url}]
        self._openapi = OpenAPI.from_dict(self._spec)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- scripting ---------------------------------------------------------------------------------

    def refuse(self, recipient: str, code: int = 406) -> None:
        """That recipient's entry in every batch answer carries ErrorCode `code`."""
        self._refusals[recipient.lower()] = code

    def fail_next(self, status: int, *, times: int = 1, code: int | None = None, retry_after: int | None = None) -> None:
        """The next `times` requests get `status` as a whole (422: with ErrorCode `code`)."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._script.append(_Scripted(status, times, code if code is not None else status, headers))

    def reshape_next(self, change: Callable[[list[Any]], list[Any]]) -> None:
        """The next 200 answer's entries pass through `change` (drop, repeat, reorder: what Postmark must not do)."""
        self._reshape.append(change)

    # --- the HTTP side -----------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, body = server._answer(self.path, dict(self.headers.items()), raw)
                payload = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], Any]:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        status, answer_headers, answer = self._decide(path, headers, raw, body)
        with self._lock:
            self.received.append(Received(path, headers, body, status, answer))
            if status == 200 and isinstance(answer, list):
                self.accepted.extend(m for m, entry in zip(body, answer, strict=True) if entry["ErrorCode"] == 0)
                if self._reshape:
                    answer = self._reshape.pop(0)(answer)
                    self.received[-1] = Received(path, headers, body, status, answer)
        return status, answer_headers, answer

    def _decide(self, path: str, headers: dict[str, str], raw: bytes, body: Any) -> tuple[int, dict[str, str], Any]:
        if path != "/email/batch":
            return 404, {}, {"ErrorCode": 404, "Message": "not found"}
        with self._lock:
            revoked = self.revoke_after is not None and len(self.accepted) >= self.revoke_after
        if revoked or _header(headers, "X-Postmark-Server-Token") != self.server_token:
            return 401, {}, _error(10)
        with self._lock:
            scripted = self._script[0] if self._script else None
            if scripted is not None:
                scripted.times -= 1
                if scripted.times <= 0:
                    self._script.pop(0)
        if scripted is not None:
            return scripted.status, scripted.headers, _error(scripted.code)
        problems = self._contract_problems(path, headers, raw, body)
        if problems:
            with self._lock:
                self.violations.extend(problems)
            return 422, {}, {"ErrorCode": 402, "Message": "; ".join(problems)[:2000]}
        return 200, {}, [self._entry(message) for message in body]

    def _entry(self, message: dict[str, Any]) -> dict[str, Any]:
        recipient = parseaddr(message["To"])[1].lower()
        code = self._refusals.get(recipient)
        if code is None and message.get("MessageStream", "outbound") not in self.streams:
            code = 1235
        if code is not None:
            return _error(code)
        entry = {"ErrorCode": 0, "Message": "OK", "MessageID": str(uuid.uuid4()),
                 "SubmittedAt": datetime.now(UTC).isoformat(), "To": message["To"]}
        if not self.message_ids:
            del entry["MessageID"]
        return entry

    def _contract_problems(self, path: str, headers: dict[str, str], raw: bytes, body: Any) -> list[str]:
        assert self._openapi is not None
        request = requests.Request("POST", f"{self.url}{path}", headers=headers, data=raw).prepare()
        try:
            self._openapi.validate_request(RequestsOpenAPIRequest(request))
        except Exception as exc:  # openapi-core raises a family of errors; the details say what
            details = "; ".join(str(e) for e in getattr(exc, "schema_errors", []) or [exc.__cause__ or exc])
            return [f"OpenAPI: {exc}: {details}"]
        if not isinstance(body, list):
            return ["the body must be a JSON array of messages"]
        problems: list[str] = []
        if not _header(headers, "Content-Type").startswith("application/json"):
            problems.append("Content-Type must be application/json")
        for index, message in enumerate(body):
            for name in ("From", "To", "Subject"):
                if not message.get(name):
                    problems.append(f"[{index}].{name} is required")
            if not (message.get("TextBody") or message.get("HtmlBody")):
                problems.append(f"[{index}]: TextBody or HtmlBody is required")
            for header in message.get("Headers", []):
                if not isinstance(header.get("Name"), str) or not isinstance(header.get("Value"), str):
                    problems.append(f"[{index}].Headers: Name and Value must be strings")
            for value in (message.get("Metadata") or {}).values():
                if len(value) > 80:
                    problems.append(f"[{index}].Metadata: values are limited to 80 characters")
        return problems


def _header(headers: dict[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), "")


def _error(code: int) -> dict[str, Any]:
    return {"ErrorCode": code, "Message": ERROR_MESSAGES.get(code, f"error {code}")}

