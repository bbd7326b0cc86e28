"""config.yaml: typed, validated once; every mistake named with file, line, key and a hint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from publisher.config import SmtpSettings, load_config, parse_config
from publisher.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def example_text() -> str:
    return (REPO / "config.yaml").read_text(encoding="utf-8")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="config.yaml", base_dir=REPO)
    return caught.value.problems


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_example_config_is_valid_and_typed() -> None:
    config = load_config(REPO / "config.yaml")
    assert config.site.timezone == "Asia/Damascus"
    assert [e.id for e in config.editions] == ["en", "ar"]
    assert config.mail.transport.kind == "outbox"
    assert config.store_url.startswith("sqlite:///") and config.store_url.endswith("var/publisher.db")
    assert config.path("var/outbox") == REPO / "var" / "outbox"


def test_unknown_key_names_line_and_suggests_the_right_key() -> None:
    text = example_text().replace("    reply_to: newsroom", "    replyto: newsroom", 1)
    [problem] = problems(text)
    assert problem.startswith(f"config.yaml:{line_of(text, 'replyto')}: editions[0].replyto: unknown key")
    assert "did you mean 'reply_to'?" in problem


def test_wrong_type_and_bad_zone_are_all_reported_at_once() -> None:
    text = example_text().replace("batch_size: 500", "batch_size: lots").replace("Asia/Damascus", "Asia/Damscus")
    found = problems(text)
    assert len(found) == 2
    assert any(p.startswith(f"config.yaml:{line_of(text, 'batch_size')}: mail.batch_size") and "whole number" in p for p in found)
    assert any("site.timezone" in p and "unknown time zone 'Asia/Damscus'" in p for p in found)


def test_bad_cron_line_is_named() -> None:
    text = example_text().replace('en: "0 7 * * *"', 'en: "0 7 * *"')
    [problem] = problems(text)
    assert "schedule.digests" in problem and "has 4 fields" in problem


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    text = example_text().replace(
        "    kind: outbox            # a Maildir of .eml files; see README for smtp\n    path: var/outbox",
        "    kind: smtp\n    host: 127.0.0.1\n    username: ${SMTP_USERNAME}\n    password: ${SMTP_PASSWORD}",
    )
    monkeypatch.delenv("SMTP_USERNAME", raising=False)
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    found = problems(text)
    assert any("SMTP_USERNAME is not set" in p and f":{line_of(text, 'SMTP_USERNAME')}:" in p for p in found)
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret: with # odd chars")
    config = parse_config(text, base_dir=REPO)
    assert isinstance(config.mail.transport, SmtpSettings)
    assert config.mail.transport.password == "s3cret: with # odd chars"


def test_unknown_schedule_edition_and_yaml_syntax() -> None:
    text = example_text().replace('    ar: "0 7 * * *"', '    fr: "0 7 * * *"')
    assert any("unknown edition(s) fr" in p for p in problems(text))
    [syntax] = problems("site:\n  name: [unclosed\n")
    assert syntax.startswith("config.yaml:") and "not valid YAML" in syntax


def test_cli_exits_2_with_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text(example_text().replace("max_articles: 10", "max_articles: -1", 1), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "publisher", "check", "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert f"{bad}:{line_of(bad.read_text(), 'max_articles: -1')}: editions[0].max_articles" in result.stderr


def test_secrets_never_appear_in_a_printed_config(monkeypatch: pytest.MonkeyPatch) -> None:
    text = example_text().replace(
        "    kind: outbox            # a Maildir of .eml files; see README for smtp\n    path: var/outbox",
        "    kind: smtp\n    host: 127.0.0.1\n    username: mailer\n    password: ${SMTP_PASSWORD}",
    )
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-very-secret")
    monkeypatch.setenv("PUBLISHER_SECRET", "token-signing-key-0123456789")
    config = parse_config(text, base_dir=REPO)
    printed = repr(config) + str(config)
    assert "hunter2-very-secret" not in printed and "token-signing-key-0123456789" not in printed
    assert config.mail.transport.password == "hunter2-very-secret"  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["=", "site: =", "a: !!python/object:os.system x"])
def test_a_yaml_tag_that_cannot_be_built_is_a_config_error_with_its_place(text: str) -> None:
    # found by the fuzz test: "=" reads as YAML's !!value tag, which PyYAML cannot construct
    from publisher.config import parse_config
    from publisher.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert "config.yaml:1:" in str(caught.value) and "hint:" in str(caught.value)
