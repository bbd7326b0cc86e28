"""The pages around the digest: one h1 on every web page and in the digest (its masthead)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.digests import render

WEB = Path(__file__).resolve().parent.parent / "publisher" / "templates" / "web"


@pytest.mark.parametrize("name", sorted(p.name for p in WEB.glob("*.html.j2") if p.name != "base.html.j2"))
def test_every_web_page_has_one_h1(name: str) -> None:
    source = (WEB / name).read_text(encoding="utf-8")
    assert '{% extends "web/base.html.j2" %}' in source or "{% extends 'web/base.html.j2' %}" in source
    assert len(re.findall(r"<h1\b", source)) == 1
    assert "<h1" not in (WEB / "base.html.j2").read_text(encoding="utf-8")


@pytest.mark.parametrize("language", ["en", "ar"])
def test_the_digest_has_one_h1_its_masthead(language: str) -> None:
    html = render(language).html
    assert len(re.findall(r"<h1\b", html)) == 1 and 'class="pub-masthead"' in html.split("<h1", 1)[1][:40]
