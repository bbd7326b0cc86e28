"""Mail transports: how finished messages leave the publisher.

The pipeline builds one with ``build_transport(config.mail.transport, base_dir=config.base_dir)`` and
uses it through the ``MailTransport`` contract (see base.py), e.g.::

    with build_transport(settings, base_dir=base_dir) as transport:
        report = transport.send(batch)
"""

from __future__ import annotations

from pathlib import Path

from publisher.config import OutboxSettings, SmtpSettings, TransportSettings
from publisher.delivery.mail.base import MailTransport
from publisher.delivery.mail.memory import InMemoryTransport, SimulatedCrash
from publisher.delivery.mail.outbox import OutboxTransport
from publisher.delivery.mail.smtp import SmtpTransport
from publisher.providers.registry import provider_kind

__all__ = [
    "InMemoryTransport",
    "MailTransport",
    "OutboxTransport",
    "SimulatedCrash",
    "SmtpTransport",
    "build_transport",
]


def build_transport(settings: TransportSettings, *, base_dir: Path) -> MailTransport:
    """The transport config.yaml asks for; the outbox path is taken relative to base_dir. A mail
    provider's is built by its declaration in publisher.providers (imported only when asked for)."""
    if isinstance(settings, SmtpSettings):
        return SmtpTransport(settings)
    if isinstance(settings, OutboxSettings):
        path = Path(settings.path).expanduser()
        return OutboxTransport(path if path.is_absolute() else base_dir / path)
    return provider_kind(settings.kind).transport(settings)
