"""`publisher preview` renders afresh: a template edit shows at once, even for a day already
rendered (and sent), while the stored render that sending resumes from stays as it was."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from click.testing import CliRunner

from publisher.cli import main_group
from publisher.cli.common import open_store
from publisher.config import load_config
from publisher.pipeline import run_digests
from tests.conftest import write_config

DAY = date(2024, 12, 2)


def test_preview_shows_a_template_edit_for_a_day_already_rendered(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    config = load_config(path)
    store = open_store(config)
    try:
        from publisher.pipeline.collect import collect

        collect(config, store)
        run_digests(config, store, DAY, editions=["ar"])
        stored = store.digests.find("ar", DAY)
        assert stored is not None and stored.rendered is not None
    finally:
        store.close()
    (tmp_path / "templates" / "email").mkdir(parents=True)
    (tmp_path / "templates" / "email" / "strings.yaml").write_text(
        "ar:\n  read_more: تابع القراءة\n", encoding="utf-8"
    )
    result = CliRunner().invoke(
        main_group, ["preview", "--config", str(path), "--date", DAY.isoformat(), "--edition", "ar",
                     "--out", str(tmp_path / "preview")],
    )
    assert result.exit_code == 0, result.output
    html = (tmp_path / "preview" / "ar-2024-12-02.html").read_text(encoding="utf-8")
    assert "تابع القراءة" in html and "اقرأ المزيد" not in html
    assert "Reader" not in html and "مرحباً،" in html  # no English sample name in an Arabic greeting
    eml = (tmp_path / "preview" / "ar-2024-12-02.eml").read_bytes()
    assert b"Reader" not in eml
    store = open_store(load_config(path))
    try:
        again = store.digests.find("ar", DAY)
        assert again is not None and again.rendered is not None
        assert again.rendered.html == stored.rendered.html  # sending keeps the frozen render
        assert "اقرأ المزيد" in again.rendered.html
    finally:
        store.close()
