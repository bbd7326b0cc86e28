"""Our own exception tree. Library errors are mapped into these at each boundary."""

from __future__ import annotations


class PublisherError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(PublisherError):
    """config.yaml is wrong. The message names the file, line, key and a fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class SourceError(PublisherError):
    """A source could not be fetched or parsed. Carries the source's name."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"source {source!r}: {reason}")


class TemplateError(PublisherError):
    """A template is missing or does not render."""


class StoreError(PublisherError):
    """The store is unreachable or its schema is not ours."""


class DeliveryError(PublisherError):
    """A message could not be handed over. Subclasses say whether to retry."""

    temporary: bool = False


class TemporaryDeliveryError(DeliveryError):
    """Worth retrying later (4xx, timeouts, dropped connections, 429s)."""

    temporary = True


class PermanentDeliveryError(DeliveryError):
    """Retrying will not help: the answer is final for this message (a permanent refusal, an address that
    cannot be used). What follows is decided once, in publisher.pipeline.verdict."""

    temporary = False


class TransportUnavailable(TemporaryDeliveryError):
    """The whole transport is down (cannot connect): stop this batch, keep the rest pending."""


class BrokerUnavailable(PublisherError):
    """mail.broker cannot be reached, or stopped answering: the deliveries stay pending in the ledger."""
