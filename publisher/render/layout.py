"""The digest's hierarchy: which story leads, which run compact, which are only listed.

The order of selection decides the weight. The lead is the first article a source marked
`featured`, else the first one; the next few are secondary stories (headline, summary and a
thumbnail), grouped under a section heading where the section changes; the rest are a short list of
"more headlines". Nothing here knows about MJML or HTML.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

SECONDARY_STORIES = 5  # after the lead; the rest of the digest is listed as headlines


@dataclass(frozen=True)
class ArticleView:
    """What the templates show of one article: plain text, absolute URLs."""

    number: int
    title: str
    url: str
    summary: str
    section: str | None
    author: str
    credit: str
    image_url: str
    image_alt: str
    caption: str
    featured: bool = False
    section_label: str = ""


@dataclass(frozen=True)
class SectionView:
    key: str | None
    label: str
    articles: list[ArticleView] = field(default_factory=list)


@dataclass(frozen=True)
class DigestLayout:
    lead: ArticleView | None
    secondary: list[SectionView]
    more: list[ArticleView]


def group(views: Sequence[ArticleView], label: Callable[[str | None, bool], str]) -> list[SectionView]:
    """Consecutive articles of one section together; `label(key, is_first_group)` names each group."""
    sections: list[SectionView] = []
    for view in views:
        if not sections or sections[-1].key != view.section:
            sections.append(SectionView(key=view.section, label=label(view.section, not sections)))
        sections[-1].articles.append(view)
    return sections


def arrange(
    views: Sequence[ArticleView], label: Callable[[str | None, bool], str], secondary: int = SECONDARY_STORIES
) -> DigestLayout:
    """Lead, secondary stories grouped by section, and the rest as headlines."""
    if not views:
        return DigestLayout(lead=None, secondary=[], more=[])
    lead = next((view for view in views if view.featured), views[0])
    rest = [view for view in views if view is not lead]
    return DigestLayout(lead=lead, secondary=group(rest[:secondary], label), more=rest[secondary:])
