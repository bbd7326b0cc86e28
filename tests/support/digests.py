"""Digests for the size budget, SpamAssassin and browser tests: every field filled, summaries at the
length limit, so what is measured is the heaviest digest the template makes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from publisher.config import EditionSettings, SiteSettings
from publisher.models import Article, Recipient, RenderedDigest
from publisher.render.email import DigestRenderer
from publisher.render.message import MessageTemplate
from publisher.render.templates import make_environment

DAY = date(2024, 12, 2)
SENT_AT = datetime(2024, 12, 2, 5, tzinfo=UTC)
SECTIONS = ["politics", "politics", "politics", "economy", "economy", "culture", "culture", "sports", "sports", None]
TEXT = {
    "ar": (
        "وسط تطورات عسكرية مفاجئة في سوريا، عقب الهجوم غير المتوقع الذي نفذته فصائل مسلحة على حلب، "
        "أكدت وزارة الخارجية الإيرانية دعمها للنظام السوري، وقالت إن وجود المستشارين سيستمر. "
    ),
    "en": (
        "Amid sudden military developments in Syria, after the unexpected attack by armed factions on "
        "Aleppo, Iran's foreign ministry reaffirmed its support and said its advisors would stay. "
    ),
}
TITLE = {
    "ar": "المستشارون العسكريون الإيرانيون باقون في سوريا بطلب من النظام وسط تصعيد في الشمال",
    "en": "Iranian military advisors remain in Syria at the regime's request as fighting spreads north",
}
SITE = SiteSettings(
    name="Levant Today",
    base_url="https://news.example.org",
    logo_url="https://news.example.org/static/logo.png",
    public_url="https://news.example.org",
    secret="test-secret-0123456789abcdef",
    unsubscribe_mailto="unsubscribe@news.example.org",
    postal_address="12 Hamra Street, Beirut, Lebanon",
)
EDITIONS = {
    "en": EditionSettings.model_validate(
        {"id": "en", "language": "en", "title": "Morning Digest", "subject": "{lead} | {site}",
         "from": "Levant Today <digest@news.example.org>", "reply_to": "newsroom@news.example.org"}
    ),
    "ar": EditionSettings.model_validate(
        {"id": "ar", "language": "ar", "site_name": "ليفانت اليوم", "title": "النشرة الصباحية",
         "subject": "{lead} | {site}", "from": "ليفانت اليوم <digest@news.example.org>",
         "reply_to": "newsroom@news.example.org"}
    ),
}


def heavy_articles(language: str, count: int) -> list[Article]:
    made = []
    for i in range(count):
        at = datetime(2024, 12, 2, 9, tzinfo=UTC) - timedelta(minutes=i)
        made.append(
            Article(
                id=f"{language}-{i}",
                url=f"https://news.example.org/{language}/2024/12/02/story-{i}?utm_source=digest&ref=a",
                title=f"{TITLE[language]} {i}",
                language=language,
                published_at=at,
                updated_at=at,
                source_name="internal-cms",
                summary=TEXT[language] * 3,
                section=SECTIONS[i % len(SECTIONS)],
                author="رانيا حداد" if language == "ar" else "Rania Haddad",
                source_credit="ليفانت - وكالات" if language == "ar" else "Levant - Agencies",
                image_url=f"https://news.example.org/media/2024/12/photo-{i}.jpg",
                image_caption=TITLE[language],
                image_alt=TITLE[language],
            )
        )
    return made


def render(language: str, count: int = 10) -> RenderedDigest:
    renderer = DigestRenderer(make_environment(None), SITE, EDITIONS[language])
    return renderer.render(
        heavy_articles(language, count), DAY, archive_url=f"https://news.example.org/archive/{language}/2024-12-02"
    )


def build(digest: RenderedDigest, language: str) -> MessageTemplate:
    return MessageTemplate.build(
        digest,
        sender=EDITIONS[language].from_address,
        reply_to=EDITIONS[language].reply_to,
        list_id=f"{language}.news.example.org",
        list_unsubscribe_mailto=SITE.unsubscribe_mailto,
        date=SENT_AT,
    )


def recipient(language: str, number: int = 1) -> Recipient:
    return Recipient(
        delivery_id=number,
        email=f"reader{number}@example.com",
        name="سامر الحلبي" if language == "ar" else "Sam Reader",
        message_id=f"<{number}.{language}.20241202@news.example.org>",
        unsubscribe_url=f"https://news.example.org/unsubscribe/tok{number}==?a=1&b=2",
        preferences_url=f"https://news.example.org/preferences/tok{number}==",
    )
