"""One row of a list, checked: the address, the edition (language), the status, the sections, the name.

A row either becomes a Candidate (with notes about what was cleaned, e.g. a name with a line break)
or a Rejection with the reason. The same rules serve `subscribers add`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from publisher.config import Config
from publisher.importing.addresses import check_address
from publisher.importing.formats import Layout
from publisher.models import SubscriberStatus
from publisher.names import cleaned_with_problem
from publisher.store.subscribers import ImportRow


class Candidate(NamedTuple):
    line: int
    row: ImportRow
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str


def shown(value: str, limit: int = 60) -> str:
    """A cell quoted for a report line: control characters escaped, long values cut."""
    cut = value if len(value) <= limit else value[:limit] + "..."
    return repr(cut)


class RowChecker:
    """The rules of one config: its editions (languages and ids), their sections and the aliases."""

    def __init__(self, config: Config, *, default_edition: str | None = None) -> None:
        self._languages: dict[str, str] = {}
        for edition in config.editions:
            self._languages.setdefault(edition.language.lower(), edition.language)
            self._languages.setdefault(edition.id.lower(), edition.language)
        self.editions = ", ".join(f"{e.id} ({e.language})" for e in config.editions)
        offered = list(dict.fromkeys(s for e in config.editions for s in e.sections))
        self._sections: dict[str, str] = {s.lower(): s for s in offered}
        for canonical, aliases in config.site.section_aliases.items():
            if canonical in offered:
                for alias in aliases:
                    self._sections.setdefault(alias.lower(), canonical)
        self.offered = ", ".join(offered) or "none"
        self.default_language = config.editions[0].language
        if default_edition is not None:
            language = self.language(default_edition)
            if language is None:
                raise ValueError(f"no edition {default_edition!r} (editions: {self.editions})")
            self.default_language = language

    def language(self, value: str) -> str | None:
        return self._languages.get(value.strip().lower())

    def check(self, line: int, fields: Sequence[str], layout: Layout) -> Candidate | Rejection:
        if len(fields) > layout.width:
            return Rejection(
                line,
                f"{len(fields)} fields where the header has {layout.width} (a delimiter inside a value? "
                "put that value in quotes)",
            )
        raw_email = fields[layout.email] if layout.email < len(fields) else ""
        email, problem = check_address(raw_email)
        if email is None:
            return Rejection(line, f"invalid email {shown(raw_email.strip())}: {problem}")
        status = layout.status(fields)
        if not isinstance(status, SubscriberStatus):  # a StrEnum is a str too: test for the status
            return Rejection(line, status)
        return self._rest(line, email, status, fields, layout)

    def values(
        self, line: int, email_text: str, *, name: str = "", edition: str | None = None,
        sections: str = "", status: SubscriberStatus = SubscriberStatus.ACTIVE,
    ) -> Candidate | Rejection:
        """The same checks for values given one by one (`subscribers add`)."""
        email, problem = check_address(email_text)
        if email is None:
            return Rejection(line, f"invalid email {shown(email_text.strip())}: {problem}")
        fields = [name, edition or "", sections]
        layout = Layout("arguments", 0, (0,), 1 if edition else None, 2, lambda _f: status, 3)
        return self._rest(line, email, status, fields, layout)

    def _rest(
        self, line: int, email: str, status: SubscriberStatus, fields: Sequence[str], layout: Layout
    ) -> Candidate | Rejection:
        # Called once per row of every import: plain statements, no generators on the common path.
        width = len(fields)
        index = layout.language
        raw_language = fields[index].strip() if index is not None and index < width else ""
        language = self.default_language
        if raw_language:
            found = self._languages.get(raw_language.lower())
            if found is None:
                return Rejection(line, f"language {shown(raw_language)} has no edition (editions: {self.editions})")
            language = found
        sections: list[str] = []
        index = layout.sections
        listed = fields[index].strip() if index is not None and index < width else ""
        if listed:
            for value in re.split(r"[,;|]", listed):
                value = value.strip()
                if not value:
                    continue
                canonical = self._sections.get(value.lower())
                if canonical is None:
                    return Rejection(line, f"section {shown(value)} is offered by no edition (sections: {self.offered})")
                if canonical not in sections:
                    sections.append(canonical)
        names = layout.names
        if len(names) == 1:
            raw_name = fields[names[0]] if names[0] < width else ""
        else:
            raw_name = " ".join(p for p in (_raw(fields, i) for i in names) if p.strip())
        name, change = cleaned_with_problem(raw_name.strip(" "))
        return Candidate(line, ImportRow(email, name, language, status, tuple(sections)), (change,) if change else ())


def _raw(fields: Sequence[str], index: int) -> str:
    return fields[index] if index < len(fields) else ""
