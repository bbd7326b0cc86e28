"""Mail providers come from one registry (publisher.providers): the built-ins are found the way a
plugin's entry point is, and a plugin package's one declaration module adds a provider to config.yaml,
build_transport, `publisher check --transport`, the webhook routes and the DNS hint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from publisher.config import parse_config
from publisher.config.schema import MailSettings
from publisher.errors import ConfigError
from publisher.providers.registry import provider_kinds

REPO = Path(__file__).resolve().parents[1]

BASE_CONFIG = """
site:
  name: Levant Today
  base_url: https://news.example.org
  secret: test-secret-0123456789abcdef
editions:
  - id: en
    language: en
    from: Levant Today <digest@news.example.org>
mail:
  transport:
    {transport}
"""


def test_the_built_in_providers_are_registered_with_every_part() -> None:
    kinds = provider_kinds()
    assert sorted(kinds) == ["mailgun", "postmark", "sendgrid", "ses"]
    union = json.dumps(MailSettings.model_json_schema())
    for name, kind in kinds.items():
        assert kind.settings.__name__ in union  # in config.yaml's transport union
        assert kind.webhook is not None and kind.probe is not None and kind.spf_include
        assert kind.settings.model_fields["kind"].annotation.__args__ == (name,)  # type: ignore[union-attr]


def test_an_unknown_kind_names_every_registered_one() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE_CONFIG.format(transport="kind: sendgird\n    api_key: k"))
    message = str(caught.value)
    assert "mail.transport" in message
    for name in ("outbox", "smtp", "sendgrid", "mailgun", "postmark", "ses"):
        assert name in message


PLUGIN = '''
"""A provider from another package: this one module is all it takes."""
from typing import Literal

from starlette.responses import PlainTextResponse
from starlette.routing import Route

from publisher.config.base import ProviderSettings
from publisher.providers.base import ProviderKind


class PigeonSettings(ProviderSettings):
    kind: Literal["pigeon"]
    loft: str


def transport(settings):
    from publisher.delivery.mail.memory import InMemoryTransport  # on first use, as the built-ins do

    built = InMemoryTransport()
    built.name = f"pigeon from {settings.loft}"
    return built


def routes(web):
    return [Route("/webhooks/pigeon", lambda request: PlainTextResponse("coo"), methods=["POST"])]


KIND = ProviderKind(name="pigeon", settings=PigeonSettings, transport=transport, summary="carrier pigeons",
                    webhook=routes, probe=lambda settings: [f"loft {settings.loft}: birds ready"],
                    spf_include="include:pigeons.example")
'''

SCRIPT = '''
import sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from starlette.testclient import TestClient
from publisher.config import parse_config
from publisher.delivery.mail import build_transport
from publisher.dns_records import spf_mechanism
from publisher.errors import ConfigError
from publisher.provider_probe import probe_provider
from publisher.store import Store
from publisher.web import create_app
from tests.support.messages import sample_message

config = parse_config(sys.argv[1], base_dir=Path(sys.argv[2]))
settings = config.mail.transport
print(type(settings).__name__)
with build_transport(settings, base_dir=config.base_dir) as transport:
    print(transport.name, transport.send([sample_message(1, "reader@example.org")]).sent)
print(probe_provider(settings)[0])
print(spf_mechanism(config)[0])
store = Store.open(f"sqlite:///{sys.argv[2]}/store.db")
with TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080") as client:
    print(client.post("/webhooks/pigeon").text)
store.close()
try:
    parse_config(sys.argv[1].replace("loft: north", "lofts: north"))
except ConfigError as exc:
    print(" | ".join(str(exc).splitlines()))
'''


def test_a_plugin_package_adds_a_provider_with_one_module(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    (site / "pigeon_mail-0.1.dist-info").mkdir(parents=True)
    (site / "pigeon_mail.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    (site / "pigeon_mail-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: pigeon-mail\nVersion: 0.1\n")
    (site / "pigeon_mail-0.1.dist-info" / "entry_points.txt").write_text(
        "[publisher.mail_providers]\npigeon = pigeon_mail:KIND\n"
    )
    config = BASE_CONFIG.format(transport="kind: pigeon\n    loft: north")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", SCRIPT, config, str(tmp_path)], capture_output=True, text=True,
                          env=environment, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:6] == [
        "PigeonSettings",
        "pigeon from north 1",
        "loft north: birds ready",
        "include:pigeons.example",
        "coo",
        lines[5],
    ]
    # the loader's own errors, with file, line and key (the plugin's `kind` tag is not a key)
    assert "config.yaml:12: mail.transport.loft: is required but missing" in lines[5]
    assert "mail.transport.lofts" in lines[5] and "unknown key 'lofts'" in lines[5]
