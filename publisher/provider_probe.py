"""`publisher check --transport` for the HTTP mail providers: one read-only, authenticated request each
(account, domain or server details), never a send. What it found, or the remedy."""

from __future__ import annotations

from typing import Any

import requests

from publisher.config import (
    MailgunSettings,
    PostmarkSettings,
    SendGridSettings,
    SesSettings,
    TransportSettings,
)
from publisher.delivery.mail.mailgun import API_BY_REGION
from publisher.delivery.mail.postmark import API_URL as POSTMARK_API
from publisher.delivery.mail.sendgrid import API_URL as SENDGRID_API
from publisher.providers.registry import provider_kind

Lines = list[str]


class ProbeFailed(Exception):
    """The provider refused or could not be reached; the message says what to fix."""


def _get(url: str, timeout: float, what: str, **kwargs: Any) -> Any:
    try:
        response = requests.get(url, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        raise ProbeFailed(
            f"cannot reach {url}: {exc}; check mail.transport.base_url and the network"
        ) from exc
    if response.status_code in (401, 403):
        raise ProbeFailed(f"{url} refused the {what} ({response.status_code}); check it in config.yaml "
                          "(and the environment variable it comes from)")  # fmt: skip
    if response.status_code == 404:
        raise ProbeFailed(f"{url}: not found (404)")
    if response.status_code >= 400:
        raise ProbeFailed(f"{url} answered {response.status_code}: {response.text[:200]}")
    try:
        return response.json()
    except ValueError as exc:
        raise ProbeFailed(
            f"{url} did not answer JSON; is mail.transport.base_url the provider's API?"
        ) from exc


def probe_sendgrid(settings: SendGridSettings) -> Lines:
    base = (settings.base_url or SENDGRID_API).rstrip("/")
    data = _get(
        f"{base}/v3/scopes",
        settings.timeout,
        "API key",
        headers={"Authorization": f"Bearer {settings.api_key}"},
    )
    scopes = list(data.get("scopes") or []) if isinstance(data, dict) else []
    if "mail.send" not in scopes:
        raise ProbeFailed(
            "the API key works but lacks the Mail Send permission (mail.send); give it that in SendGrid"
        )
    return [f"SendGrid {base}: API key accepted, {len(scopes)} scope(s) including mail.send"]


def probe_mailgun(settings: MailgunSettings) -> Lines:
    base = (settings.base_url or API_BY_REGION[settings.region]).rstrip("/")
    url = f"{base}/v3/domains/{settings.domain}"
    try:
        data = _get(url, settings.timeout, "API key", auth=("api", settings.api_key))
    except ProbeFailed as exc:
        if "not found (404)" in str(exc):
            raise ProbeFailed(f"Mailgun does not know the domain {settings.domain!r} in region {settings.region}; "
                              "check mail.transport.domain and region") from exc  # fmt: skip
        raise
    domain = data.get("domain", {}) if isinstance(data, dict) else {}
    state = domain.get("state", "unknown")
    lines = [f"Mailgun {base}: API key accepted; domain {settings.domain} is {state}"]
    if state != "active":
        raise ProbeFailed(lines[0] + ": verify its DNS records in Mailgun before sending")
    return lines


def probe_postmark(settings: PostmarkSettings) -> Lines:
    base = (settings.base_url or POSTMARK_API).rstrip("/")
    headers = {"X-Postmark-Server-Token": settings.server_token, "Accept": "application/json"}
    server = _get(f"{base}/server", settings.timeout, "server token", headers=headers)
    name = server.get("Name", "?") if isinstance(server, dict) else "?"
    try:
        stream = _get(
            f"{base}/message-streams/{settings.message_stream}",
            settings.timeout,
            "server token",
            headers=headers,
        )
    except ProbeFailed as exc:
        raise ProbeFailed(f"Postmark server {name!r} has no message stream {settings.message_stream!r}; "
                          "create a Broadcasts stream or fix mail.transport.message_stream") from exc  # fmt: skip
    kind = stream.get("MessageStreamType", "?") if isinstance(stream, dict) else "?"
    lines = [
        f"Postmark {base}: server token accepted (server {name!r}); stream {settings.message_stream!r} is {kind}"
    ]
    if kind == "Transactional":
        lines.append("note: newsletters belong on a Broadcasts stream")
    return lines


def probe_ses(settings: SesSettings) -> Lines:
    import botocore.session
    from botocore.config import Config as BotocoreConfig
    from botocore.exceptions import BotoCoreError, ClientError

    config = BotocoreConfig(region_name=settings.region, connect_timeout=settings.timeout,
                            read_timeout=settings.timeout, retries={"total_max_attempts": 1})  # fmt: skip
    client = botocore.session.Session().create_client(
        "sesv2", region_name=settings.region, endpoint_url=settings.base_url, config=config,
        aws_access_key_id=settings.access_key_id, aws_secret_access_key=settings.secret_access_key,
    )  # fmt: skip
    try:
        account = client.get_account()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ProbeFailed(f"SES ({settings.region}) refused GetAccount: {error.get('Code')} {error.get('Message')}; "
                          "check access_key_id / secret_access_key and the ses:GetAccount permission") from exc  # fmt: skip
    except BotoCoreError as exc:
        raise ProbeFailed(f"cannot reach SES in {settings.region}: {exc}") from exc
    finally:
        client.close()
    quota = account.get("SendQuota", {})
    lines = [f"SES {settings.region}: credentials accepted; sending "
             f"{'enabled' if account.get('SendingEnabled') else 'PAUSED'}, "
             f"{'production' if account.get('ProductionAccessEnabled') else 'sandbox (verified recipients only)'}, "
             f"quota {quota.get('SentLast24Hours', 0):g}/{quota.get('Max24HourSend', 0):g} in 24 h at "
             f"{quota.get('MaxSendRate', 0):g}/s"]  # fmt: skip
    if not account.get("SendingEnabled"):
        raise ProbeFailed(lines[0])
    return lines


def probe_provider(settings: TransportSettings) -> Lines:
    """Lines describing the account; ProbeFailed with the remedy. Nothing is sent."""
    kind = provider_kind(settings.kind)
    if kind.probe is None:
        return [f"{kind.name}: this provider offers no read-only check; nothing was asked"]
    return kind.probe(settings)
