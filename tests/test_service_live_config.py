"""LiveConfig: edits are validated, swapped whole and announced; bad edits are refused and logged once."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from publisher.config import Config
from publisher.errors import ConfigError
from publisher.live_config import LiveConfig
from publisher.scheduler import validate_schedule
from tests.conftest import write_config


def rewrite(path: Path, old: str, new: str) -> str:
    text = path.read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return text


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path, extra='schedule:\n  digests:\n    en: "0 7 * * *"\n')


def test_an_edit_is_taken_whole_and_listeners_hear_of_it(config_path: Path) -> None:
    live = LiveConfig(config_path)
    heard: list[tuple[Config, Config]] = []
    live.add_listener(lambda old, new: heard.append((old, new)))
    first = live.current()
    rewrite(config_path, '"0 7 * * *"', '"30 6 * * 1-5"')
    assert live.check_now()
    assert live.current().schedule.digests == {"en": "30 6 * * 1-5"}
    assert heard == [(first, live.current())]
    assert live.current().mail == first.mail  # the rest of the file is read again too, unchanged here


def test_touching_or_resaving_the_same_content_does_nothing(config_path: Path) -> None:
    live = LiveConfig(config_path)
    heard: list[object] = []
    live.add_listener(lambda old, new: heard.append(new))
    os.utime(config_path, ns=(1, 1))
    assert not live.check_now()
    config_path.write_text(config_path.read_text(encoding="utf-8"), encoding="utf-8")
    assert not live.check_now()
    assert heard == []


def test_a_broken_edit_is_refused_with_line_and_key_and_logged_once(config_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live = LiveConfig(config_path)
    good = live.current()
    refusals: list[list[str]] = []
    live.add_refusal_listener(refusals.append)
    text = rewrite(config_path, "  batch_size: 50", "  batch_size: many")
    line = text.splitlines().index("  batch_size: many") + 1
    with caplog.at_level(logging.ERROR, logger="publisher.live_config"):
        assert not live.check_now()
        assert live.current() is good
        assert live.problems and live.problems[0].startswith(f"{config_path}:{line}: mail.batch_size: ")
        assert f"config reload refused: {config_path}:{line}: mail.batch_size:" in caplog.text
        assert "the last good config (loaded" in caplog.text
        caplog.clear()
        os.utime(config_path, ns=(5, 5))  # the same broken content, touched: not logged again
        assert not live.check_now()
        assert caplog.text == ""
    assert refusals == [live.problems]

    rewrite(config_path, "  batch_size: many", "  batch_size: 50")  # back to what is running
    assert not live.check_now()
    assert live.problems == [] and refusals[-1] == []
    assert live.current() is good


def test_extra_validators_refuse_what_the_scheduler_could_not_run(config_path: Path) -> None:
    live = LiveConfig(config_path, validators=[lambda c: validate_schedule(c, str(config_path))])
    rewrite(config_path, '"0 7 * * *"', '"0 7 31 2 *"')
    assert not live.check_now()
    assert live.current().schedule.digests == {"en": "0 7 * * *"}
    assert live.problems == [f"{config_path}: schedule.digests.en: '0 7 31 2 *' never fires "
                             "(hint: check day and month, e.g. 31 2 is never)"]


def test_a_removed_file_keeps_the_last_good_config(config_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live = LiveConfig(config_path)
    text = config_path.read_text(encoding="utf-8")
    config_path.unlink()
    with caplog.at_level(logging.ERROR, logger="publisher.live_config"):
        assert not live.check_now()
        assert not live.check_now()
    assert caplog.text.count("cannot read") == 1
    config_path.write_text(text.replace('"0 7 * * *"', '"0 8 * * *"'), encoding="utf-8")
    assert live.check_now()
    assert live.current().schedule.digests == {"en": "0 8 * * *"}


def test_the_watcher_thread_notices_an_edit_within_seconds(config_path: Path) -> None:
    live = LiveConfig(config_path, interval=0.1)
    changed = threading.Event()
    live.add_listener(lambda old, new: changed.set())
    live.start()
    try:
        rewrite(config_path, '"0 7 * * *"', '"0 9 * * *"')
        assert changed.wait(30)  # a bound for a loaded machine; an edit is usually seen within 0.2 s
    finally:
        live.stop()
    assert live.current().schedule.digests == {"en": "0 9 * * *"}


def test_a_bad_file_at_start_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        LiveConfig(tmp_path / "absent.yaml")
    assert caught.value.problems[0].startswith(f"{tmp_path / 'absent.yaml'}: cannot read it")
