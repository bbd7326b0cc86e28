"""Mail transports: how finished messages leave the publisher.

The pipeline builds one with ``build_transport(config.mail.transport, base_dir=config.base_dir)`` and
uses it through the ``MailTransport`` contract (see base.py), e.g.::

    with build_transport(settings, base_dir=base_dir) as transport:
        report = transport.send(batch)
"""

from __future__ import annotations

import importlib
from pathlib import Path

from publisher.config import OutboxSettings, SmtpSettings, TransportSettings
from publisher.delivery.mail.base import MailTransport
from publisher.delivery.mail.memory import InMemoryTransport, SimulatedCrash
from publisher.delivery.mail.outbox import OutboxTransport
from publisher.delivery.mail.smtp import SmtpTransport

__all__ = [
    "InMemoryTransport",
    "MailTransport",
    "OutboxTransport",
    "SimulatedCrash",
    "SmtpTransport",
    "build_transport",
]


# HTTP providers, imported only when config.yaml asks for one: module and class per `kind`.
_PROVIDERS = {
    "sendgrid": ("publisher.delivery.mail.sendgrid", "SendGridTransport"),
    "mailgun": ("publisher.delivery.mail.mailgun", "MailgunTransport"),
    "postmark": ("publisher.delivery.mail.postmark", "PostmarkTransport"),
    "ses": ("publisher.delivery.mail.ses", "SesTransport"),
}


def build_transport(settings: TransportSettings, *, base_dir: Path) -> MailTransport:
    """The transport config.yaml asks for; the outbox path is taken relative to base_dir."""
    if isinstance(settings, SmtpSettings):
        return SmtpTransport(settings)
    if isinstance(settings, OutboxSettings):
        path = Path(settings.path).expanduser()
        return OutboxTransport(path if path.is_absolute() else base_dir / path)
    module_name, class_name = _PROVIDERS[settings.kind]
    transport_class = getattr(importlib.import_module(module_name), class_name)
    transport: MailTransport = transport_class(settings)
    return transport
