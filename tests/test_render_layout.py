"""The digest's hierarchy: selection order decides the weight; a featured article leads."""

from __future__ import annotations

from publisher.render.layout import ArticleView, arrange


def view(number: int, section: str | None, featured: bool = False) -> ArticleView:
    return ArticleView(number=number, title=f"T{number}", url=f"https://x.example/{number}", summary="",
                       section=section, author="", credit="", image_url="", image_alt="", caption="",
                       featured=featured)


def label(key: str | None, first: bool) -> str:
    return key.title() if key else ""


def test_first_article_leads_then_five_secondary_then_headlines() -> None:
    views = [view(n, s) for n, s in enumerate(["a", "a", "a", "b", "b", "c", "c", "d", None, None], start=1)]
    layout = arrange(views, label)
    assert layout.lead is views[0]
    assert [(s.label, [a.number for a in s.articles]) for s in layout.secondary] == [
        ("A", [2, 3]), ("B", [4, 5]), ("C", [6])
    ]
    assert [a.number for a in layout.more] == [7, 8, 9, 10]


def test_a_featured_article_leads_and_the_others_keep_their_order() -> None:
    views = [view(1, "a"), view(2, "b"), view(3, "c", featured=True), view(4, "c", featured=True)]
    layout = arrange(views, label)
    assert layout.lead is views[2]
    assert [a.number for s in layout.secondary for a in s.articles] == [1, 2, 4]
    assert layout.more == []


def test_an_empty_digest_has_no_lead() -> None:
    layout = arrange([], label)
    assert layout.lead is None and layout.secondary == [] and layout.more == []
