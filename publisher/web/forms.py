"""Reading and checking what a visitor typed: addresses, names, editions, sections."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email
from starlette.datastructures import FormData

from publisher.names import clean_name
from publisher.render.strings import UiStrings
from publisher.render.templates import fill

NAME_LIMIT = 200


@dataclass
class Choices:
    """What a subscribe or preferences form asks for, checked; `errors` are sentences to show."""

    email: str = ""
    name: str = ""
    language: str = ""
    sections: list[str] = field(default_factory=list)
    paused: bool = False
    errors: list[str] = field(default_factory=list)


def field_text(form: FormData, name: str, limit: int = 1000) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def normalized_email(value: str) -> tuple[str | None, str | None]:
    """(address, None) when valid, else (None, the reason). No DNS lookup: no network from a form."""
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        return None, str(exc)
    return checked.normalized.lower(), None


def read_choices(
    form: FormData,
    strings: UiStrings,
    *,
    languages: Sequence[str],
    sections: Sequence[str],
    with_email: bool,
) -> Choices:
    choices = Choices()
    if with_email:
        raw = field_text(form, "email", 400)
        choices.email = raw.strip()
        address, reason = normalized_email(raw)
        if address is None:
            choices.errors.append(fill(str(strings["error_email"]), reason=reason))
        else:
            choices.email = address
    raw_name = field_text(form, "name", 2000)
    choices.name = clean_name(raw_name, limit=2000)  # the one cleaner every entry point uses (publisher.names)
    if len(choices.name) > NAME_LIMIT:
        choices.errors.append(str(strings["error_name"]))
        choices.name = choices.name[:NAME_LIMIT]
    language = field_text(form, "language", 40)
    if language in languages:
        choices.language = language
    else:
        choices.errors.append(str(strings["error_edition"]))
        choices.language = languages[0]
    wanted = [value for value in form.getlist("sections") if isinstance(value, str)]
    if any(value not in sections for value in wanted):
        choices.errors.append(str(strings["error_section"]))
    choices.sections = [key for key in sections if key in wanted]  # config order, no duplicates
    choices.paused = field_text(form, "paused", 10) in ("1", "on", "yes", "true")
    return choices
