"""Posts for a Telegram channel in Telegram's HTML subset, within Telegram's limits.

Only the tags Telegram's HTML parse mode knows are written (b, i, u, s, a href, code, pre, blockquote);
text is escaped with &lt; &gt; &amp; (and &quot; inside href). Telegram counts a message's length after
its entities are parsed, in UTF-16 code units: 4,096 for a text message, 1,024 for a photo caption.

A digest is one post, or several split at story boundaries when it is longer than 4,096; with a lead
image the first post is a photo whose caption holds what fits in 1,024 and the rest follows as text
posts. In `articles` mode each story is its own post (a photo with its caption when it has an image).
A story that alone is too long has its summary cut at a word.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from publisher.models import Article
from publisher.render.email import clean_line, shorten, summary_of

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
ALLOWED_TAGS = frozenset({"b", "i", "u", "s", "a", "code", "pre", "blockquote"})
_TAG = re.compile(r"<[^>]*>")

Mode = Literal["digest", "articles"]


def utf16_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def visible(markup: str) -> str:
    """The text Telegram shows for a piece of our HTML: tags dropped, entities decoded."""
    return html.unescape(_TAG.sub("", markup))


def visible_length(markup: str) -> int:
    return utf16_length(visible(markup))


def escape(text: str) -> str:
    return html.escape(text, quote=False)


def _attribute(text: str) -> str:
    return html.escape(text, quote=True)


@dataclass(frozen=True)
class Post:
    """One Bot API call: sendMessage (text) or sendPhoto (photo + caption), and what it is, by name."""

    text: str  # Telegram HTML
    label: str  # a headline or the digest's title: names the post in reports
    photo: str | None = None

    @property
    def method(self) -> str:
        return "sendPhoto" if self.photo else "sendMessage"

    def payload(self, chat: str) -> dict[str, Any]:
        if self.photo:
            return {"method": "sendPhoto", "chat_id": chat, "photo": self.photo, "caption": self.text,
                    "parse_mode": "HTML"}
        return {"method": "sendMessage", "chat_id": chat, "text": self.text, "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": True}}


@dataclass(frozen=True)
class Story:
    headline: str
    url: str
    summary: str
    credit: str
    image_url: str | None

    @classmethod
    def of(cls, article: Article) -> Story:
        credit = clean_line(article.source_credit) or clean_line(article.author)
        image = article.image_url if article.image_url and article.image_url.startswith(("https://", "http://")) else None
        return cls(clean_line(article.title), article.url, summary_of(article), credit, image)

    def headline_html(self, limit: int = TEXT_LIMIT) -> str:
        """The bold linked headline; a headline longer than `limit` (never seen, but possible) is cut at a word."""
        headline, cut = self.headline, limit - 1
        while utf16_length(headline) > limit and cut > 0:
            headline = shorten(self.headline, cut)
            cut -= max(1, utf16_length(headline) - limit)
        return f'<b><a href="{_attribute(self.url)}">{escape(headline)}</a></b>'

    def markup(self, limit: int) -> str:
        """Headline, summary, credit; the summary cut at a word so that the whole fits in `limit`."""
        tail = f"\n<i>{escape(self.credit)}</i>" if self.credit else ""
        head = self.headline_html(limit // 2)
        tail = tail if visible_length(head + tail) < limit else ""
        room = limit - visible_length(head + tail) - 1
        summary, cut = self.summary, room - 1  # one unit kept for the ellipsis
        while summary and utf16_length(summary) > room:
            summary = shorten(self.summary, cut) if cut > 0 else ""
            summary = "" if summary == "…" else summary
            cut -= max(1, utf16_length(summary) - room)
        return head + (f"\n{escape(summary)}" if summary else "") + tail


def _title_html(title: str) -> str:
    return f"<b>{escape(clean_line(title))}</b>" if clean_line(title) else ""


def _pack(blocks: Sequence[tuple[str, str]], limit: int, first: str = "") -> list[tuple[str, str]]:
    """Greedy: blocks (markup, label) joined by blank lines into posts of at most `limit`."""
    posts: list[tuple[str, str]] = []
    current, label = first, ""
    for markup, name in blocks:
        candidate = f"{current}\n\n{markup}" if current else markup
        if current and visible_length(candidate) > limit:
            posts.append((current, label))
            current, label = markup, name
        else:
            current, label = candidate, label or name
    if current:
        posts.append((current, label))
    return posts


def digest_posts(title: str, articles: Sequence[Article], *, images: bool = True) -> list[Post]:
    """The digest as few posts as Telegram allows: title then every story, split at stories."""
    stories = [Story.of(a) for a in articles]
    heading = _title_html(title)
    label = clean_line(title) or (stories[0].headline if stories else "")
    posts: list[Post] = []
    lead = next((s for s in stories if s.image_url), None) if images else None
    rest = stories
    if lead is not None:
        # the photo's caption: the title and as many stories as fit (the lead first, cut if it must be)
        caption_blocks = [lead, *[s for s in stories if s is not lead]]
        budget = CAPTION_LIMIT - (visible_length(heading) + 2 if heading else 0)
        caption = f"{heading}\n\n{lead.markup(budget)}" if heading else lead.markup(budget)
        taken = 1
        for story in caption_blocks[1:]:
            candidate = f"{caption}\n\n{story.markup(TEXT_LIMIT)}"
            if visible_length(candidate) > CAPTION_LIMIT:
                break
            caption, taken = candidate, taken + 1
        assert lead.image_url is not None
        posts.append(Post(caption, label, lead.image_url))
        rest, heading = caption_blocks[taken:], ""
    blocks = [(s.markup(TEXT_LIMIT - (visible_length(heading) + 2 if heading else 0)), s.headline) for s in rest]
    for markup, name in _pack(blocks, TEXT_LIMIT, heading):
        posts.append(Post(markup, name or label))
    return posts


def article_posts(articles: Sequence[Article], *, images: bool = True) -> list[Post]:
    """Each story its own post; with an image, a photo whose caption is the story if it fits in 1,024,
    else the headline, and the story follows as a text post."""
    posts: list[Post] = []
    for story in (Story.of(a) for a in articles):
        if images and story.image_url:
            whole = story.markup(TEXT_LIMIT)
            if visible_length(whole) <= CAPTION_LIMIT:
                posts.append(Post(whole, story.headline, story.image_url))
                continue
            posts.append(Post(story.headline_html(CAPTION_LIMIT), story.headline, story.image_url))
            posts.append(Post(whole, story.headline))
        else:
            posts.append(Post(story.markup(TEXT_LIMIT), story.headline))
    return posts


def plan(mode: Mode, title: str, articles: Sequence[Article], *, images: bool = True) -> list[Post]:
    return digest_posts(title, articles, images=images) if mode == "digest" else article_posts(articles, images=images)
