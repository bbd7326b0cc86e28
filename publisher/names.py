"""A person's display name, cleaned once wherever it enters: the form, an import, a webhook.

A name ends up in a To: header, a greeting and a console table. Control characters (CR/LF could
break a header; NUL is refused by PostgreSQL and cut by SQLite), bidi overrides that would reorder
the text around it, and runaway lengths never get that far.
"""

from __future__ import annotations

import re
import unicodedata

MAX_NAME_LENGTH = 100

# C0/C1 controls, DEL, and the bidi embedding/override/isolate controls (U+202A-202E, U+2066-2069).
_UNWANTED = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")


def _already_clean(raw: str, limit: int) -> bool:
    # What clean_name would return unchanged, decided by C-level checks (an import calls this per
    # row). isprintable() is False for every character _UNWANTED or \s match except the ASCII space.
    return (
        len(raw) <= limit and raw.isprintable() and "  " not in raw and raw == raw.strip()
        and unicodedata.is_normalized("NFC", raw)
    )


def clean_name(raw: str | None, *, limit: int = MAX_NAME_LENGTH) -> str:
    """Unicode NFC, controls replaced by spaces, whitespace collapsed, cut to `limit` characters."""
    if not raw:
        return ""
    if _already_clean(raw, limit):
        return raw
    text = unicodedata.normalize("NFC", raw)
    text = _SPACES.sub(" ", _UNWANTED.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[:limit].rstrip()
    return text


def name_problem(raw: str | None, *, limit: int = MAX_NAME_LENGTH) -> str | None:
    """Why `raw` had to be changed to be stored, for a report line; None when it is stored as given."""
    if not raw or _already_clean(raw.strip(" "), limit):
        return None
    changes = []
    if _UNWANTED.search(raw):
        changes.append("control characters removed from the name")
    cleaned = _SPACES.sub(" ", _UNWANTED.sub(" ", unicodedata.normalize("NFC", raw))).strip()
    if len(cleaned) > limit:
        changes.append(f"name cut to {limit} characters (it had {len(cleaned):,})")
    return "; ".join(changes) or None


def cleaned_with_problem(raw: str, *, limit: int = MAX_NAME_LENGTH) -> tuple[str, str | None]:
    """clean_name and name_problem at once; a name that needs no change costs one C-level check."""
    if not raw or _already_clean(raw, limit):
        return raw, None
    return clean_name(raw, limit=limit), name_problem(raw, limit=limit)
