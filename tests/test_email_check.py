"""`publisher check` warns about what costs the digest its one-click unsubscribe or its domains."""

from __future__ import annotations

from pathlib import Path

from publisher.cli.operations import sending_warnings
from publisher.config import load_config
from tests.conftest import write_config


def test_http_public_url_is_warned_about(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))  # public_url http://127.0.0.1:8080
    warnings = sending_warnings(config)
    assert any("site.public_url" in w and "RFC 8058" in w for w in warnings)
    # base_url is a real host and message_id_domain is set: nothing falls back to 127.0.0.1
    assert not any("falls back" in w for w in warnings)


def test_local_fallback_domains_are_warned_about(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    text = path.read_text(encoding="utf-8")
    text = text.replace("base_url: https://news.example.org", "base_url: http://127.0.0.1:8000")
    text = text.replace("  message_id_domain: news.example.org\n", "")
    text = text.replace("public_url: http://127.0.0.1:8080", "public_url: https://news.example.org")
    path.write_text(text, encoding="utf-8")
    warnings = sending_warnings(load_config(path))
    assert any(w.startswith("mail.message_id_domain") and "127.0.0.1" in w for w in warnings)
    assert any(w.startswith("mail.list_id") for w in warnings)
    assert not any("public_url" in w for w in warnings)
