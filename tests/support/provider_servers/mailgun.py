"""A local Mailgun API on 127.0.0.1 that checks every request against Mailgun's own OpenAPI spec.

    with MailgunServer() as server:
        transport = MailgunTransport(server.settings())
        ...
        assert server.received[0].message == expected_bytes

Every request is validated with openapi-core against tests/fixtures/provider-specs/mailgun.openapi.yaml
(servers overridden to this address; path, multipart body with `to` and `message`, basic auth). A
request the spec refuses is answered 400 {"message": ...} as Mailgun does, and recorded in
`violations`, so a test can assert there were none. Our answers are checked against the spec too.

Behaviour, as Mailgun documents it: wrong credentials 401 "Forbidden"; unknown domain 404; an address
listed in `refuse` 400 {"message": "'to' parameter is not a valid address..."}; `fail_next(status,
...)` makes the next request(s) answer that (429 with Retry-After, 500), `fail_for(recipient, status)`
the next request to that recipient; success 200 {"id", "message"}.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from publisher.config import MailgunSettings

SPEC = Path(__file__).resolve().parents[2] / "fixtures" / "provider-specs" / "mailgun.openapi.yaml"
LOOPBACK = "127.0.0.1"
MESSAGE_PATHS = ("/v3/{domain_name}/messages", "/v3/{domain_name}/messages.mime")


@dataclass(frozen=True)
class FormPart:
    name: str
    content: bytes
    filename: str | None = None
    content_type: str | None = None


def parse_multipart(body: bytes, content_type: str) -> list[FormPart]:
    """Split a multipart/form-data body exactly (bytes untouched), as a server would."""
    boundary = None
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise ValueError("multipart/form-data without a boundary")
    delimiter = b"--" + boundary.encode("ascii")
    if not body.startswith(delimiter) or not body.rstrip(b"\r\n").endswith(delimiter + b"--"):
        raise ValueError("multipart body does not open and close with its boundary")
    parts = []
    for chunk in body.split(b"\r\n" + delimiter):
        chunk = chunk.removeprefix(delimiter)
        if chunk.startswith(b"--"):
            break
        head, separator, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise ValueError("a multipart part without a blank line after its headers")
        headers = message_from_bytes(head + b"\r\n\r\n", policy=policy.HTTP)
        disposition = headers.get("Content-Disposition")
        if disposition is None or disposition.content_disposition != "form-data":
            raise ValueError("a part without Content-Disposition: form-data")
        name = disposition.params.get("name")
        if not name:
            raise ValueError("a part without a name")
        parts.append(FormPart(name, content, disposition.params.get("filename"), headers.get_content_type()
                              if headers.get("Content-Type") else None))
    return parts


def _form_for_spec(value: bytes, **parameters: str) -> ImmutableMultiDict[str, Any]:
    """openapi-core's multipart reader as a replacement: the same fields, with file parts as text.

    openapi-core 0.23 hands binary parts to the OAS 3.1 validator as bytes, which `type: string`
    refuses, and reads a message/rfc822 part as a nested message. Decoding them keeps the spec's check
    of which fields are present and how they are typed; the bytes are checked by the server itself.
    """
    content_type = "multipart/form-data; " + "; ".join(f"{k}={v}" for k, v in parameters.items())
    return ImmutableMultiDict(
        [(part.name, part.content.decode("utf-8", "surrogateescape")) for part in parse_multipart(value, content_type)]
    )


@functools.lru_cache(maxsize=1)
def _spec_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.load(SPEC.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    # Only the sending calls are exercised; dropping the other 150 paths makes loading ~10x faster.
    document["paths"] = {path: item for path, item in document["paths"].items() if path in MESSAGE_PATHS}
    return document


def openapi_for(base_url: str) -> OpenAPI:
    document = dict(_spec_document())
    document["servers"] = [{"url": base_url}]
    return OpenAPI.from_dict(
        document,
        config=Config(spec_validator_cls=None, extra_media_type_deserializers={"multipart/form-data": _form_for_spec}),
    )


@dataclass
class _SpecRequest:
    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    content_type: str
    body: bytes | None


@dataclass
class _SpecResponse:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    fields: dict[str, list[str]]  # the text fields ("to", "o:tag", ...)
    message: bytes | None  # the `message` file part, exactly as received
    message_content_type: str | None = None
    status: int = 0  # what we answered
    provider_id: str | None = None  # the "id" of a 200 answer

    def parsed(self) -> EmailMessage:
        assert self.message is not None
        parsed = message_from_bytes(self.message, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class MailgunServer:
    def __init__(self, *, api_key: str = "key-test-0123", domain: str = "mg.example.org",
                 refuse: dict[str, str] | None = None) -> None:
        self.api_key = api_key
        self.domain = domain
        self.refuse = dict(refuse or {})  # recipient -> Mailgun's 400 message
        self.received: list[ReceivedRequest] = []
        self.violations: list[str] = []
        self._planned: deque[Answer] = deque()
        self._planned_for: dict[str, Answer] = {}
        self.message_ids = True  # False: a 200 without an id
        self.revoke_after: int | None = None  # after this many accepted messages, the key is refused
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="mailgun-api", daemon=True)
        self.openapi = openapi_for(self.url)

    # --- control ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._httpd.server_address[1]}"

    def settings(self, **overrides: Any) -> MailgunSettings:
        values: dict[str, Any] = {"kind": "mailgun", "api_key": self.api_key, "domain": self.domain,
                                  "base_url": self.url, "timeout": 5.0}
        values.update(overrides)
        return MailgunSettings(**values)

    def fail_next(self, status: int, message: str = "", *, headers: dict[str, str] | None = None, times: int = 1) -> None:
        """The next `times` well-formed requests are answered `status` instead of being accepted."""
        for _ in range(times):
            self._planned.append(Answer(status, {"message": message or f"planned HTTP {status}"}, dict(headers or {})))

    def fail_for(self, recipient: str, status: int, message: str = "", *, headers: dict[str, str] | None = None) -> None:
        """The next request to `recipient` is answered `status` (once)."""
        self._planned_for[recipient] = Answer(status, {"message": message or f"planned HTTP {status}"}, dict(headers or {}))

    @property
    def accepted(self) -> list[ReceivedRequest]:
        return [r for r in self.received if r.status == 200]

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- one request -----------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if not path.startswith("/v3/"):  # not Mailgun's API (a wrong base_url): 404, as Mailgun answers
            return self._record(method, path, headers, {}, None, None, Answer(404, {"message": "not found"}))
        content_type = headers.get("Content-Type", "")
        spec_request = _SpecRequest(self.url, path, method.lower(), RequestParameters(header=Headers(headers)),
                                    content_type, body)
        result = self.openapi.unmarshal_request(spec_request)
        fields: dict[str, list[str]] = {}
        message = message_type = None
        try:
            for part in parse_multipart(body, content_type):
                if part.name == "message" and part.filename is not None:
                    message, message_type = part.content, part.content_type
                else:
                    fields.setdefault(part.name, []).append(part.content.decode("utf-8"))
        except ValueError as exc:
            self.violations.append(f"{method} {path}: {exc}")
            return self._record(method, path, headers, fields, message, message_type,
                                Answer(400, {"message": f"malformed multipart body: {exc}"}))
        revoked = self.revoke_after is not None and len(self.accepted) >= self.revoke_after
        if revoked or not self._authorized(headers.get("Authorization", "")):
            return self._record(method, path, headers, fields, message, message_type, Answer(401, "Forbidden"))
        if result.errors:
            problems = "; ".join(_describe(error) for error in result.errors)
            self.violations.append(f"{method} {path}: {problems}")
            return self._record(method, path, headers, fields, message, message_type, Answer(400, {"message": problems}))
        if path not in (f"/v3/{self.domain}/messages.mime", f"/v3/{self.domain}/messages"):
            return self._record(method, path, headers, fields, message, message_type,
                                Answer(404, {"message": f"Domain not found: {path.split('/')[2]}"}))
        recipients = [address.strip() for value in fields.get("to", []) for address in value.split(",")]
        with self._lock:
            planned = self._planned.popleft() if self._planned else None
            for recipient in recipients:
                planned = planned or self._planned_for.pop(recipient, None)
        if planned is not None:
            return self._record(method, path, headers, fields, message, message_type, planned)
        refused = [self.refuse[r] for r in recipients if r in self.refuse]
        if refused:
            return self._record(method, path, headers, fields, message, message_type, Answer(400, {"message": refused[0]}))
        number = next(self._ids)
        answer = Answer(200, {"id": f"<20261125090000.{number:06d}@{self.domain}>", "message": "Queued. Thank you."})
        if not self.message_ids:
            answer = Answer(200, {"message": "Queued. Thank you."})
        return self._record(method, path, headers, fields, message, message_type, answer)

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == "api" and password == self.api_key

    def _record(self, method: str, path: str, headers: dict[str, str], fields: dict[str, list[str]],
                message: bytes | None, message_type: str | None, answer: Answer) -> Answer:
        with self._lock:
            provider_id = answer.body.get("id") if isinstance(answer.body, dict) and answer.status == 200 else None
            self.received.append(ReceivedRequest(method, path, headers, fields, message, message_type, answer.status,
                                                 provider_id))
        return answer

    def _check_response(self, method: str, path: str, headers: dict[str, str], body: bytes, answer: Answer,
                        data: bytes) -> None:
        spec_request = _SpecRequest(self.url, path, method.lower(), RequestParameters(header=Headers(headers)),
                                    headers.get("Content-Type", ""), body)
        response = _SpecResponse(answer.status, "application/json", Headers({"Content-Type": "application/json"}), data)
        result = self.openapi.unmarshal_response(spec_request, response)
        if result.errors:
            self.violations.append(f"our own {answer.status} answer breaks the spec: {result.errors}")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms stall

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {name: value for name, value in self.headers.items()}
                answer = server.answer("POST", self.path, headers, body)
                data = json.dumps(answer.body).encode("utf-8")
                # (an answer without an id breaks the spec on purpose: what Mailgun must not, but may, do)
                if answer.status in (200, 400, 429, 500) and self.path.endswith("messages.mime") and server.message_ids:
                    server._check_response("POST", self.path, headers, body, answer, data)
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler


def _describe(error: Exception) -> str:
    causes = getattr(error, "schema_errors", None) or getattr(error.__cause__, "schema_errors", None)
    if causes:
        return f"{type(error).__name__}: " + "; ".join(str(getattr(c, "message", c)) for c in causes)
    return f"{type(error).__name__}: {error.__cause__ or error}"
