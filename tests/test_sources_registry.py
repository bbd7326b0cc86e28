"""Source kinds are found, not listed: each module declaring KIND is one; the config union, the
factory and the loader's hints come from there."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.config import Config, FeedSourceSettings, load_config
from publisher.errors import ConfigError
from publisher.sources import SourceKind, build_source, kind_names, source_kinds
from publisher.sources.feeds import FeedSource
from publisher.sources.files import FilesSource
from tests.conftest import REPO, write_config


def test_the_built_in_kinds_declare_themselves() -> None:
    assert kind_names() == ["feed", "files", "pages", "wordpress"]
    for name, kind in source_kinds().items():
        assert isinstance(kind, SourceKind) and kind.name == name and kind.summary
        assert kind.settings.model_fields["kind"].annotation.__args__ == (name,)  # type: ignore[union-attr]


def test_the_config_union_is_built_from_the_registry(tmp_path: Path) -> None:
    sources = (
        f"  - kind: files\n    name: newsroom\n    path: {REPO / 'samples' / 'articles'}\n"
        "  - kind: feed\n    name: wire\n    url: https://wire.example.net/feed.xml\n    credit: {en: Wire}\n"
    )
    config: Config = load_config(write_config(tmp_path, sources=sources))
    models = [type(s) for s in config.sources]
    assert models == [source_kinds()["files"].settings, source_kinds()["feed"].settings]
    assert models[1] is FeedSourceSettings  # the old import path still names the same class
    built = [
        build_source(s, site_base_url=config.site.base_url, base_dir=config.base_dir) for s in config.sources
    ]
    assert isinstance(built[0], FilesSource) and isinstance(built[1], FeedSource)


def test_an_unknown_kind_is_refused_with_every_kind_and_what_it_reads(tmp_path: Path) -> None:
    path = write_config(tmp_path, sources="  - kind: feeds\n    name: x\n    url: https://a.example/\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert "sources[0]" in message and "config.yaml:" in message
    for kind in source_kinds().values():
        assert f"{kind.name} ({kind.summary})" in message


def test_a_misspelt_source_key_gets_a_hint(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, sources="  - kind: feed\n    name: x\n    url: https://a.example/\n    credits: Wire\n"
    )
    with pytest.raises(ConfigError, match=r"sources\[0\]\.credits: unknown key 'credits' \(hint: did you mean 'credit'\?\)"):
        load_config(path)
