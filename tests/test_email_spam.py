"""SpamAssassin (Debian's, local rules only: -L) scores both editions' digests 0.0: no hidden
low-contrast preheader (HTML_FONT_LOW_CONTRAST), nothing else. .ci/run installs spamassassin."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require
from tests.support.digests import build, recipient, render

pytestmark = pytest.mark.slow


def spam_status(message: bytes, home: Path) -> tuple[float, list[str]]:
    binary = shutil.which("spamassassin")
    require(binary is not None, "spamassassin is not installed (apt-get install spamassassin)")
    assert binary is not None
    result = subprocess.run(
        [binary, "-L", "-t"], input=message, capture_output=True, timeout=300, check=True,
        env={**os.environ, "HOME": str(home)},
    )
    head = result.stdout.partition(b"\r\n\r\n")[0] if b"\r\n\r\n" in result.stdout else result.stdout
    match = re.search(rb"^X-Spam-Status: (.*?)(?=\r?\n\S)", head, re.MULTILINE | re.DOTALL)
    assert match, result.stdout[:2000]
    status = b" ".join(match.group(1).split()).decode("ascii")
    score = re.search(r"score=(-?\d+(?:\.\d+)?)", status)
    tests = re.search(r"tests=(\S+)", status)
    assert score and tests, status
    return float(score.group(1)), tests.group(1).split(",")


@pytest.mark.parametrize("language", ["en", "ar"])
def test_spamassassin_scores_the_digest_zero(language: str, tmp_path: Path) -> None:
    message = build(render(language), language).personalize(recipient(language))
    score, tests = spam_status(message, tmp_path)
    assert "HTML_FONT_LOW_CONTRAST" not in tests
    assert score <= 0.0, f"{language}: score {score}, tests {tests}"


def test_spamassassin_still_sees_a_hidden_low_contrast_preheader(tmp_path: Path) -> None:
    """The check can fail: white hidden text, as the engine's mj-preview writes it, is caught."""
    digest = render("en")
    hidden = '<div style="display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;max-width:0px;opacity:0;overflow:hidden;">Preview text that hides</div>'
    white = digest.__class__(**{**digest.__dict__, "html": digest.html.replace('<div class="pub-preheader"', hidden + '<div class="pub-preheader"', 1)})
    score, tests = spam_status(build(white, "en").personalize(recipient("en")), tmp_path)
    assert "HTML_FONT_LOW_CONTRAST" in tests and score > 0.0
