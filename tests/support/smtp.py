"""A real SMTP server on 127.0.0.1 that records what it receives and misbehaves on request.

Built on aiosmtpd's threaded Controller, bound to an ephemeral port. Usable from any test:

    with RecordingSmtpServer(replies={"busy@example.test": "450 4.2.1 busy"}) as server:
        transport = SmtpTransport(server.settings())
        ...
        assert server.messages[0].data == expected_bytes
        assert server.connections == 1

Misbehaviour knobs: `delay` (seconds before answering each DATA), `replies` (recipient -> reply, at
RCPT or at the end of DATA, always or a number of times; a 421 reply also closes the connection, and
the reply DROP closes it without answering), `pipelining` (offer PIPELINING or not),
`disconnect_after` (close the connection right after accepting the Nth message, once), TLS ("starttls" or "implicit") with a self-signed certificate, and
AUTH LOGIN/PLAIN for one fixed user. See smtp_sink.py to run it as a separate process.

A gate instead of a stopwatch: `hold_after=N` accepts N messages, then holds its answer to every
further DATA until `release()` (or HOLD_BOUND seconds, so nothing hangs for ever). `wait_holding()`
returns once a message is being held: a test then knows exactly where the sender stands.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from publisher.config import SmtpSettings
from tests.support.tls import Certificate, self_signed_certificate

DROP = "DROP"  # as a scripted reply: close the connection at once, without answering
LOOPBACK = "127.0.0.1"
HOLD_BOUND = 120.0  # seconds a held DATA waits for release() at most

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


@dataclass
class Scripted:
    """A reply the server gives for one recipient instead of accepting."""

    reply: str  # a full reply line such as "550 5.1.1 no such user", or DROP
    # which step answers: MAIL FROM (the key is then the sender), RCPT TO, or the end of DATA
    at: Literal["mail", "rcpt", "data"] = "rcpt"
    times: int | None = None  # how many times; None: always


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # exactly the bytes received, dot-stuffing removed
    connection: int  # 1-based number of the connection that carried it
    tls: bool
    authenticated_as: str | None
    queue_id: str

    @property
    def message_id(self) -> str | None:
        header_end = self.data.find(b"\r\n\r\n")
        match = _MESSAGE_ID.search(self.data, 0, header_end if header_end >= 0 else len(self.data))
        return match.group(1).decode("ascii", "replace") if match else None


class RecordingSmtpServer:
    """A recording SMTP server on 127.0.0.1 and an ephemeral port; start() / stop() or `with`."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        replies: Mapping[str, str | Scripted] | None = None,
        disconnect_after: int | None = None,
        tls: Literal["none", "starttls", "implicit"] = "none",
        certificate: Certificate | None = None,
        certificate_dir: Path | None = None,
        auth: tuple[str, str] | None = None,
        keep_messages: bool = True,
        queue_ids: bool = True,
        pipelining: bool = True,
        on_message: Callable[[ReceivedMessage], None] | None = None,
        port: int = 0,
        hold_after: int | None = None,
        smtputf8: bool = True,
    ) -> None:
        """certificate (or certificate_dir to make one in) is needed for TLS; auth = (user, password)."""
        self.delay = delay
        self.disconnect_after = disconnect_after
        self.tls = tls
        self.auth = auth
        self.keep_messages = keep_messages
        self.queue_ids = queue_ids
        self.pipelining = pipelining
        self.on_message = on_message
        self.hold_after = hold_after
        self.smtputf8 = smtputf8  # offer SMTPUTF8 (non-ASCII addresses) or not
        self._released = threading.Event()
        self._holding = threading.Event()
        self._scripts = {
            address.lower(): reply if isinstance(reply, Scripted) else Scripted(reply)
            for address, reply in (replies or {}).items()
        }
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._received = 0
        self._connections = 0
        self._logins_refused = 0
        self._data_started = 0
        if tls != "none" and certificate is None:
            if certificate_dir is None:
                raise ValueError("TLS needs a certificate or a certificate_dir to make one in")
            certificate = self_signed_certificate(certificate_dir)
        self.certificate = certificate
        self._controller = self._make_controller(port)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        self._controller.start()
        return self

    def stop(self) -> None:
        self.release()
        self._controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def settings(self, **overrides: Any) -> SmtpSettings:
        """SmtpSettings pointing at this server (security and login follow how it was built)."""
        values: dict[str, Any] = {
            "kind": "smtp",
            "host": self.host,
            "port": self.port,
            "security": {"none": "none", "starttls": "starttls", "implicit": "tls"}[self.tls],
            "timeout": 5.0,
            "local_hostname": "sender.test",
        }
        if self.auth:
            values["username"], values["password"] = self.auth
        values.update(overrides)
        return SmtpSettings(**values)

    # --- what it saw -----------------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def received(self) -> int:
        """Messages accepted so far (counted even when keep_messages is False)."""
        with self._lock:
            return self._received

    @property
    def connections(self) -> int:
        """Client connections that said EHLO/HELO (the controller's own readiness probe is not one)."""
        with self._lock:
            return self._connections

    @property
    def logins_refused(self) -> int:
        with self._lock:
            return self._logins_refused

    @property
    def data_started(self) -> int:
        """DATA commands whose content arrived (held, refused and accepted ones alike)."""
        with self._lock:
            return self._data_started

    def wait_holding(self, timeout: float | None = 30.0) -> bool:
        """Wait until a DATA is being held (hold_after); False if none was within `timeout`."""
        return self._holding.wait(timeout)

    def release(self) -> None:
        """Answer the held DATA and every later one (callable from any thread)."""
        self._released.set()

    def script(self, address: str, reply: str | Scripted) -> None:
        """From now on, answer for `address` as `replies` would have (see __init__)."""
        with self._lock:
            self._scripts[address.lower()] = reply if isinstance(reply, Scripted) else Scripted(reply)

    def refuse_new_connections(self) -> None:
        """Stop listening (callable from any thread, hooks included); open connections stay."""
        controller = self._controller
        if isinstance(controller.server, asyncio.Server):
            controller.loop.call_soon_threadsafe(controller.server.close)

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.received >= count:
                return True
            time.sleep(0.01)
        return self.received >= count

    # --- aiosmtpd hooks (run on the controller's thread) -----------------------------------------

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self._count_connection(server)
        if self.pipelining:
            # aiosmtpd reads commands one line at a time, so pipelined commands work; it just does not say so
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        session.host_name = hostname
        self._count_connection(server)
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        scripted = self._take(address, "mail")
        if scripted is not None:
            return self._misbehave(server, scripted)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        scripted = self._take(address, "rcpt")
        if scripted is not None:
            return self._misbehave(server, scripted)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self._data_started += 1
            hold = self.hold_after is not None and self._received >= self.hold_after
        if hold and not self._released.is_set():
            self._holding.set()
            await asyncio.to_thread(self._released.wait, HOLD_BOUND)
        if self.delay:
            await asyncio.sleep(self.delay)
        for address in envelope.rcpt_tos:
            scripted = self._take(address, "data")
            if scripted is not None:
                return self._misbehave(server, scripted)
        data = envelope.original_content or b""
        with self._lock:
            self._received += 1
            number = self._received
            queue_id = f"Q{number:07d}"
            message = ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=bytes(data),
                connection=getattr(server, "_recording_connection", 0),
                # session.ssl is set only after STARTTLS; the transport knows about implicit TLS too
                tls=server.transport is not None and server.transport.get_extra_info("ssl_object") is not None,
                authenticated_as=session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
                queue_id=queue_id,
            )
            if self.keep_messages:
                self._messages.append(message)
        if self.on_message is not None:
            self.on_message(message)
        if self.disconnect_after is not None and number == self.disconnect_after:
            _close_after_reply(server)
        return f"250 2.0.0 Ok: queued as {queue_id}" if self.queue_ids else "250 2.0.0 Ok"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self.auth is not None
        user, password = self.auth
        if isinstance(auth_data, LoginPassword) and auth_data.login == user.encode() and auth_data.password == password.encode():
            return AuthResult(success=True, auth_data=auth_data)
        with self._lock:
            self._logins_refused += 1
        return AuthResult(success=False, handled=False)

    # --- helpers ---------------------------------------------------------------------------------

    def _count_connection(self, server: SMTP) -> None:
        if getattr(server, "_recording_connection", None) is None:
            with self._lock:
                self._connections += 1
                server._recording_connection = self._connections  # type: ignore[attr-defined]

    def _take(self, address: str, at: str) -> Scripted | None:
        with self._lock:
            scripted = self._scripts.get(address.lower())
            if scripted is None or scripted.at != at:
                return None
            if scripted.times is not None:
                scripted.times -= 1
                if scripted.times <= 0:
                    del self._scripts[address.lower()]
            return scripted

    @staticmethod
    def _misbehave(server: SMTP, scripted: Scripted) -> str:
        if scripted.reply == DROP:
            # abort() marks the transport lost at once, so the reply pushed after this hook is discarded
            assert server.transport is not None
            server.transport.abort()  # type: ignore[attr-defined]
            return "421 4.4.2 dropped"
        if scripted.reply.startswith("421"):
            _close_after_reply(server)  # what a real server does after saying 421
        return scripted.reply

    def _make_controller(self, port: int) -> Controller:
        kwargs: dict[str, Any] = {"server_hostname": "recording.test", "ready_timeout": 30.0,
                                  "enable_SMTPUTF8": self.smtputf8}
        if self.auth is not None:
            kwargs["authenticator"] = self._authenticate
            # aiosmtpd counts only STARTTLS as TLS for AUTH; implicit TLS is encrypted from the start
            kwargs["auth_require_tls"] = self.tls == "starttls"
        if self.tls == "starttls":
            assert self.certificate is not None
            kwargs["tls_context"] = self.certificate.server_context()
            kwargs["require_starttls"] = True
        elif self.tls == "implicit":
            assert self.certificate is not None
            kwargs["ssl_context"] = self.certificate.server_context()
        return _EphemeralPortController(self, hostname=LOOPBACK, port=port, **kwargs)


def _close_after_reply(server: SMTP) -> None:
    """Close once the reply now being returned has been written (it is pushed before the loop runs this)."""
    transport = server.transport
    if transport is not None:
        server.loop.call_soon(transport.close)


class _EphemeralPortController(Controller):
    """aiosmtpd's Controller probes self.port after binding; with port 0 read the real one first."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()
