"""The files source: the sample newsroom day, and a directory of Markdown/JSON articles with mistakes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.config import FilesSourceSettings, load_config
from publisher.errors import SourceError
from publisher.models import Article, SourceResult, SourceState
from publisher.sources import build_source
from publisher.sources.files import FilesSource, slugify

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples" / "articles"
SITE = "https://news.example.org"
DAMASCUS = ZoneInfo("Asia/Damascus")
NOW = datetime(2024, 12, 3, 6, 0, tzinfo=UTC)


def files_source(
    path: Path | str, *, default_language: str | None = None, base_dir: Path | None = None
) -> FilesSource:
    return FilesSource(
        FilesSourceSettings(kind="files", name="newsroom", path=str(path)),
        site_base_url=SITE,
        site_timezone=DAMASCUS,
        default_language=default_language,
        base_dir=base_dir,
        clock=lambda: NOW,
    )


def fetch(source: FilesSource) -> SourceResult:
    return source.fetch(SourceState(name=source.name))


def by_file(result: SourceResult, stem: str) -> Article:
    matches = [a for a in result.articles if a.url.endswith("/" + slugify(stem))]
    assert len(matches) == 1, stem
    return matches[0]


# --- the sample day ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> SourceResult:
    config = load_config(REPO / "config.yaml")
    (settings,) = [s for s in config.sources if s.name == "sample-newsroom"]
    source = build_source(
        settings,
        site_base_url=config.site.base_url,
        site_timezone=config.site.timezone,
        base_dir=config.base_dir,
    )
    return source.fetch(SourceState(name="sample-newsroom"))


def test_the_sample_directory_is_what_config_yaml_names(sample: SourceResult) -> None:
    assert sample.warnings == []
    assert len(sample.articles) == len(list(SAMPLES.glob("2024-*.md"))) == 12
    assert {a.language for a in sample.articles} == {"ar", "en"}
    assert sum(a.language == "ar" for a in sample.articles) == 6
    assert {a.section for a in sample.articles} == {"politics", "economy", "culture", "sports"}
    assert len({a.id for a in sample.articles}) == 12


def test_every_sample_article_is_complete(sample: SourceResult) -> None:
    for article in sample.articles:
        assert article.published_at.tzinfo is UTC and article.updated_at.tzinfo is UTC
        assert not article.undated
        assert article.url.startswith(f"{SITE}/{article.language}/")
        assert article.image_url and article.image_url.startswith(f"{SITE}/media/"), article.url
        assert article.image_caption and article.image_alt and article.author and article.source_credit
        assert 80 < len(article.summary) <= 300
        paragraphs = article.content_html.count("<p>")
        assert 3 <= paragraphs <= 6, (article.url, paragraphs)
        assert "\n" not in article.title and "\r" not in article.title


def test_the_midnight_edges_land_on_the_right_utc_instants(sample: SourceResult) -> None:
    late = by_file(sample, "2024-12-01-2330-previous-day-amman-budget")
    early = by_file(sample, "2024-12-02-0010-fuel-prices-midnight")
    assert late.published_at == datetime(2024, 12, 1, 20, 30, tzinfo=UTC)
    assert early.published_at == datetime(2024, 12, 1, 21, 10, tzinfo=UTC)  # the UTC date is still the 1st

    # the 2 December digest covers 2 December in the site's zone
    start = datetime(2024, 12, 2, tzinfo=DAMASCUS).astimezone(UTC)
    day = [a for a in sample.articles if start <= a.published_at < start + timedelta(days=1)]
    assert early in day and late not in day
    assert len(day) == 11


def test_explicit_offsets_updates_and_relative_images_in_the_samples(sample: SourceResult) -> None:
    film = by_file(sample, "2024-12-02-1430-amman-film-days")
    assert film.published_at == datetime(2024, 12, 2, 11, 30, tzinfo=UTC)
    elections = by_file(sample, "2024-12-02-2240-lebanon-municipal-elections")
    assert elections.updated_at - elections.published_at == timedelta(minutes=75)
    marathon = by_file(sample, "2024-12-02-1815-amman-winter-marathon")
    assert (
        marathon.image_url == f"{SITE}/media/2024/12/02/amman-marathon-downtown.jpg"
    )  # written as /media/...
    assert "<em>The Salt Road</em>" in film.content_html


# --- a directory with mistakes -----------------------------------------------------------------

GOOD = """---
title: Water talks open in Amman
date: 2024-12-02 08:30
language: en-GB
section: Politics
author: Rana Haddad
source: Levant - Agencies
image: /media/2024/12/02/talks.jpg
image_caption: Delegates arrive
image_alt: Delegates walking into a hall
summary: "Delegations from four countries meet: day one."
---
First paragraph with [a link](../economy/canals) and ![a chart](charts/flow.png).

Second paragraph.
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_markdown_article_is_rendered_and_made_absolute(tmp_path: Path) -> None:
    write(tmp_path, "Water Talks, Amman.md", GOOD)
    (article,) = fetch(files_source(tmp_path)).articles
    assert article.url == f"{SITE}/en/water-talks-amman"
    assert article.id == article.url
    assert article.language == "en" and article.section == "politics"
    assert article.published_at == datetime(2024, 12, 2, 5, 30, tzinfo=UTC)  # naive: Damascus time
    assert article.summary == "Delegations from four countries meet: day one."
    assert article.image_url == f"{SITE}/media/2024/12/02/talks.jpg"
    assert (
        f'<a href="{SITE}/economy/canals" rel="noopener">a link</a>' in article.content_html
    )  # ../ from /en/x
    assert f'<img src="{SITE}/en/charts/flow.png" alt="a chart">' in article.content_html
    assert article.source_credit == "Levant - Agencies"


def test_default_urls_are_stable_and_depend_only_on_language_and_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, "2024-12-02-talks.md", GOOD)
    first = fetch(files_source(tmp_path)).articles[0]
    path.write_text(GOOD.replace("Water talks open", "Water talks open (updated)"), encoding="utf-8")
    second = fetch(files_source(tmp_path)).articles[0]
    assert first.id == second.id == f"{SITE}/en/2024-12-02-talks"
    assert "(updated)" in second.title


def test_explicit_url_and_id_from_front_matter(tmp_path: Path) -> None:
    text = GOOD.replace(
        "language: en-GB", "language: ar\nurl: /ar/politics/talks?utm_source=x\nid: talks-2024"
    )
    write(tmp_path, "talks.md", text)
    (article,) = fetch(files_source(tmp_path)).articles
    assert article.url == f"{SITE}/ar/politics/talks?utm_source=x"
    assert article.id == "newsroom:talks-2024"


def test_json_articles_read_the_same_keys(tmp_path: Path) -> None:
    data = {
        "title": "Bakeries brace for costlier flour",
        "date": "2024-12-02T11:20:00+03:00",
        "language": "en",
        "section": "economy",
        "url": "https://news.example.org/en/economy/flour",
        "content_html": "<p>Bakeries are preparing.</p><script>x()</script>",
        "image": "media/flour.jpg",
    }
    write(tmp_path, "flour.json", json.dumps(data))
    (article,) = fetch(files_source(tmp_path)).articles
    assert article.published_at == datetime(2024, 12, 2, 8, 20, tzinfo=UTC)
    assert article.content_html == "<p>Bakeries are preparing.</p>"
    assert article.summary == "Bakeries are preparing."
    assert article.image_url == f"{SITE}/media/flour.jpg"


def test_broken_files_are_skipped_with_warnings_naming_them(tmp_path: Path) -> None:
    write(tmp_path, "good.md", GOOD)
    write(tmp_path, "broken-yaml.md", "---\ntitle: [unclosed\ndate: 2024-12-02\n---\nBody\n")
    write(tmp_path, "no-front-matter.md", "# Just a heading\n\nText.\n")
    write(tmp_path, "no-title.md", "---\ndate: 2024-12-02 10:00\nlanguage: en\n---\nBody\n")
    write(tmp_path, "bad-date.md", "---\ntitle: T\ndate: next Tuesday\nlanguage: en\n---\nBody\n")
    write(tmp_path, "no-language.md", "---\ntitle: T\ndate: 2024-12-02 10:00\n---\nBody\n")
    write(tmp_path, "broken.json", '{"title": "T",')
    write(tmp_path, "latin1.md", "---\ntitle: caf\xe9\n---\n").write_bytes(b"---\ntitle: caf\xe9\n---\n")
    write(tmp_path, "typo.md", GOOD.replace("summary:", "summmary:").replace("Water", "Typo"))
    result = fetch(files_source(tmp_path))

    assert sorted(a.title for a in result.articles) == [
        "Typo talks open in Amman",
        "Water talks open in Amman",
    ]
    warnings = "\n".join(result.warnings)
    assert re.search(r"broken-yaml\.md: skipped: its front matter is not valid YAML at line \d", warnings)
    assert "no-front-matter.md: skipped: no front matter" in warnings
    assert "no-title.md: skipped: it has no title" in warnings
    assert "bad-date.md: skipped: 'next Tuesday' is not a date" in warnings
    assert "no-language.md: skipped: its language is unknown (add language:" in warnings
    assert "broken.json: skipped: not valid JSON (line 1" in warnings
    assert "latin1.md: skipped: not UTF-8 text" in warnings
    assert "typo.md: unknown key 'summmary' ignored (did you mean 'summary'?)" in warnings
    assert len(result.warnings) == 8


def test_default_language_fills_in(tmp_path: Path) -> None:
    write(tmp_path, "no-language.md", "---\ntitle: T\ndate: 2024-12-02 10:00\n---\nBody\n")
    (article,) = fetch(files_source(tmp_path, default_language="ar")).articles
    assert article.language == "ar" and article.url == f"{SITE}/ar/no-language"


def test_undated_files_are_stamped_now_with_a_warning(tmp_path: Path) -> None:
    write(tmp_path, "undated.md", "---\ntitle: T\nlanguage: en\n---\nBody\n")
    result = fetch(files_source(tmp_path))
    assert result.articles[0].undated and result.articles[0].published_at == NOW
    assert result.warnings == [f"undated.md has no date; using the time first seen ({NOW.isoformat()})"]


def test_drafts_hidden_files_and_subdirectories(tmp_path: Path) -> None:
    write(tmp_path, "2024/12/nested.md", GOOD)
    write(tmp_path, "_draft.md", GOOD.replace("Water", "Draft"))
    write(tmp_path, ".editor-swap.md", GOOD.replace("Water", "Hidden"))
    write(
        tmp_path,
        "marked-draft.md",
        GOOD.replace("---\nFirst", "draft: true\n---\nFirst").replace("Water", "Marked"),
    )
    write(tmp_path, "notes.txt", "not an article")
    result = fetch(files_source(tmp_path))
    assert [a.title for a in result.articles] == ["Water talks open in Amman"]
    assert result.warnings == []


def test_missing_directory_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        fetch(files_source("articles", base_dir=tmp_path))
    assert caught.value.source == "newsroom"
    assert str(tmp_path / "articles") in caught.value.reason
    assert "sources[newsroom].path" in caught.value.reason


def test_a_file_instead_of_a_directory_is_a_source_error(tmp_path: Path) -> None:
    path = write(tmp_path, "one.md", GOOD)
    with pytest.raises(SourceError, match="is not a directory"):
        fetch(files_source(path))


def test_an_empty_directory_warns(tmp_path: Path) -> None:
    result = fetch(files_source(tmp_path))
    assert result.articles == [] and "holds no .md, .markdown, .json files" in result.warnings[0]


def test_slugs_keep_any_script() -> None:
    assert slugify("2024-12-02 Water Talks, Amman!") == "2024-12-02-water-talks-amman"
    assert slugify("خبر_عاجل") == "خبر-عاجل"
    assert slugify("***") == "article"
