"""Section variants are frozen: rendered once per (digest, section set), then read back unchanged,
even after a template edit; the first stored wins a race."""

from __future__ import annotations

import pytest

from publisher.models import RenderedDigest
from publisher.render.variants import decode_rendered, encode_rendered, frozen_variant, variant_key


class MemoryVariants:
    def __init__(self) -> None:
        self.values: dict[tuple[int, str], str] = {}
        self.saves = 0

    def load_variant(self, digest_id: int, key: str) -> str | None:
        return self.values.get((digest_id, key))

    def save_variant(self, digest_id: int, key: str, value: str) -> None:
        self.saves += 1
        self.values.setdefault((digest_id, key), value)


def digest(html: str) -> RenderedDigest:
    return RenderedDigest(subject="س", html=html, text="t\n", preheader="p", language="ar", direction="rtl")


def test_a_variant_is_rendered_once_and_survives_a_template_edit() -> None:
    store = MemoryVariants()
    first = frozen_variant(store, 7, ["politics", "culture"], lambda: digest("<p>before the edit</p>"))
    again = frozen_variant(store, 7, ["culture", "politics"], lambda: digest("<p>after the edit</p>"))
    assert first == again == digest("<p>before the edit</p>") and store.saves == 1
    other = frozen_variant(store, 7, ["sports"], lambda: digest("<p>sports</p>"))
    assert other.html == "<p>sports</p>" and store.saves == 2
    assert frozen_variant(store, 8, ["sports"], lambda: digest("x")).html == "x"  # per digest


def test_the_first_stored_variant_wins_a_race() -> None:
    store = MemoryVariants()
    key = variant_key(["economy"])
    store.values[(1, key)] = encode_rendered(digest("<p>theirs</p>"))

    class Late(MemoryVariants):
        def load_variant(self, digest_id: int, key: str) -> str | None:
            self.loads = getattr(self, "loads", 0) + 1
            return None if self.loads == 1 else store.values[(digest_id, key)]

    late = Late()
    assert frozen_variant(late, 1, ["economy"], lambda: digest("<p>ours</p>")).html == "<p>theirs</p>"


def test_keys_and_encoding() -> None:
    assert variant_key(["b", "a", "a"]) == variant_key(["a", "b"]) != variant_key(["a"])
    assert variant_key([None, "ثقافة"]) == '["","ثقافة"]'
    rendered = digest("<p>حبّات \u200f</p>")
    assert decode_rendered(encode_rendered(rendered)) == rendered
    with pytest.raises(ValueError):
        decode_rendered('{"subject": "x"}')
