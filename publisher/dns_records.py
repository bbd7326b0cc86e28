"""The DNS records a bulk sender publishes for its From domains: SPF, DKIM when publisher signs
(mail.dkim), and a starting DMARC policy. A provider that signs for you shows its own DKIM records
in its dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr

from publisher.config import Config
from publisher.dkim_keys import public_record
from publisher.providers.registry import provider_kinds


@dataclass(frozen=True)
class DnsRecord:
    name: str
    type: str
    value: str
    why: str

    def zone_line(self) -> str:
        # a TXT string holds at most 255 bytes: a long value (an RSA key) is written as several
        chunks = " ".join(f'"{self.value[i:i + 255]}"' for i in range(0, len(self.value), 255))
        return f"{self.name}. 3600 IN {self.type} {chunks}"


def from_domains(config: Config) -> list[str]:
    domains = []
    for edition in config.editions:
        address = parseaddr(edition.from_address)[1]
        if "@" in address:
            domains.append(address.rsplit("@", 1)[1].lower())
    return list(dict.fromkeys(domains))


def spf_mechanism(config: Config) -> tuple[str, str]:
    transport = config.mail.transport
    provider = provider_kinds().get(transport.kind)
    if provider is not None and provider.spf_include:
        return provider.spf_include, f"mail leaves through {transport.kind}"
    if transport.kind == "smtp":
        host = getattr(transport, "host", "")
        return (
            f"a:{host}",
            f"mail leaves through the SMTP server {host} (use its ip4: if it has no A record of its own)",
        )
    return "a mx", "the outbox sends nothing; a and mx cover a server on the domain itself"


def records(config: Config) -> list[DnsRecord]:
    mechanism, why = spf_mechanism(config)
    found: list[DnsRecord] = []
    for domain in from_domains(config):
        found.append(
            DnsRecord(
                domain,
                "TXT",
                f"v=spf1 {mechanism} ~all",
                f"SPF: {why}; merge with an SPF record you already have (one per name)",
            )
        )
        found.append(
            DnsRecord(
                f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}; adkim=r; aspf=r",
                "DMARC, a starting policy: reports only; move to p=quarantine, then p=reject, once reports show "
                "SPF or DKIM aligned for all your mail",
            )
        )  # fmt: skip
    dkim = config.mail.dkim
    if dkim is not None:
        path = config.path(dkim.private_key_file)
        found.append(
            DnsRecord(
                f"{dkim.selector}._domainkey.{dkim.domain}", "TXT", public_record(path.read_bytes()),
                f"DKIM: the public half of {path} (mail.dkim); d={dkim.domain} must be your From domain "
                "or its parent for DMARC alignment",
            )
        )
    return found
