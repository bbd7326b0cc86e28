"""Placeholder slots: per-recipient values left open in a digest rendered once per edition and day.

A slot is the ASCII token ``PUBSLOT0<KEY>0`` (KEY: capital letters). It has no '=' and no punctuation,
so Jinja escaping, MJML, css-inline and quoted-printable all carry it through unchanged, and the
MIME builder can split pre-encoded bodies at it.

A conditional block ``PUBSLOT0IF<KEY>0 ... PUBSLOT0ELSE0 ... PUBSLOT0ENDIF0`` keeps its first branch when
the recipient's value for KEY is non-empty and its second otherwise ("Hello Sam," / "Hello,").
Blocks do not nest.
"""

from __future__ import annotations

import enum
import html
import re
from collections.abc import Mapping

PREFIX = "PUBSLOT0"
SUFFIX = "0"


class Slot(enum.StrEnum):
    """The per-recipient values a digest may leave open."""

    UNSUBSCRIBE_URL = "UNSUBSCRIBE"
    PREFERENCES_URL = "PREFERENCES"
    NAME = "NAME"
    EMAIL = "EMAIL"
    # analytics.per_subscriber: "/<signed reader>" after a click or open link; empty in public copies
    READER = "READER"
    # non-empty in a mailed copy only: the open pixel (analytics.opens) sits in an IFMAILED block
    MAILED = "MAILED"


REQUIRED_SLOTS: frozenset[Slot] = frozenset({Slot.UNSUBSCRIBE_URL})
_KNOWN = frozenset(slot.value for slot in Slot)

SLOT_PATTERN = re.compile(PREFIX + r"([A-Z]+)" + SUFFIX)
_CONDITIONAL = re.compile(
    PREFIX
    + r"IF([A-Z]+)"
    + SUFFIX
    + r"(.*?)"
    + PREFIX
    + r"ELSE"
    + SUFFIX
    + r"(.*?)"
    + PREFIX
    + "ENDIF"
    + SUFFIX,
    re.DOTALL,
)


def slot_values(
    *, unsubscribe_url: str, preferences_url: str, name: str = "", email: str = "", reader: str = "", mailed: bool = False
) -> dict[str, str]:
    """The one mapping from a recipient's (or a public page's) values to the slots they fill."""
    return {
        Slot.UNSUBSCRIBE_URL.value: unsubscribe_url,
        Slot.PREFERENCES_URL.value: preferences_url,
        Slot.NAME.value: name,
        Slot.EMAIL.value: email,
        Slot.READER.value: reader,
        Slot.MAILED.value: "1" if mailed else "",
    }


def public_values(link: str) -> dict[str, str]:
    """Slots of a copy nobody in particular reads (archive, console, preview): no name, no address,
    `link` where the personal links would be, no reader in click links and no open pixel."""
    return slot_values(unsubscribe_url=link, preferences_url=link)


def defuse(text: str) -> str:
    """Content from outside (titles, summaries) must not carry a slot: a feed could otherwise
    break the render with a stray conditional, or have a recipient's address filled into a title.
    A WORD JOINER (invisible) breaks the token."""
    return text.replace(PREFIX, "PUBSLOT\u20600") if PREFIX in text else text


def defuse_url(url: str) -> str:
    """The same for a URL: '%30' is '0' percent-encoded, equivalent for any server."""
    return url.replace(PREFIX, "PUBSLOT%30") if PREFIX in url else url


def token(slot: Slot) -> str:
    """The placeholder written into the rendered digest for one slot."""
    return f"{PREFIX}{slot.value}{SUFFIX}"


def conditional(slot: Slot, present: str, absent: str) -> str:
    """A block that keeps `present` when the recipient has a value for `slot`, else `absent`."""
    return f"{PREFIX}IF{slot.value}{SUFFIX}{present}{PREFIX}ELSE{SUFFIX}{absent}{PREFIX}ENDIF{SUFFIX}"


def resolve_conditionals(text: str, present: Mapping[str, bool]) -> str:
    """Keep one branch of every conditional block; `present[key]` says which (missing counts as False)."""
    return _CONDITIONAL.sub(lambda m: m.group(2) if present.get(m.group(1), False) else m.group(3), text)


def conditional_keys(text: str) -> set[str]:
    """Slot keys that some conditional block in `text` depends on."""
    return {m.group(1) for m in _CONDITIONAL.finditer(text)}


def slots_in(text: str) -> set[str]:
    """Every slot key used in `text`, conditionals resolved either way."""
    conditions = conditional_keys(text)
    keys = set(conditions)
    for present in (True, False):
        resolved = resolve_conditionals(text, dict.fromkeys(conditions, present))
        keys |= {m.group(1) for m in SLOT_PATTERN.finditer(resolved)}
    return keys


def check_tokens(text: str) -> None:
    """Raise ValueError when the text has an unknown slot or a broken conditional block."""
    flat = _CONDITIONAL.sub(lambda m: m.group(2) + m.group(3), text)
    for match in SLOT_PATTERN.finditer(flat):
        key = match.group(1)
        if key in {"ELSE", "ENDIF"} or (key.startswith("IF") and key[2:] in _KNOWN):
            raise ValueError(f"unbalanced conditional slot {match.group(0)!r}")
        if key not in _KNOWN:
            raise ValueError(f"unknown slot {match.group(0)!r}; known: {', '.join(sorted(_KNOWN))}")
    for key in conditional_keys(text):
        if key not in _KNOWN:
            raise ValueError(f"unknown slot in a conditional: {key!r}; known: {', '.join(sorted(_KNOWN))}")


def fill_slots(text: str, values: Mapping[str, str], *, escape_html: bool = False) -> str:
    """Replace every slot in `text` with its value (keys are Slot values: "UNSUBSCRIBE", "NAME", ...).

    Conditional blocks keep their first branch when the value is non-empty. Every slot the text uses
    must be given (ValueError otherwise), so nothing personal can be left as a stray token. With
    escape_html the values are HTML-escaped, as they must be when `text` is the HTML part.
    """
    resolved = resolve_conditionals(text, {key: bool(value) for key, value in values.items()})

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ValueError(f"no value given for slot {key!r}")
        value = values[key]
        return html.escape(value, quote=True) if escape_html else value

    return SLOT_PATTERN.sub(replace, resolved)
