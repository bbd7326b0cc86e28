"""`publisher check --transport` for the HTTP providers: one authenticated read against a loopback stand-in
of each API, the credentials sent the provider's way, and a refused key named with its remedy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.fixtures.sources.loopback import LoopbackHttpServer

pytestmark = pytest.mark.slow


def check_transport(directory: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUBLISHER_", "AWS_"))}
    return subprocess.run([sys.executable, "-m", "publisher", "check", "--transport"], cwd=directory,
                          capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "250"})  # fmt: skip


CASES = {
    "sendgrid": ("kind: sendgrid\n    api_key: SG.key-123\n    base_url: {base}",
                 {"/v3/scopes": {"scopes": ["mail.send", "user.profile.read"]}},
                 "API key accepted, 2 scope(s) including mail.send", ("authorization", "Bearer SG.key-123")),
    "mailgun": ("kind: mailgun\n    api_key: key-456\n    domain: mg.news.example.org\n    base_url: {base}",
                {"/v3/domains/mg.news.example.org": {"domain": {"name": "mg.news.example.org", "state": "active"}}},
                "domain mg.news.example.org is active", ("authorization", "Basic YXBpOmtleS00NTY=")),
    "postmark": ("kind: postmark\n    server_token: pm-789\n    base_url: {base}",
                 {"/server": {"Name": "Levant Today"}, "/message-streams/broadcast": {"MessageStreamType": "Broadcasts"}},
                 "server token accepted (server 'Levant Today'); stream 'broadcast' is Broadcasts",
                 ("x-postmark-server-token", "pm-789")),
    "ses": ("kind: ses\n    region: eu-west-1\n    access_key_id: AKIDEXAMPLE\n    secret_access_key: s3cr3t\n    base_url: {base}",
            {"/v2/email/account": {"SendingEnabled": True, "ProductionAccessEnabled": True,
                                   "SendQuota": {"Max24HourSend": 50000, "MaxSendRate": 14, "SentLast24Hours": 120}}},
            "sending enabled, production, quota 120/50000 in 24 h at 14/s", ("authorization", "AWS4-HMAC-SHA256")),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(CASES))
def test_provider_credentials_are_checked_without_sending(tmp_path: Path, kind: str) -> None:
    transport, routes, expected, (header, value) = CASES[kind]
    with LoopbackHttpServer() as server:
        for path, body in routes.items():
            server.route(path, json.dumps(body), content_type="application/json")
        write_config(tmp_path, transport=transport.format(base=server.url("")))
        result = check_transport(tmp_path)
        seen = list(server.requests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert expected in result.stdout and "nothing was sent" in result.stdout
    assert seen and all(value in r.headers.get(header, "") for r in seen)
    assert {r.path.split("?")[0] for r in seen} <= set(routes)  # reads only: no send endpoint touched


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_refused_key_is_named(tmp_path: Path, kind: str) -> None:
    transport, routes, _expected, _auth = CASES[kind]
    with LoopbackHttpServer() as server:
        for path in routes:
            server.route(path, json.dumps({"message": "unauthorized"}), status=403, content_type="application/json")
        write_config(tmp_path, transport=transport.format(base=server.url("")))
        result = check_transport(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "refused" in result.stdout and ("config.yaml" in result.stdout or "access_key_id" in result.stdout)
