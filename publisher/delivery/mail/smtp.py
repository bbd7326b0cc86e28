"""SMTP delivery over one reused smtplib connection, one recipient per transaction.

smtplib opens the connection (TLS, EHLO, AUTH) and reads replies; the transaction itself (MAIL,
RCPT, DATA) is written here rather than through ``sendmail``, because sendmail throws away the reply
to DATA (it carries the server's queue id), hides at which step a refusal came, and cannot pipeline.
The message bytes are sent as given: only dot-stuffing, which SMTP requires, is applied (or taken
ready-made from ``OutgoingMessage.wire``, which the composer builds from parts stuffed once).

Connection policy: opened lazily on the first message, kept across messages and batches until
``close()``. If the server drops it (or answers 421, "closing"), the transport reconnects once and
retries that message. A message whose DATA was fully sent when the link broke may have been accepted
without the reply reaching us; retrying it then can duplicate it, which is the lesser harm (it is
also what the next run would do with a temporary failure). A timeout waiting for a reply is not
retried at once: the message is reported temporary and the connection discarded.

Batches: with several senders (mail.connections > 1) the engine hands over 4 messages per call
(`batch_for`): the handoff between threads is paid once per 4, and with PIPELINING the next
message's MAIL, RCPT and DATA go out in the same write as this one's content (RFC 2920 allows
pipelining across transactions), a round trip fewer per message. A stop requested mid-batch
(`interrupt_on`) ends the batch after the message in flight; the rest is left out of the report.
With one connection each message is its own call, committed before the next is sent.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Sequence

from publisher.config import SmtpSettings
from publisher.delivery.mail.base import MailTransport, accepted, envelope_problem, refused
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SendReport, SendResult

log = logging.getLogger(__name__)

# "250 2.0.0 Ok: queued as 4XyZ12" (Postfix), "250 OK id=1rABCd-000123-Xy" (Exim)
_QUEUE_ID = re.compile(r"queued as\s+<?([^\s<>;,]+)|\bid=<?([^\s<>;,]+)", re.IGNORECASE)

# RFC 5321 4.5.3.1.10: 552 at RCPT ("too many recipients / storage") is to be treated as temporary.
_TEMPORARY_5XX_AT_RCPT = {552}


class _Unreachable(Exception):
    """The server cannot be (re)connected, or TLS / login fails. The message is the remedy."""


class _Refused(Exception):
    """The server answered a step with a non-success code (other than 421)."""

    def __init__(self, step: str, code: int, text: str) -> None:
        self.step, self.code, self.text = step, code, text
        super().__init__(f"{code} {text}")


class _Closing(Exception):
    """421: the server is closing the connection; the message was not accepted."""

    def __init__(self, step: str, text: str) -> None:
        super().__init__(f"421 {text} (at {step})")


class SmtpTransport(MailTransport):
    """Sends each message with its own envelope over one kept-open SMTP connection."""

    name = "smtp"
    max_batch = 4  # with several senders (batch_for); see the module docstring

    def __init__(self, settings: SmtpSettings, *, ssl_context: ssl.SSLContext | None = None) -> None:
        """ssl_context: which certificates to trust; default: the system's (SSL_CERT_FILE honoured)."""
        self.settings = settings
        self.connections_opened = 0
        self._ssl_context = ssl_context
        self._connection: smtplib.SMTP | None = None
        self._local_hostname: str | None = settings.local_hostname
        # the next message of the batch, whose envelope may go out in the same write as this one's
        # content (RFC 2920 pipelining across transactions); which envelope went out on which link
        self._next: OutgoingMessage | None = None
        self._sent_ahead: tuple[smtplib.SMTP, OutgoingMessage, tuple[str, ...]] | None = None
        self._stop: threading.Event | None = None

    def batch_for(self, connections: int) -> int:
        """One message per call on a single connection (each result committed before the next send:
        a crash repeats at most the one in flight); 4 when several senders share the work."""
        return self.max_batch if connections > 1 else 1

    def interrupt_on(self, stop: threading.Event) -> None:
        """Once `stop` is set, a batch ends after the message in flight (the rest stays pending)."""
        self._stop = stop

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def connected(self) -> bool:
        return self._connection is not None

    # --- the contract ----------------------------------------------------------------------------

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport:
        results: list[SendResult] = []
        try:
            for index, message in enumerate(batch):
                if index and self._stopping():
                    break  # the rest is not in the report: pending, untouched, for the next run
                self._next = batch[index + 1] if index + 1 < len(batch) else None
                try:
                    results.append(self._deliver(message))
                except _Unreachable as exc:
                    if not any(result.ok for result in results):
                        # nothing accepted yet: one clear error beats a batch of identical failures
                        raise TransportUnavailable(str(exc)) from None
                    log.warning("SMTP %s unreachable mid-batch; %d message(s) left pending: %s",
                                self.address, len(batch) - index, exc)
                    reason = f"not attempted, SMTP server unreachable: {exc}"
                    results.extend(refused(rest, reason, temporary=True) for rest in batch[index:])
                    break
        finally:
            self._next = None
            if self._sent_ahead is not None:
                self._discard()  # an envelope went out for a message this batch did not send
        return SendReport(results)

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            connection.close()

    # --- one message -----------------------------------------------------------------------------

    def _deliver(self, message: OutgoingMessage) -> SendResult:
        problem = envelope_problem(message)
        if problem:
            return refused(message, problem, temporary=False)
        for attempt in (1, 2):
            connection = self._open()
            try:
                queue_id = self._transaction(connection, message)
            except _Refused as exc:
                if self._sent_ahead is not None:
                    # the next envelope went out behind this content: its replies are still to come, and
                    # an RSET now would land in its DATA. A new link is the clean start (nothing of the
                    # next message was sent but its envelope; the server drops an unfinished DATA).
                    self._discard()
                else:
                    self._reset(connection)
                return refused(message, self._describe(exc), temporary=_is_temporary(exc))
            except smtplib.SMTPNotSupportedError as exc:
                # SMTPUTF8 needed for a non-ASCII address and the server lacks it
                self._reset(connection)
                return refused(message, f"{exc} (needed for {message.recipient!r})", temporary=False)
            except (_Closing, smtplib.SMTPException, OSError) as exc:
                self._discard()
                if _timed_out(exc):
                    return refused(message, f"no answer from {self.address} within "
                                   f"{self.settings.timeout:g} s (mail.transport.timeout)", temporary=True)
                if attempt == 1:
                    log.info("SMTP connection to %s lost (%s); reconnecting", self.address, exc)
                    continue
                return refused(message, f"connection to {self.address} lost twice: {exc}", temporary=True)
            return accepted(message, queue_id or message.message_id)
        raise AssertionError("unreachable: the loop returns on its second attempt")

    def _transaction(self, connection: smtplib.SMTP, message: OutgoingMessage) -> str | None:
        """MAIL, RCPT, DATA, content; returns the queue id from the final reply when it names one.

        With PIPELINING (RFC 2920) the three commands go out in one write and their replies are read
        in order, halving the round trips per message; otherwise one command per round trip.
        """
        ahead, self._sent_ahead = self._sent_ahead, None
        if ahead is not None and ahead[0] is connection and ahead[1] is message:
            commands = _envelope(ahead[2])  # written with the previous message's content: read the replies
        else:
            options, encoding = self._mail_options(connection, message)
            commands = _commands(message, options)
            if connection.has_extn("pipelining"):
                connection.send("".join(f"{line}\r\n" for _, line, _ in commands).encode(encoding))
        if connection.has_extn("pipelining"):
            replies = []
            for step, _, _ in commands:
                code, reply = connection.getreply()
                if code == 421:
                    raise _Closing(step, _text(reply))
                replies.append((step, code, reply))
            refusal = next((r for r, (_, _, wanted) in zip(replies, commands, strict=True) if r[1] not in wanted), None)
            if refusal is not None:
                if replies[-1][1] == 354:  # DATA accepted despite the refusal: end it with no content
                    connection.send(b".\r\n")
                    connection.getreply()
                _expect(*refusal, ())
        else:
            for step, line, wanted in commands:
                connection.send(f"{line}\r\n".encode(encoding))
                code, reply = connection.getreply()
                _expect(step, code, reply, wanted)
        content = message.wire if message.wire is not None else _dot_stuffed(message.data)
        connection.send(content + self._envelope_ahead(connection))
        code, reply = connection.getreply()
        _expect("end of DATA", code, reply, (250,))
        match = _QUEUE_ID.search(_text(reply))
        return (match.group(1) or match.group(2)) if match else None

    def _envelope_ahead(self, connection: smtplib.SMTP) -> bytes:
        """The next message's MAIL, RCPT and DATA, to follow this content in the same write, when the
        server pipelines and the next envelope is usable (else b"": it goes out on its own)."""
        following = self._next
        if (following is None or not connection.has_extn("pipelining") or envelope_problem(following)
                or self._stopping()):
            return b""
        try:
            options, encoding = self._mail_options(connection, following)
        except smtplib.SMTPNotSupportedError:
            return b""
        commands = _commands(following, options)
        self._sent_ahead = (connection, following, tuple(line for _, line, _ in commands))
        return "".join(f"{line}\r\n" for _, line, _ in commands).encode(encoding)

    @staticmethod
    def _mail_options(connection: smtplib.SMTP, message: OutgoingMessage) -> tuple[str, str]:
        """The MAIL FROM parameters and the encoding of the command lines."""
        options = ""
        if connection.has_extn("size"):
            options += f" SIZE={len(message.data)}"  # lets the server refuse early, before the content
        if not message.data.isascii() and connection.has_extn("8bitmime"):
            options += " BODY=8BITMIME"
        if message.sender.isascii() and message.recipient.isascii():
            return options, "ascii"
        if not connection.has_extn("smtputf8"):
            raise smtplib.SMTPNotSupportedError("the server does not offer SMTPUTF8")
        return options + " SMTPUTF8", "utf-8"

    def _describe(self, exc: _Refused) -> str:
        if exc.step == "MAIL FROM":
            return (f"{exc.code} {exc.text} (server {self.address} refused the sender at MAIL FROM; "
                    "check the edition's from address and the SMTP account)")
        return f"{exc.code} {exc.text} (at {exc.step}, server {self.address})"

    # --- the connection --------------------------------------------------------------------------

    def _open(self) -> smtplib.SMTP:
        if self._connection is None:
            self._connection = self._connect()
            self.connections_opened += 1
        return self._connection

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        self._sent_ahead = None
        if connection is not None:
            connection.close()

    def _reset(self, connection: smtplib.SMTP) -> None:
        """RSET after a failed transaction so the next one starts clean; drop the link if that fails."""
        try:
            code, _ = connection.rset()
        except (smtplib.SMTPException, OSError):
            code = -1
        if code != 250:
            self._discard()

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        if self._local_hostname is None:
            # smtplib would look this up on every connect; once is enough
            self._local_hostname = socket.getfqdn()
        where = f"SMTP server {self.address} (security: {settings.security})"
        try:
            connection = self._handshake()
        except smtplib.SMTPAuthenticationError as exc:
            raise _Unreachable(
                f"{where} refused the login of user {settings.username!r}: {exc.smtp_code} {_text(exc.smtp_error)}; "
                "check mail.transport.username and mail.transport.password in config.yaml "
                "(and the environment variable the password comes from)"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise _Unreachable(
                f"{where}: its TLS certificate is not trusted ({exc.verify_message}); "
                "check mail.transport.host is the name on the certificate, or point SSL_CERT_FILE at the CA"
            ) from exc
        except ssl.SSLError as exc:
            raise _Unreachable(
                f"{where}: TLS failed ({exc.reason or exc}); use security: tls for implicit TLS "
                "(usually port 465) and security: starttls for plain-then-upgrade (usually port 587)"
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise _Unreachable(f"{where}: {exc}; check mail.transport.security and username") from exc
        except smtplib.SMTPResponseException as exc:
            raise _Unreachable(
                f"{where} refused the session: {exc.smtp_code} {_text(exc.smtp_error)}; "
                "check mail.transport.host and mail.transport.port in config.yaml"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise _Unreachable(
                f"cannot connect to {where}: {exc or type(exc).__name__}; "
                "check mail.transport.host and mail.transport.port in config.yaml, and that the server runs"
            ) from exc
        log.info("SMTP connected to %s (%s)", self.address, settings.security)
        return connection

    def _handshake(self) -> smtplib.SMTP:
        settings = self.settings
        connection: smtplib.SMTP
        if settings.security == "tls":
            connection = smtplib.SMTP_SSL(settings.host, settings.port, local_hostname=self._local_hostname,
                                          timeout=settings.timeout, context=self._context())
        else:
            connection = smtplib.SMTP(settings.host, settings.port, local_hostname=self._local_hostname,
                                      timeout=settings.timeout)
        try:
            connection.ehlo_or_helo_if_needed()
            if settings.security == "starttls":
                if not connection.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
                code, reply = connection.starttls(context=self._context())
                if code != 220:
                    raise smtplib.SMTPResponseException(code, reply)
                connection.ehlo()
            if settings.username is not None:
                # never log or echo the password; smtplib's debug output would, so it stays off
                connection.login(settings.username, settings.password or "")
        except BaseException:
            connection.close()
            raise
        return connection

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            ca_file = self.settings.ca_file
            try:
                self._ssl_context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise TransportUnavailable(
                    f"cannot read the CA file {ca_file!r}: {exc} (hint: check mail.transport.ca_file in config.yaml)"
                ) from exc
        return self._ssl_context


_Command = tuple[str, str, tuple[int, ...]]


def _commands(message: OutgoingMessage, options: str) -> tuple[_Command, ...]:
    return _envelope((f"MAIL FROM:<{message.sender}>{options}", f"RCPT TO:<{message.recipient}>", "DATA"))


def _envelope(lines: tuple[str, ...]) -> tuple[_Command, ...]:
    """The three steps of a transaction with the replies each may get."""
    mail, rcpt, data = lines
    return (("MAIL FROM", mail, (250,)), ("RCPT TO", rcpt, (250, 251)), ("DATA", data, (354,)))


def _expect(step: str, code: int, reply: bytes | str, wanted: tuple[int, ...]) -> None:
    if code in wanted:
        return
    if code == 421:
        raise _Closing(step, _text(reply))
    raise _Refused(step, code, _text(reply))


def _is_temporary(exc: _Refused) -> bool:
    if exc.step == "MAIL FROM":
        # the sender or the account is refused, not this recipient: never fail a subscriber for it
        return True
    if 500 <= exc.code <= 599:
        return exc.step == "RCPT TO" and exc.code in _TEMPORARY_5XX_AT_RCPT
    return True  # 4xx, and anything unparseable (-1): retrying later is the safe reading


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA content as sent: a "." opening a line doubled (RFC 5321 4.5.2), then the end marker.

    Same result as smtplib's regular expression, several times faster on a 25 KB message.
    """
    stuffed = data.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def _timed_out(exc: BaseException) -> bool:
    """smtplib turns a read timeout into SMTPServerDisconnected; the cause survives as __context__."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())
