"""A local stand-in for the Telegram Bot API on 127.0.0.1, strict about what it is sent.

Every request is checked as Telegram checks it: POST /bot<token>/<method> with a JSON body; the
method is sendMessage or sendPhoto; only that method's documented parameters; chat_id is the chat;
parse_mode is HTML; the HTML uses only Telegram's tags (b, i, u, s, a href, code, pre, blockquote),
balanced, with only &lt; &gt; &amp; &quot; and numeric entities; the text after entity parsing is
1-4,096 UTF-16 code units (a caption at most 1,024); a photo is an http(s) URL. A breach is answered as
Telegram answers (400 "Bad Request: ...") and recorded in `violations`, which a test asserts empty.

It answers like Telegram: {"ok": true, "result": {"message_id": N, ...}}; 401 Unauthorized for a wrong
token; scripted answers for the next requests (429 with parameters.retry_after, 400 "can't parse
entities", 500), and a hook run before answering (to hold or to kill mid-send):

    with TelegramServer(chat="@levant_ar") as server:
        server.fail_next(429, retry_after=3)
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

BOT_TOKEN = "123456789:AAtest-token_ABCDEFGHIJ"
LOOPBACK = "127.0.0.1"
PARAMETERS = {
    "sendMessage": ({"chat_id", "text"}, {"parse_mode", "link_preview_options", "disable_notification",
                                          "protect_content", "entities", "reply_parameters"}),
    "sendPhoto": ({"chat_id", "photo"}, {"caption", "parse_mode", "disable_notification", "protect_content",
                                         "caption_entities", "has_spoiler", "reply_parameters"}),
}
TAGS = {"b", "i", "u", "s", "a", "code", "pre", "blockquote"}
_TOKEN = re.compile(r"<(/?)([A-Za-z0-9-]*)((?:\s+[a-z-]+=\"[^\"<>]*\")*)\s*>|&(#\d+|#x[0-9A-Fa-f]+|[a-zA-Z]+);|[<>&]")
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


class EntityError(ValueError):
    pass


def parse_html(markup: str) -> str:
    """The visible text of a Telegram-HTML message, or EntityError as Telegram words it."""
    out: list[str] = []
    stack: list[str] = []
    position = 0
    for match in _TOKEN.finditer(markup):
        out.append(markup[position:match.start()])
        position = match.end()
        offset = len(markup[:match.start()].encode())
        closing, tag, attributes, entity = match.group(1), match.group(2), match.group(3), match.group(4)
        if entity is not None:
            if entity.startswith("#"):
                out.append(chr(int(entity[2:], 16) if entity[1] in "xX" else int(entity[1:])))
            elif entity in _ENTITIES:
                out.append(_ENTITIES[entity])
            else:
                raise EntityError(f"Unsupported HTML entity \"&{entity};\" at byte offset {offset}")
        elif tag is None or match.group(0) in "<>&":
            if match.group(0) == ">":
                out.append(">")
                continue
            raise EntityError(f"Can't find end of the entity starting at byte offset {offset}" if match.group(0) == "&"
                              else f"Unsupported start tag at byte offset {offset}")
        elif tag.lower() not in TAGS:
            raise EntityError(f"Unsupported start tag \"{tag}\" at byte offset {offset}")
        elif closing:
            expected = stack.pop() if stack else ""
            if expected != tag:
                raise EntityError(f"Unmatched end tag at byte offset {offset}, expected \"</{expected}>\"")
        else:
            names = re.findall(r"\s([a-z-]+)=\"", attributes or "")
            if (tag == "a") != (names == ["href"]) or (tag != "a" and names):
                raise EntityError(f"Unsupported attribute at byte offset {offset}")
            stack.append(tag)
    out.append(markup[position:])
    if stack:
        raise EntityError(f"Can't find end tag corresponding to start tag \"{stack[-1]}\"")
    return "".join(out)


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Received:
    method: str
    body: Any
    status: int
    answer: Any = None


class TelegramServer:
    def __init__(self, *, chat: str = "@levant_ar", token: str = BOT_TOKEN) -> None:
        self.chat, self.token = chat, token
        self.received: list[Received] = []
        self.posts: list[dict[str, Any]] = []  # accepted, in order: the channel's timeline
        self.violations: list[str] = []
        self.before_answer: Callable[[dict[str, Any]], None] | None = None  # called before a post is accepted
        self._script: list[tuple[int, str | None, int | None]] = []
        self._lock = threading.Lock()
        self._next_id = 100
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def fail_next(self, status: int, *, description: str | None = None, retry_after: int | None = None) -> None:
        self._script.append((status, description, retry_after))

    def texts(self) -> list[str]:
        return [str(p.get("text") or p.get("caption") or "") for p in self.posts]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, path: str, raw: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", path)
        if match is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        token, method = match.groups()
        if token != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        if method not in PARAMETERS:
            self.violations.append(f"unknown method {method}")
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        if not content_type.startswith("application/json"):
            self.violations.append(f"content type {content_type!r}")
        try:
            body = json.loads(raw)
        except ValueError:
            self.violations.append("body is not JSON")
            return 400, _bad("Bad Request: invalid JSON")
        with self._lock:
            self.received.append(Received(method, body, 0))
        problem = self._check(method, body)
        if problem:
            self.violations.append(f"{method}: {problem}")
            return 400, _bad(f"Bad Request: {problem}")
        if self._script:
            status, description, retry_after = self._script.pop(0)
            if status == 429:
                after = retry_after or 5
                return 429, {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {after}",
                             "parameters": {"retry_after": after}}
            return status, {"ok": False, "error_code": status, "description": description or _DESCRIPTIONS[status]}
        if self.before_answer is not None:
            self.before_answer(body)
        with self._lock:
            self._next_id += 1
            self.posts.append({"method": method, **body, "message_id": self._next_id})
            return 200, {"ok": True, "result": {"message_id": self._next_id, "date": 1733140800,
                                                "chat": {"id": -1001234567890, "type": "channel", "title": "Levant"}}}

    def _check(self, method: str, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "the body is not an object"
        required, optional = PARAMETERS[method]
        if missing := required - body.keys():
            return f"parameter {sorted(missing)[0]} is required"
        if unknown := body.keys() - required - optional:
            return f"unknown parameters {sorted(unknown)}"
        if body["chat_id"] != self.chat:
            return "chat not found"
        if body.get("parse_mode") != "HTML":
            return f"parse_mode is {body.get('parse_mode')!r}, not HTML"
        text, limit, what = ((body.get("caption", ""), 1024, "message caption") if method == "sendPhoto"
                             else (body["text"], 4096, "message text"))
        try:
            shown = parse_html(str(text))
        except EntityError as exc:
            return f"can't parse entities: {exc}"
        if method == "sendMessage" and not shown.strip():
            return "message text is empty"
        if utf16(shown) > limit:
            return f"{what} is too long ({utf16(shown)} > {limit})"
        if method == "sendPhoto" and not str(body["photo"]).startswith(("https://", "http://")):
            return "wrong HTTP URL specified"
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = server.answer(self.path, raw, self.headers.get("Content-Type", ""))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler


_DESCRIPTIONS = {400: "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0",
                 401: "Unauthorized", 403: "Forbidden: bot is not a member of the channel chat",
                 500: "Internal Server Error", 502: "Bad Gateway"}


def _bad(description: str) -> dict[str, Any]:
    return {"ok": False, "error_code": 400, "description": description}
