"""Section variants of a digest, rendered once and frozen like the digest itself.

A subscriber who chose some sections gets a digest of only those articles: a variant, rendered for
that set of sections. It must be frozen too, or a send resumed after a template edit would send the
later recipients something other than what the first ones got. This module is the render side of
that storage: a canonical key per section set, the (de)serialization of a RenderedDigest to one text
value, and `frozen_variant`, which returns the stored variant or renders, stores and re-reads it
(the first stored wins when two processes race), over any store that implements VariantStore.

The pipeline's variant callback becomes, in one line (store: the DigestStore holding the two
methods below):
    rendered = frozen_variant(store.digests, record.id, sections, lambda: render_digest(config, None, subset))
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Protocol

from publisher.models import RenderedDigest

_FIELDS = ("subject", "html", "text", "preheader", "language", "direction")


class VariantStore(Protocol):
    """Where frozen variants live: one value per (digest, key); saving an existing key keeps the old one."""

    def load_variant(self, digest_id: int, key: str) -> str | None: ...

    def save_variant(self, digest_id: int, key: str, value: str) -> None: ...


def variant_key(sections: Iterable[str | None]) -> str:
    """The same key for the same set of sections, whatever their order ("" stands for no section)."""
    return json.dumps(sorted({section or "" for section in sections}), ensure_ascii=False, separators=(",", ":"))


def encode_rendered(rendered: RenderedDigest) -> str:
    return json.dumps({name: getattr(rendered, name) for name in _FIELDS}, ensure_ascii=False)


def decode_rendered(value: str) -> RenderedDigest:
    data = json.loads(value)
    if not isinstance(data, dict) or set(data) != set(_FIELDS) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError("not a stored rendered digest")
    return RenderedDigest(**data)


def frozen_variant(
    store: VariantStore, digest_id: int, sections: Iterable[str | None], render: Callable[[], RenderedDigest]
) -> RenderedDigest:
    """The variant for `sections` as first rendered: from the store, else rendered now and stored."""
    key = variant_key(sections)
    found = store.load_variant(digest_id, key)
    if found is not None:
        return decode_rendered(found)
    rendered = render()
    store.save_variant(digest_id, key, encode_rendered(rendered))
    stored = store.load_variant(digest_id, key)  # a concurrent renderer may have stored first
    return decode_rendered(stored) if stored is not None else rendered
