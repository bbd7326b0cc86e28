"""An item's language from its text, when its own markup names none.

The script decides first and cheaply: Arabic letters mean an Arabic-script language, Latin letters a
Latin-script one. When the site publishes in only one language of that script, that is the answer.
Otherwise py3langid ranks the candidates: a maintained fork of langid.py whose model ships inside the
package (nothing is downloaded), fast on short text, and it accepts a restricted label set. (lingua is
more accurate on very short text but its wheel is ten times larger; headlines plus a summary are
enough for langid.)
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection
from functools import lru_cache
from typing import Any

# A BCP 47 primary subtag: "ar-SY" -> "ar", "en_GB" -> "en".
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")

ARABIC_SCRIPT = frozenset({"ar", "fa", "ur", "ps", "sd", "ug", "ku", "ckb"})
# Languages written in neither Arabic nor Latin script (enough to keep them out of Latin candidates).
OTHER_SCRIPTS = frozenset(
    {"he", "yi", "ru", "uk", "bg", "sr", "mk", "be", "kk", "el", "hy", "ka", "zh", "ja", "ko", "th",
     "hi", "mr", "ne", "bn", "ta", "te", "kn", "ml", "gu", "pa", "si", "am", "km", "lo", "my"}
)  # fmt: skip

_ARABIC = re.compile(r"[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]+")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]+")
_NOT_LETTERS = re.compile(r"[\W\d_]+")
_MIN_LETTERS = 3
_lock = threading.Lock()


def primary_subtag(tag: str | None) -> str | None:
    """The lower-case primary subtag: "en-US" -> "en", "AR" -> "ar"; None when it is not a language tag."""
    if not tag:
        return None
    tag = tag.strip()
    if not _LANGUAGE_TAG.match(tag):
        return None
    return re.split(r"[-_]", tag)[0].lower()


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _ranked(text: str, candidates: Collection[str]) -> str | None:
    with _lock:  # the identifier keeps scratch state
        ranking = _identifier().rank(text)
    for language, _score in ranking:
        if not candidates or language in candidates:
            return str(language)
    return None


def detect_language(text: str, candidates: Collection[str]) -> str | None:
    """The language of `text` among `candidates` (primary subtags the site publishes in), or, when
    none of them is written in the text's script, the detector's own answer. None when there are
    too few letters to tell."""
    letters = len(_NOT_LETTERS.sub("", text))
    if letters < _MIN_LETTERS:
        return None
    # counted by what removing them takes away: one C pass each, no list of one-letter strings
    arabic = len(text) - len(_ARABIC.sub("", text))
    latin = len(text) - len(_LATIN.sub("", text))
    if arabic * 2 > letters:
        in_script = [c for c in candidates if c in ARABIC_SCRIPT]
        pool = in_script or sorted(ARABIC_SCRIPT)
    elif latin * 2 > letters:
        in_script = [c for c in candidates if c not in ARABIC_SCRIPT and c not in OTHER_SCRIPTS]
        pool = in_script
    else:
        in_script = [c for c in candidates if c in OTHER_SCRIPTS]
        pool = in_script
    if len(in_script) == 1:
        return in_script[0]
    return _ranked(text, pool)
