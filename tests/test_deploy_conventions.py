"""The conventions people expect: --version, --config before the subcommand, PUBLISHER_CONFIG,
--log-format json, a JSON Schema generated from the models, a distribution name and LICENSE of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib.metadata import distribution
from pathlib import Path

import jsonschema
import pytest
import yaml

import publisher as package
from publisher.jsonschema import config_schema, config_schema_text
from tests.conftest import REPO, write_config

pytestmark = pytest.mark.slow


def publisher(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    return subprocess.run([sys.executable, "-m", "publisher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**clean, "COLUMNS": "250", **(env or {})})  # fmt: skip


def test_version() -> None:
    result = publisher("--version", cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip() == f"publisher {package.__version__}"


def test_the_user_agent_names_the_installed_version() -> None:
    from publisher.sources.fetching import user_agent

    # the distribution is newsroom-publisher: asking for "publisher" found nothing and said version 0
    assert user_agent("https://news.example.org") == f"publisher/{package.__version__} (+https://news.example.org)"


def test_config_before_the_subcommand_and_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    config = write_config(tmp_path / "site")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = publisher("--config", str(config), "check", cwd=elsewhere)
    assert before.returncode == 0 and f"{config}: ok" in before.stdout
    from_env = publisher("check", cwd=elsewhere, env={"PUBLISHER_CONFIG": str(config)})
    assert from_env.returncode == 0 and f"{config}: ok" in from_env.stdout
    # the subcommand's own --config wins over both
    missing = publisher("--config", str(config), "check", "--config", "nope.yaml", cwd=elsewhere,
                        env={"PUBLISHER_CONFIG": str(config)})  # fmt: skip
    assert missing.returncode == 2 and "nope.yaml: no such file" in missing.stderr
    default = publisher("check", cwd=elsewhere)
    assert default.returncode == 2 and "config.yaml: no such file" in default.stderr


def test_log_format_json_gives_one_object_per_line(tmp_path: Path) -> None:
    write_config(tmp_path)
    result = publisher("--log-format", "json", "run", "--date", "2024-12-02", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines
    entries = [json.loads(line) for line in lines]
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["logger"] == "publisher.pipeline.collect" for e in entries)


def test_the_committed_schema_is_the_models_and_the_sample_config_validates() -> None:
    assert (REPO / "config.schema.json").read_text(encoding="utf-8") == config_schema_text(), (
        "config.schema.json is stale: run `publisher schema --out config.schema.json`"
    )
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    sample_text = (REPO / "config.yaml").read_text(encoding="utf-8")
    assert sample_text.startswith("# yaml-language-server: $schema=config.schema.json\n")
    jsonschema.validate(yaml.safe_load(sample_text), schema)
    wrong = yaml.safe_load(sample_text)
    wrong["editions"][0]["replyto"] = wrong["editions"][0].pop("reply_to")
    with pytest.raises(jsonschema.ValidationError, match="replyto"):
        jsonschema.validate(wrong, schema)
    assert "from" in schema["$defs"]["EditionSettings"]["properties"]
    assert "base_dir" not in schema["properties"]


def test_schema_command_prints_it(tmp_path: Path) -> None:
    result = publisher("schema", cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout) == config_schema()


def test_distribution_name_and_license() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "newsroom-publisher"  # PyPI's `publisher` is someone else's
    assert project["scripts"] == {"publisher": "publisher.cli:main"}
    license_text = (REPO / project["license-files"][0]).read_text(encoding="utf-8")
    assert project["license"] == "MIT" and license_text.startswith("MIT License")
    assert distribution("newsroom-publisher").version == package.__version__


def test_the_sample_config_uses_the_packaged_templates() -> None:
    assert not (REPO / "templates").exists(), "a repo copy of the templates would shadow the packaged ones"
    sample = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    assert "templates" not in sample
    assert (REPO / "publisher" / "templates" / "email" / "digest.mjml.j2").is_file()
    assert not (REPO / "publisher" / "templates").is_symlink()
