"""One face for every transport's test server, so tests/test_transport_conformance.py can run the same
scenarios against SendGrid, Mailgun, Postmark and SES (their contract servers) and SMTP (aiosmtpd).

Each harness starts its server, builds the real transport pointed at it (with a recorder in place of
time.sleep), and scripts the provider's own way of saying each thing: a 429 with Retry-After, a 5xx,
credentials refused (from the start or after N acceptances), a refusal of one recipient, an acceptance
without an id.
"""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Any, Self

from publisher.config import PostmarkSettings, SendGridSettings
from publisher.delivery.mail.base import MailTransport
from publisher.delivery.mail.mailgun import MailgunTransport
from publisher.delivery.mail.postmark import PostmarkTransport
from publisher.delivery.mail.sendgrid import SendGridTransport
from publisher.delivery.mail.ses import SesTransport
from publisher.delivery.mail.smtp import SmtpTransport
from tests.support.provider_servers.mailgun import MailgunServer
from tests.support.provider_servers.postmark import PostmarkServer
from tests.support.provider_servers.sendgrid import SendGridServer
from tests.support.provider_servers.ses import SesServer
from tests.support.smtp import ReceivedMessage, RecordingSmtpServer, Scripted

MAX_RETRY_AFTER = 5.0  # seconds a harness's transport waits in place at most


class Harness:
    """What every transport's scenario needs; one subclass per transport."""

    name = ""
    http = True  # SMTP has no Retry-After: the 429 scenarios are the HTTP providers'
    address_key = "mail.transport.base_url"  # what a wrong-address error must name
    credentials_key = ""  # what a refused-credentials error must name

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.server: Any = None

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def __enter__(self) -> Self:
        self.server.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.server.stop()

    def violations(self) -> list[str]:
        return list(getattr(self.server, "violations", []))

    def forget_violations(self) -> None:
        if hasattr(self.server, "violations"):
            self.server.violations.clear()

    # --- per transport -----------------------------------------------------------------------------
    def transport(self, **overrides: Any) -> MailTransport:
        raise NotImplementedError

    def wrong_address(self) -> MailTransport:
        """The transport pointed at an address that is not the service (a base_url with a stray path)."""
        return self.transport(base_url=f"{self.server.url}/not-the-api")

    def wrong_credentials(self) -> MailTransport:
        raise NotImplementedError

    def accepted(self) -> int:
        return len(self.server.accepted)

    def without_ids(self) -> None:
        self.server.message_ids = False

    def revoke_after(self, accepted: int) -> None:
        self.server.revoke_after = accepted

    def refuse(self, recipient: str) -> None:
        raise NotImplementedError

    def throttle_next(self, retry_after: int) -> None:
        raise NotImplementedError

    def fail_next(self, recipient: str) -> None:
        """The next attempt (for `recipient`) fails with the service's own server error."""
        raise NotImplementedError


class SendGridHarness(Harness):
    name = "sendgrid"
    credentials_key = "mail.transport.api_key"

    def __init__(self) -> None:
        super().__init__()
        self.server = SendGridServer()

    def transport(self, **overrides: Any) -> MailTransport:
        values: dict[str, Any] = {"kind": "sendgrid", "api_key": self.server.api_key, "base_url": self.server.url,
                                  "timeout": 5.0, "max_retry_after": MAX_RETRY_AFTER, **overrides}
        return SendGridTransport(SendGridSettings(**values), sleep=self.sleep)

    def wrong_credentials(self) -> MailTransport:
        return self.transport(api_key="SG.revoked")

    def refuse(self, recipient: str) -> None:
        self.server.refuse(recipient)

    def throttle_next(self, retry_after: int) -> None:
        self.server.fail_next(429, reset_in=retry_after)  # as SendGrid says it: X-RateLimit-Reset, a unix time

    def fail_next(self, recipient: str) -> None:
        self.server.fail_next(500)


class MailgunHarness(Harness):
    name = "mailgun"
    credentials_key = "mail.transport.api_key"

    def __init__(self) -> None:
        super().__init__()
        self.server = MailgunServer()

    def transport(self, **overrides: Any) -> MailTransport:
        return MailgunTransport(self.server.settings(max_retry_after=MAX_RETRY_AFTER, **overrides), sleep=self.sleep)

    def wrong_credentials(self) -> MailTransport:
        return self.transport(api_key="key-revoked")

    def refuse(self, recipient: str) -> None:
        self.server.refuse[recipient] = "'to' parameter is not a valid address. please check documentation"

    def throttle_next(self, retry_after: int) -> None:
        self.server.fail_next(429, "account-requests-per-sec limit exceeded", headers={"Retry-After": str(retry_after)})

    def fail_next(self, recipient: str) -> None:
        self.server.fail_next(500, "internal error")


class PostmarkHarness(Harness):
    name = "postmark"
    credentials_key = "mail.transport.server_token"

    def __init__(self) -> None:
        super().__init__()
        self.server = PostmarkServer()

    def transport(self, **overrides: Any) -> MailTransport:
        values: dict[str, Any] = {"kind": "postmark", "server_token": self.server.server_token,
                                  "base_url": self.server.url, "timeout": 5.0, "max_retry_after": MAX_RETRY_AFTER,
                                  **overrides}
        transport = PostmarkTransport(PostmarkSettings(**values), sleep=self.sleep)
        transport.chunk_size = 2  # so that a send of three is two requests: "an earlier chunk" exists
        return transport

    def wrong_credentials(self) -> MailTransport:
        return self.transport(server_token="revoked-token")

    def refuse(self, recipient: str) -> None:
        self.server.refuse(recipient, 406)

    def throttle_next(self, retry_after: int) -> None:
        self.server.fail_next(429, retry_after=retry_after)

    def fail_next(self, recipient: str) -> None:
        self.server.fail_next(500)


class SesHarness(Harness):
    name = "ses"
    credentials_key = "mail.transport.access_key_id"

    def __init__(self) -> None:
        super().__init__()
        self.server = SesServer()

    def transport(self, **overrides: Any) -> MailTransport:
        return SesTransport(self.server.settings(max_retry_after=MAX_RETRY_AFTER, **overrides), sleep=self.sleep)

    def wrong_credentials(self) -> MailTransport:
        return self.transport(secret_access_key="revoked-secret")

    def violations(self) -> list[str]:  # a wrong key is a signature the server must refuse, not a breach
        return [v for v in self.server.violations if "signature" not in v.lower()]

    def refuse(self, recipient: str) -> None:
        self.server.refuse[recipient] = ("MessageRejected", f"Address blacklisted: {recipient}")

    def throttle_next(self, retry_after: int) -> None:
        self.server.fail_next(429, "TooManyRequestsException", "Maximum sending rate exceeded.",
                              headers={"Retry-After": str(retry_after)})

    def fail_next(self, recipient: str) -> None:
        self.server.fail_next(500, "InternalFailure", "We encountered an internal error. Please try again.")


class SmtpHarness(Harness):
    name = "smtp"
    http = False
    address_key = "mail.transport.host and mail.transport.port"
    credentials_key = "mail.transport.username and mail.transport.password"

    def __init__(self) -> None:
        super().__init__()
        self._revoke_after: int | None = None
        self.server = RecordingSmtpServer(auth=("sender", "s3cret"), on_message=self._on_message)

    def _on_message(self, message: ReceivedMessage) -> None:
        if self._revoke_after is not None and self.server.received >= self._revoke_after:
            self.server.auth = ("sender", "changed-since")  # the password is changed on the server

    def transport(self, **overrides: Any) -> MailTransport:
        return SmtpTransport(self.server.settings(**overrides))

    def wrong_address(self) -> MailTransport:
        with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return self.transport(port=port)

    def wrong_credentials(self) -> MailTransport:
        return self.transport(password="not-the-password")

    def accepted(self) -> int:
        return self.server.received

    def without_ids(self) -> None:
        self.server.queue_ids = False

    def revoke_after(self, accepted: int) -> None:
        self._revoke_after = accepted
        self.server.disconnect_after = accepted  # the connection ends, and the next login is refused

    def refuse(self, recipient: str) -> None:
        self.server.script(recipient, f"550 5.1.1 <{recipient}>: Recipient address rejected: User unknown")

    def fail_next(self, recipient: str) -> None:
        self.server.script(recipient, Scripted("451 4.3.0 Error: queue file write error", at="data", times=1))


HARNESSES: dict[str, type[Harness]] = {
    harness.name: harness for harness in (SendGridHarness, MailgunHarness, PostmarkHarness, SesHarness, SmtpHarness)
}
