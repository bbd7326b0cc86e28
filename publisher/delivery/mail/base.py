"""The contract every mail transport keeps, and small helpers they share.

A transport receives finished messages (bytes plus envelope) and reports, per message, whether the
next hop accepted it. The pipeline marks a delivery sent in the ledger right after the transport says
so, so a transport never claims an acceptance it did not get.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, Self

from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SendReport, SendResult

log = logging.getLogger(__name__)

# would break the SMTP command line or an outbox header line, or is not a bare address
_UNSAFE_IN_ADDRESS = re.compile(r"[\x00-\x20<>\x7f]")


class MailTransport(Protocol):
    """Sends batches of finished messages. One transport is used by one thread at a time.

    The contract of ``send(batch)``:

    - It returns a ``SendReport`` with exactly one ``SendResult`` per message, in batch order
      (``report.results[i]`` belongs to ``batch[i]``, same ``delivery_id``).
    - ``ok=True`` only when the next hop accepted the message (SMTP: 250 after DATA; outbox: the file
      is durably in new/). ``provider_message_id`` then says how to find it there: the next hop's id,
      or our own Message-ID when it named none (an acceptance without an id is still an acceptance;
      reporting it otherwise would send it twice).
    - A temporary refusal carries the server's own wait in ``retry_after`` when it gave one (a 429's
      Retry-After longer than the transport waits in place), so the retry is not due before it.
    - A refusal that may pass later (SMTP 4xx, a lost connection, a timeout) gives ``ok=False,
      temporary=True``; a refusal that will not (SMTP 5xx, an impossible address) gives
      ``temporary=False``. ``error`` carries the server's code and text or the local reason.
    - Per-message problems never raise.
    - ``send`` raises ``TransportUnavailable`` when the destination cannot be reached at all (cannot
      connect, TLS or login fails, outbox directory not usable) before any message of the batch was
      accepted. Its message names the setting to check. No message of that batch was accepted, so
      the caller keeps them all pending.
    - If the destination goes away after some message of the batch was accepted, ``send`` returns
      normally: the real results of the messages already handled, then ``temporary=True`` for the
      ones not attempted, with the reason.
    - An empty batch returns an empty report without touching the network or the disk.

    ``close()`` releases connections; it never raises and may be called more than once. Subclass this
    protocol explicitly to inherit ``with transport: ...`` support.
    """

    name: str
    # How many messages the pipeline should hand to one send() call. The report comes back only when
    # the whole batch is done, so a crash mid-batch loses the acceptances of that batch and they are
    # sent again on restart: keep it small where bigger batches buy no speed (SMTP has none to gain).
    max_batch: int

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def envelope_problem(message: OutgoingMessage) -> str | None:
    """Why this envelope cannot be sent anywhere, or None when it looks sendable.

    Checked before any I/O so that a malformed address fails permanently on its own instead of
    confusing the server (or injecting a header line into an outbox file).
    """
    for role, address in (("sender", message.sender), ("recipient", message.recipient)):
        if role == "recipient" and not address:
            return "empty recipient address"
        if _UNSAFE_IN_ADDRESS.search(address):
            return f"invalid {role} address {address!r}: must be a bare address without spaces or <>"
        if address and "@" not in address:
            return f"invalid {role} address {address!r}: no @domain"
    if not message.data:
        return "empty message data"
    return None


def accepted(message: OutgoingMessage, provider_message_id: str) -> SendResult:
    return SendResult(delivery_id=message.delivery_id, ok=True, provider_message_id=provider_message_id)


def refused(message: OutgoingMessage, error: str, *, temporary: bool, retry_after: float | None = None) -> SendResult:
    """retry_after: for a temporary refusal, the server's own wait in seconds (a 429's Retry-After)."""
    return SendResult(delivery_id=message.delivery_id, ok=False, error=error, temporary=temporary,
                      retry_after=retry_after if temporary else None)


def refused_recipient(message: OutgoingMessage, provider: str, text: str) -> SendResult:
    """A permanent refusal the provider says is about this recipient (an invalid or suppressed
    address). It names the address, which is how the verdict tells it from a refusal about us or the
    content (publisher.pipeline.verdict.classify): the subscriber bounces and the send goes on."""
    return refused(message, f"{provider} refused the recipient {message.recipient}: {text}", temporary=False)


def send_each(
    batch: Sequence[OutgoingMessage], deliver: Callable[[OutgoingMessage], SendResult], *, provider: str
) -> SendReport:
    """The contract for transports that hand over one message per call.

    If the transport becomes unavailable part way through, what was accepted stays accepted and the
    rest is reported temporary; if nothing was accepted yet, TransportUnavailable propagates.
    """
    results: list[SendResult] = []
    for index, message in enumerate(batch):
        try:
            results.append(deliver(message))
        except TransportUnavailable as exc:
            if not any(result.ok for result in results):
                raise
            log.warning("%s unavailable mid-batch; %d message(s) left pending: %s", provider, len(batch) - index, exc)
            reason = f"not attempted, {provider} unavailable: {exc}"
            results.extend(refused(rest, reason, temporary=True) for rest in batch[index:])
            break
    return SendReport(results)
