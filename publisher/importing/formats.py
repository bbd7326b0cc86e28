"""Which tool's export a file is, from its header row, and where our fields are in it.

Recognized (column names as each tool writes them):

- ours (`subscribers export`): email, name, language, status, sections
- Mailchimp audience export, one file per status: "Email Address", "First Name", "Last Name", ...;
  the unsubscribed file adds UNSUB_TIME (-> unsubscribed), the cleaned file CLEAN_TIME (-> bounced),
  the subscribed file has neither (-> active)
- listmonk subscriber export: uuid, email, name, attributes, status (enabled -> active,
  blocklisted and disabled -> unsubscribed), created_at, updated_at
- Ghost members export: id, email, name, note, subscribed_to_emails (false -> unsubscribed),
  complimentary_plan, stripe_customer_id, created_at, deleted_at, labels, tiers
- Substack subscriber export: email, active_subscription, expiry, email_disabled (true ->
  unsubscribed), created_at; addresses at deletion-request.substack.com are deletion requests, refused
- anything else through `--map email=COLUMN,name=COLUMN,...` (fields: email, name, first_name,
  last_name, language, status, sections); the status column may then use any of the words below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from publisher.models import SubscriberStatus

FIELDS = ("email", "name", "first_name", "last_name", "language", "status", "sections")

# Status words of the tools above and of hand-made lists; an empty cell means active (see the CLI doc).
STATUS_WORDS: dict[str, SubscriberStatus] = {
    **{s.value: s for s in SubscriberStatus},
    "": SubscriberStatus.ACTIVE,
    "subscribed": SubscriberStatus.ACTIVE,
    "enabled": SubscriberStatus.ACTIVE,
    "confirmed": SubscriberStatus.ACTIVE,
    "unconfirmed": SubscriberStatus.PENDING,
    "blocklisted": SubscriberStatus.UNSUBSCRIBED,
    "blacklisted": SubscriberStatus.UNSUBSCRIBED,
    "disabled": SubscriberStatus.UNSUBSCRIBED,
    "cleaned": SubscriberStatus.BOUNCED,
    "spam": SubscriberStatus.COMPLAINED,
}

StatusRule = Callable[[Sequence[str]], "SubscriberStatus | str"]


@dataclass(frozen=True)
class Layout:
    """Where our fields are in a file's rows (column indexes), and how a row's status is read."""

    format: str
    email: int
    names: tuple[int, ...]  # joined with a space: name, or first + last
    language: int | None
    sections: int | None
    status: StatusRule
    width: int  # the header's number of columns


def _cell(fields: Sequence[str], index: int | None) -> str:
    return fields[index].strip() if index is not None and index < len(fields) else ""


def _words(index: int | None) -> StatusRule:
    def rule(fields: Sequence[str]) -> SubscriberStatus | str:
        word = _cell(fields, index).lower()
        status = STATUS_WORDS.get(word)
        if status is None:
            return f"unknown status {word[:40]!r} (use {', '.join(s.value for s in SubscriberStatus)})"
        return status

    return rule


def _fixed(status: SubscriberStatus) -> StatusRule:
    return lambda _fields: status


def _flag(index: int, *, when_true: SubscriberStatus, when_false: SubscriberStatus, column: str) -> StatusRule:
    def rule(fields: Sequence[str]) -> SubscriberStatus | str:
        word = _cell(fields, index).lower()
        if word in ("true", "1", "yes"):
            return when_true
        if word in ("false", "0", "no", ""):
            return when_false
        return f"{column} is {word[:40]!r}, not true or false"

    return rule


def _substack(email: int, disabled: int | None) -> StatusRule:
    flag = (
        _flag(disabled, when_true=SubscriberStatus.UNSUBSCRIBED, when_false=SubscriberStatus.ACTIVE,
              column="email_disabled")
        if disabled is not None else _fixed(SubscriberStatus.ACTIVE)
    )

    def rule(fields: Sequence[str]) -> SubscriberStatus | str:
        if _cell(fields, email).lower().endswith("@deletion-request.substack.com"):
            return "a Substack deletion request, not an address: not imported"
        return flag(fields)

    return rule


def parse_map(text: str) -> dict[str, str]:
    """`email=E-mail,name=Full name` -> {"email": "E-mail", "name": "Full name"}; ValueError if wrong."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        field, sep, column = part.partition("=")
        field = field.strip().lower()
        if not sep or not column.strip():
            raise ValueError(f"{part!r} is not FIELD=COLUMN (example: --map 'email=E-mail,name=Full name')")
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r} in --map (fields: {', '.join(FIELDS)})")
        mapping[field] = column.strip()
    return mapping


def detect_layout(header: Sequence[str], mapping: dict[str, str] | None = None) -> Layout | str:
    """The layout of a file with this header, or why none fits (a sentence with the fix)."""
    names = [h.strip() for h in header]
    lower = [n.lower() for n in names]
    index = {n: i for i, n in reversed(list(enumerate(lower)))}
    width = len(names)
    if mapping:
        found: dict[str, int] = {}
        for field, column in mapping.items():
            if column.lower() not in index:
                return f"--map {field}={column}: no such column (columns: {', '.join(names)})"
            found[field] = index[column.lower()]
        if "email" not in found:
            return "--map needs email=COLUMN"
        parts = tuple(found[f] for f in ("name", "first_name", "last_name") if f in found)
        return Layout("mapped columns", found["email"], parts, found.get("language"), found.get("sections"),
                      _words(found.get("status")), width)
    if "email address" in index:
        parts = tuple(index[c] for c in ("first name", "last name") if c in index)
        if "unsub_time" in index:
            kind, status = "Mailchimp (unsubscribed)", SubscriberStatus.UNSUBSCRIBED
        elif "clean_time" in index:
            kind, status = "Mailchimp (cleaned)", SubscriberStatus.BOUNCED
        else:
            kind, status = "Mailchimp (subscribed)", SubscriberStatus.ACTIVE
        return Layout(kind, index["email address"], parts, None, None, _fixed(status), width)
    if "email" not in index:
        return (
            f"no email column in the header (columns: {', '.join(n[:40] for n in names[:20])}); "
            "write the header email,name,language,status,sections or name the columns with "
            "--map email=COLUMN,name=COLUMN"
        )
    email = index["email"]
    name = tuple(i for i in (index.get("name"),) if i is not None)
    if {"uuid", "attributes", "status"} <= index.keys():
        return Layout("listmonk", email, name, None, None, _words(index["status"]), width)
    if "subscribed_to_emails" in index:
        rule = _flag(index["subscribed_to_emails"], when_true=SubscriberStatus.ACTIVE,
                     when_false=SubscriberStatus.UNSUBSCRIBED, column="subscribed_to_emails")
        return Layout("Ghost", email, name, None, None, rule, width)
    if "active_subscription" in index or "email_disabled" in index:
        return Layout("Substack", email, name, None, None, _substack(email, index.get("email_disabled")), width)
    return Layout("publisher CSV", email, name, index.get("language"), index.get("sections"),
                  _words(index.get("status")), width)
