"""The confirmation mails of the subscribe form, sent by a worker thread after the answer.

The form's request only queues (one `confirmation_outbox` row, whatever the address), so its work and
its timing are the same for a new, pending, active, unsubscribed or forgotten address, and no SMTP
conversation happens inside a request. The worker then decides: an active address gets nothing; an
address over its daily limit gets nothing; any other gets a pending row, a fresh link and the mail.
The mail never carries the name typed into the form: whoever typed it has not proved the address is
theirs, and nothing they type may reach an inbox as ours.

A failed send is tried again MAX_ATTEMPTS times with a growing delay; a row left by a process that
died is taken over when its lease runs out, and rows left at a restart are sent when the worker starts.
"""

from __future__ import annotations

import logging
import secrets
import threading
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

from publisher.config import Config
from publisher.models import OutgoingMessage, SubscriberStatus
from publisher.render.confirmation import ConfirmationRenderer, build_confirmation_message
from publisher.store.consent import QueuedConfirmation
from publisher.store.subscribers import email_hash
from publisher.web.context import WebContext
from publisher.web.links import CONFIRM

log = logging.getLogger(__name__)

ADDRESS_WINDOW = timedelta(days=1)
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 4
RETRY_DELAYS = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10))
POLL_SECONDS = 15.0
THREAD_NAME = "publisher-confirmations"


class ConfirmationWorker:
    """`request(...)` from the form; a daemon thread (started on demand) does the rest."""

    def __init__(self, web: WebContext, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.web = web
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._asked = 0  # passes asked for
        self._done = 0  # passes finished (a pass sends everything due when it starts)

    # --- the form's side --------------------------------------------------------------------------

    def request(self, email: str, *, language: str, sections: list[str], name: str = "") -> None:
        self.web.consent.queue_confirmation(email, name=name, language=language, sections=sections)
        self.wake()

    def wake(self) -> int:
        """Ask for a pass; returns its number (see wait)."""
        with self._lock:
            self._asked += 1
            number = self._asked
        self.start()
        self._wake.set()
        return number

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until everything queued before this call was handled (sent, given up or rescheduled)."""
        number = self.wake()
        with self._lock:
            return self._lock.wait_for(lambda: self._done >= number, timeout)

    # --- the worker -------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            with self._lock:
                number = self._asked
            try:
                self.drain()
                failures = 0
            except Exception:  # the store is down, say: try again later, never die silently
                failures += 1
                log.exception("confirmation worker pass failed (%d in a row)", failures)
            with self._lock:
                self._done = max(self._done, number)
                self._lock.notify_all()
            try:
                waiting = self.web.consent.queued_confirmations()
            except Exception:
                waiting = 1
            if not waiting and failures == 0:
                with self._lock:
                    if self._asked == number:  # nothing new arrived meanwhile: stop until the next request
                        self._thread = None
                        return
            self._wake.wait(self.poll_seconds if failures < 5 else self.poll_seconds * 4)
            self._wake.clear()

    def drain(self, *, now: datetime | None = None) -> int:
        """Handle every due row in this thread; returns how many were handled."""
        handled = 0
        while True:
            batch = self.web.consent.claim_confirmations(lease=LEASE, now=now)
            if not batch:
                return handled
            for queued in batch:
                self._handle(queued)
                handled += 1

    def _handle(self, queued: QueuedConfirmation) -> None:
        consent = self.web.consent
        config = self.web.config
        if queued.token is None or queued.subscriber_id is None:
            existing = self.web.store.subscribers.by_email(queued.email)
            allowed = consent.allow("confirm-address", email_hash(queued.email),
                                    limit=config.web.max_confirmations_per_address, window=ADDRESS_WINDOW)
            if existing is not None and existing.status is SubscriberStatus.ACTIVE:
                # already subscribed: nothing is sent, but the mail is rendered all the same, so the
                # worker's load (which the next request may feel) does not tell this case apart
                try:
                    build_confirmation(self.web, config, queued.email, queued.language, existing.id, "unsent")
                except Exception:  # a broken template shows when a real one is sent; this one is not
                    log.debug("rendering an unsent confirmation failed", exc_info=True)
                consent.finish_confirmation(queued.id)
                return
            if not allowed:
                log.info("confirmation not sent: daily limit of this address reached")
                consent.finish_confirmation(queued.id)
                return
            pending = consent.prepare_pending(queued.email, name=queued.name, language=queued.language,
                                              sections=queued.sections)
            ttl = int(config.web.confirm_hours * 3600)
            token = self.web.signer(config).sign(CONFIRM, pending.subscriber_id, ttl_seconds=ttl)
            consent.open_confirmation(pending.subscriber_id, token)
            consent.link_confirmation(queued.id, pending.subscriber_id, token)
            queued = QueuedConfirmation(queued.id, queued.email, queued.name, queued.language, queued.sections,
                                        queued.attempts, pending.subscriber_id, token)
        assert queued.subscriber_id is not None and queued.token is not None
        if send_confirmation(self.web, config, queued.email, queued.language, queued.subscriber_id, queued.token):
            consent.finish_confirmation(queued.id)
        elif queued.attempts >= MAX_ATTEMPTS:
            log.error("confirmation email for subscriber %d given up after %d attempts", queued.subscriber_id,
                      queued.attempts)
            consent.finish_confirmation(queued.id)
        else:
            delay = RETRY_DELAYS[min(queued.attempts, len(RETRY_DELAYS)) - 1]
            consent.retry_confirmation(queued.id, datetime.now(UTC) + delay)


def build_confirmation(web: WebContext, config: Config, email: str, language: str, subscriber_id: int,
                       token: str) -> OutgoingMessage:
    """The complete confirmation message. Raises TemplateError or ValueError when it cannot be made."""
    edition = web.edition_for(language, config) or config.editions[0]
    env = web.environment(config)
    strings = web.strings(language)
    content = ConfirmationRenderer(env, config.site, language, strings).render(
        confirm_url=web.url(f"/confirm/{token}"),
        edition_title=web.edition_title(language, config),
        name="",  # never the name typed into the form (see the module's doc)
        expires_hours=config.web.confirm_hours,
    )
    domain = config.message_id_domain
    message_id = f"<confirm.{subscriber_id}.{secrets.token_hex(8)}@{domain}>"
    data = build_confirmation_message(
        content, sender=edition.from_address, recipient=email, message_id=message_id, reply_to=edition.reply_to,
    )
    return OutgoingMessage(0, parseaddr(edition.from_address)[1], email, message_id, data)


def send_confirmation(web: WebContext, config: Config, email: str, language: str, subscriber_id: int, token: str) -> bool:
    """Render and send one confirmation email. Failures are logged, never shown to the visitor."""
    try:
        message = build_confirmation(web, config, email, language, subscriber_id, token)
        with web.transport_factory(config) as transport:
            report = transport.send([message])
    except Exception:
        log.exception("confirmation email for subscriber %d could not be sent", subscriber_id)
        return False
    result = report.results[0] if report.results else None
    if result is None or not result.ok:
        log.error("confirmation email for subscriber %d refused: %s", subscriber_id, result.error if result else "no result")
        return False
    log.info("confirmation email sent to subscriber %d", subscriber_id)
    return True
