"""`publisher check --transport`: connect to the configured mail server with the configured
credentials and say what it offers (EHLO extensions, STARTTLS, AUTH), without sending anything."""

from __future__ import annotations

import smtplib
import socket
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from publisher.config import Config, OutboxSettings, SmtpSettings
from publisher.provider_probe import ProbeFailed, probe_provider


@dataclass
class ProbeReport:
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append(line)


def probe_transport(config: Config) -> ProbeReport:
    settings = config.mail.transport
    if isinstance(settings, SmtpSettings):
        return probe_smtp(settings)
    if isinstance(settings, OutboxSettings):
        return probe_outbox(config.path(settings.path))
    report = ProbeReport()
    try:
        report.lines.extend(probe_provider(settings))
        report.lines.append("nothing was sent")
    except ProbeFailed as exc:
        report.fail(str(exc))
    return report


def probe_outbox(path: Path) -> ProbeReport:
    report = ProbeReport()
    try:
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path / "tmp", prefix=".probe-"):
            pass
    except OSError as exc:
        report.fail(
            f"outbox {path}: not writable ({exc.strerror or exc}); fix mail.transport.path or its permissions"
        )
        return report
    report.lines.append(
        f"outbox {path}: a writable Maildir; messages are files in {path / 'new'}, nothing leaves this machine"
    )
    return report


def _context(settings: SmtpSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_file)


def probe_smtp(settings: SmtpSettings) -> ProbeReport:
    report = ProbeReport()
    where = f"{settings.host}:{settings.port} (security: {settings.security})"
    try:
        context = _context(settings) if settings.security != "none" else None
    except (OSError, ssl.SSLError) as exc:
        report.fail(
            f"cannot read the CA file {settings.ca_file!r}: {exc} (hint: check mail.transport.ca_file)"
        )
        return report
    connection: smtplib.SMTP | None = None
    try:
        hostname = settings.local_hostname or socket.getfqdn()
        if settings.security == "tls":
            connection = smtplib.SMTP_SSL(settings.host, settings.port, local_hostname=hostname,
                                          timeout=settings.timeout, context=context)  # fmt: skip
            report.lines.append(f"connected to {where}: TLS from the first byte")
        else:
            connection = smtplib.SMTP(
                settings.host, settings.port, local_hostname=hostname, timeout=settings.timeout
            )
            report.lines.append(f"connected to {where}")
        code, banner = connection.ehlo()
        report.lines.append(f"EHLO {code}: {_text(banner).splitlines()[0] if banner else ''}")
        report.lines.append("extensions: " + (", ".join(_extensions(connection)) or "none"))
        if settings.security == "starttls":
            if not connection.has_extn("starttls"):
                report.fail("STARTTLS: not offered; the password would cross the network in clear. "
                            "Use security: tls (port 465) or a server that offers STARTTLS")  # fmt: skip
                return report
            code, reply = connection.starttls(context=context)
            if code != 220:
                report.fail(f"STARTTLS refused: {code} {_text(reply)}")
                return report
            connection.ehlo()
            report.lines.append(
                f"STARTTLS: ok ({_tls(connection)}); after it: " + ", ".join(_extensions(connection))
            )
        elif settings.security == "tls":
            report.lines.append(f"TLS: {_tls(connection)}")
        else:
            report.lines.append("TLS: none (security: none); fine for a relay on this machine only")
        mechanisms = (connection.esmtp_features.get("auth") or "").split()
        if settings.username is None:
            report.lines.append(
                "AUTH: not used (no username in config.yaml)"
                + (f"; the server offers {' '.join(mechanisms)}" if mechanisms else "")
            )
        elif not mechanisms:
            report.fail(
                f"AUTH: the server offers none, but mail.transport.username {settings.username!r} is set"
            )
        else:
            connection.login(settings.username, settings.password or "")
            report.lines.append(f"AUTH: logged in as {settings.username!r} (offered: {' '.join(mechanisms)})")
        report.lines.append("nothing was sent")
    except smtplib.SMTPAuthenticationError as exc:
        report.fail(f"AUTH: {where} refused user {settings.username!r}: {exc.smtp_code} {_text(exc.smtp_error)}; "
                    "check mail.transport.username and password (and the environment variable it comes from)")  # fmt: skip
    except ssl.SSLCertVerificationError as exc:
        report.fail(f"{where}: its TLS certificate is not trusted ({exc.verify_message}); check the host name "
                    "or set mail.transport.ca_file")  # fmt: skip
    except ssl.SSLError as exc:
        report.fail(
            f"{where}: TLS failed ({exc.reason or exc}); security: tls is for port 465, starttls for 587"
        )
    except smtplib.SMTPResponseException as exc:
        report.fail(f"{where} refused the session: {exc.smtp_code} {_text(exc.smtp_error)}")
    except (smtplib.SMTPException, OSError) as exc:
        report.fail(
            f"cannot connect to {where}: {exc or type(exc).__name__}; check mail.transport.host and port"
        )
    finally:
        if connection is not None:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()
    return report


def _extensions(connection: smtplib.SMTP) -> list[str]:
    return [f"{name.upper()} {value}".strip() for name, value in connection.esmtp_features.items()]


def _tls(connection: smtplib.SMTP) -> str:
    sock = connection.sock
    if isinstance(sock, ssl.SSLSocket):
        return f"{sock.version()}, {(sock.cipher() or ('?',))[0]}"
    return "not encrypted"


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


__all__ = ["ProbeReport", "probe_outbox", "probe_smtp", "probe_transport"]
