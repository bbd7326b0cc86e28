"""The digest's MJML validated by the official compiler (npm mjml), which the Rust engine does not do:
mjml-python drops unknown tags and attributes silently.

Needs node and the mjml CLI (conftest's `mjml_cli`: skipped without it, a failure under CI). To run it:
    npm install --prefix ~/.cache/publisher-mjml mjml@5
    MJML_CLI=~/.cache/publisher-mjml/node_modules/.bin/mjml .venv/bin/pytest tests/test_render_email_mjml.py
"""

from __future__ import annotations

import subprocess
from datetime import date, datetime
from pathlib import Path

import pytest

from publisher.config import EditionSettings, SiteSettings
from publisher.models import Article
from publisher.render.email import DigestRenderer
from publisher.render.templates import make_environment

pytestmark = pytest.mark.slow

SITE = SiteSettings(
    name="Levant Today",
    base_url="https://news.example.org",
    logo_url="https://news.example.org/static/logo.png",
    secret="test-secret-0123456789",
)


@pytest.mark.parametrize("language", ["en", "ar"])
def test_digest_mjml_passes_strict_validation(language: str, tmp_path: Path, mjml_cli: str) -> None:
    cli = mjml_cli
    edition = EditionSettings.model_validate({"id": language, "language": language, "from": "a@example.org"})
    at = datetime.fromisoformat("2024-12-02T08:00:00+00:00")
    articles = [
        Article(
            id=str(i),
            url=f"https://news.example.org/{i}",
            title=f"Title {i} <&>",
            language=language,
            published_at=at,
            updated_at=at,
            source_name="Levant",
            summary="Summary",
            section=["politics", "economy", None][i % 3],
            author="A. Writer" if i % 2 else None,
            source_credit="Agencies",
            image_url=f"https://news.example.org/{i}.jpg" if i % 2 == 0 else None,
            image_caption="Caption" if i % 2 == 0 else None,
        )
        for i in range(6)
    ]
    source = DigestRenderer(make_environment(None), SITE, edition).render_mjml(
        articles, date(2024, 12, 2), archive_url="https://news.example.org/archive"
    )
    path = tmp_path / f"{language}.mjml"
    path.write_text(source, encoding="utf-8")
    result = subprocess.run(
        [cli, "-v", str(path), "--config.validationLevel=strict"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
