"""`publisher init URL` against a news site served on loopback, run as a new user runs it (a subprocess),
then the config it wrote goes through `publisher check` and a real `publisher run --dry-run`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from publisher.discovery.zone import guess_zone
from tests.conftest import write_config
from tests.fixtures.site.site import serve_site
from tests.fixtures.sources.loopback import LoopbackHttpServer, refused_url

pytestmark = pytest.mark.slow


def publisher(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    return subprocess.run([sys.executable, "-m", "publisher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**env, "COLUMNS": "250"})  # fmt: skip


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr


def written(directory: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((directory / "config.yaml").read_text(encoding="utf-8"))


def test_a_bilingual_site_gives_a_config_that_checks_and_collects(tmp_path: Path) -> None:
    with LoopbackHttpServer() as server:
        home = serve_site(server)
        result = publisher("init", home, "--dir", str(tmp_path / "site"), cwd=tmp_path)
        assert_no_traceback(result)
        assert result.returncode == 0, result.stdout + result.stderr
        config = written(tmp_path / "site")
        feeds = {s["language"]: s["url"] for s in config["sources"]}
        assert feeds == {"en": server.url("/en/rss.xml"), "ar": server.url("/ar/atom.xml")}
        assert [e["id"] for e in config["editions"]] == ["en", "ar"]
        ar = config["editions"][1]
        assert ar["language"] == "ar" and ar["title"] == "ليفانت اليوم" and ar["sections"] == ["سياسة", "اقتصاد"]
        assert config["editions"][0]["sections"] == ["politics", "economy"]
        assert config["site"]["name"] == "Levant Today"
        assert config["site"]["logo_url"] == server.url("/static/logo.png")
        assert config["site"]["timezone"] == "Asia/Damascus"
        assert config["mail"]["transport"]["kind"] == "outbox"
        assert config["store"]["url"].startswith("sqlite:///")
        # what it found, guessed, and left out, in words
        assert "carries the same articles as" in result.stdout and "/en/atom.xml" in result.stdout
        assert "/comments/feed" not in result.stdout + (tmp_path / "site" / "config.yaml").read_text()
        assert "guessed:" in result.stdout and "+03:00" in result.stdout
        assert "review:" in result.stdout
        assert "language fr: the site has pages in it but no feed; no edition made for it" in result.stdout
        assert (tmp_path / "site" / "config.schema.json").is_file()

        checked = publisher("--config", str(tmp_path / "site" / "config.yaml"), "check", cwd=tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "2 source(s), 2 edition(s)" in checked.stdout

        ran = publisher("run", "--date", "2024-12-02", "--dry-run", cwd=tmp_path / "site")
        assert_no_traceback(ran)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert [r.path for r in server.requests].count("/ar/atom.xml") >= 2  # init read it, run collected it


def test_an_existing_config_is_kept_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("# mine\n", encoding="utf-8")
    with LoopbackHttpServer() as server:
        home = serve_site(server)
        kept = publisher("init", home, cwd=tmp_path)
        assert kept.returncode == 2 and "--force" in kept.stderr
        assert (tmp_path / "config.yaml").read_text() == "# mine\n"
        forced = publisher("init", home, "--force", cwd=tmp_path)
        assert forced.returncode == 0, forced.stdout + forced.stderr
    assert written(tmp_path)["site"]["name"] == "Levant Today"


@pytest.mark.parametrize("variant", ["no-feeds", "broken-feed"])
def test_a_site_without_a_usable_feed_gets_a_config_and_the_reason(tmp_path: Path, variant: str) -> None:
    with LoopbackHttpServer() as server:
        home = serve_site(server, variant)
        result = publisher("init", home, "--timezone", "Asia/Damascus", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 1
    assert "no feed found" in result.stdout
    if variant == "broken-feed":
        assert f"{server.url('/en/rss.xml')} (linked from {home}) is not a usable feed: it is an HTML page" in result.stdout
    config = written(tmp_path)
    assert config["sources"] == [] and [e["id"] for e in config["editions"]] == ["en", "ar"]
    assert config["site"]["timezone"] == "Asia/Damascus"
    checked = publisher("check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_site_that_is_down_is_named_and_a_config_still_written(tmp_path: Path) -> None:
    address = refused_url("/")
    result = publisher("init", address, cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 1
    assert f"{address} cannot be reached (connection refused)" in result.stdout
    assert "site.timezone: set to UTC" in result.stdout
    checked = publisher("check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_run_pointed_at_a_home_page_names_the_feeds_it_links_to(tmp_path: Path) -> None:
    with LoopbackHttpServer() as server:
        home = serve_site(server)
        write_config(tmp_path, sources=f"  - kind: feed\n    name: site\n    url: {home}\n")
        result = publisher("run", "--date", "2024-12-02", "--dry-run", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 1
    flat = " ".join(result.stdout.split())
    assert "that page links to these feeds:" in flat
    assert server.url("/en/rss.xml") in flat.replace(" ", "") or server.url("/en/rss.xml") in result.stdout


def test_feed_dates_in_utc_do_not_pretend_to_tell_the_zone() -> None:
    utc = [datetime.fromisoformat("2024-12-02T09:00:00+00:00")]
    assert guess_zone(utc, ["ar"]).zone is None
    summer_winter = [datetime.fromisoformat("2024-07-01T09:00:00+01:00"), datetime.fromisoformat("2024-12-01T09:00:00+00:00")]
    assert guess_zone(summer_winter, ["en"]).zone == "Europe/London"


def test_a_wordpress_site_without_feed_links_is_found_by_its_common_paths(tmp_path: Path) -> None:
    with LoopbackHttpServer() as server:
        home = serve_site(server, "wordpress")
        result = publisher("init", home, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        config = written(tmp_path)
        assert [s["url"] for s in config["sources"]] == [server.url("/feed")]
        text = (tmp_path / "config.yaml").read_text(encoding="utf-8")
        assert "#   - kind: wordpress" in text.replace("  #", "#") or "# - kind: wordpress" in text
        assert "WordPress REST API" in result.stdout and "common path /feed" in result.stdout
        assert publisher("check", cwd=tmp_path).returncode == 0


def test_the_address_of_a_feed_itself_is_taken_as_the_feed(tmp_path: Path) -> None:
    with LoopbackHttpServer() as server:
        serve_site(server)
        result = publisher("init", server.url("/ar/atom.xml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    config = written(tmp_path)
    assert [(s["url"], s["language"]) for s in config["sources"]] == [(server.url("/ar/atom.xml"), "ar")]
    assert [e["id"] for e in config["editions"]] == ["ar"] and config["site"]["name"] == "ليفانت اليوم"


def test_a_json_feed_is_read_with_its_language_tags_and_offsets() -> None:
    from publisher.discovery.feed import NotAFeed, read_feed
    from publisher.discovery.fetch import Fetched

    body = (
        '{"version": "https://jsonfeed.org/version/1.1", "title": "Levant Today", "language": "ar",'
        ' "items": [{"id": "1", "url": "https://news.example.org/1", "tags": ["سياسة"],'
        ' "date_published": "2024-12-02T09:00:00+03:00"}]}'
    ).encode()
    facts = read_feed(Fetched("https://news.example.org/feed.json", 200, "application/feed+json", body))
    assert (facts.kind, facts.language, dict(facts.categories)) == ("json", "ar", {"سياسة": 1})
    assert facts.dates[0].utcoffset() is not None and facts.dates[0].utcoffset().total_seconds() == 3 * 3600  # type: ignore[union-attr]
    with pytest.raises(NotAFeed, match="not a JSON Feed"):
        read_feed(Fetched("https://news.example.org/x.json", 200, "application/json", b'{"a": 1}'))
