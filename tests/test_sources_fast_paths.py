"""The shortcuts that make a big first collect fast give what the long way gives.

- html_to_text's fast path (one regex over plain tags) against html.parser: the fast path decides
  alone for the fragments feeds send nearly always, anything else goes to html.parser. Fragments are
  generated from the pieces that matter (block and invisible tags, self-closing tags, quoted
  attributes with ">" inside, entities, a stray "<", comments, script) and both texts compared.
- the mojibake pre-test: ftfy's badness regex is only run on text holding a character it names.
- the script counts of language detection: counted by removal, equal to counting matches.
"""

from __future__ import annotations

import re
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]

import pytest
from ftfy.badness import BADNESS_RE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.sources import htmltext, language
from publisher.sources.encoding import MOJIBAKE_CHARACTERS, repair_text
from publisher.sources.htmltext import _simple_text_parts, _TextCollector, collapse_whitespace, html_to_text

SOME = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TAG_NAMES = ["p", "P", "br", "div", "a", "em", "img", "li", "ul", "h2", "svg", "math", "template", "head",
             "span", "table", "td", "script", "style", "title", "textarea", "o:p", "x-y"]  # fmt: skip
ATTRIBUTES = ['', ' href="/a?b=1&amp;c=2"', " alt='x > y'", ' title="a\nb"', " data-x=1", " hidden",
              " src=a/b.jpg", ' class = "c"', '"odd"', " =x"]  # fmt: skip
TEXTS = ["One", " two  ", "عمّان", "&amp;", "&lt;b&gt;", "&hellip;", "&#1593;", "&#128;", "&NotEqualTilde;",
         "AT&T", "a &amp b", "\n\t", "5 > 4", "a < b", "&", "<!-- c -->", "<!doctype html>", "</>", "<", "<?x?>"]  # fmt: skip

start_tags = st.builds(
    lambda name, attribute, close: f"<{name}{attribute}{close}>",
    st.sampled_from(TAG_NAMES),
    st.sampled_from(ATTRIBUTES),
    st.sampled_from(["", "/", " /", " "]),
)
end_tags = st.builds(lambda name, space: f"</{name}{space}>", st.sampled_from(TAG_NAMES), st.sampled_from(["", " "]))
pieces = st.one_of(start_tags, end_tags, st.sampled_from(TEXTS), st.text(max_size=8))
fragments = st.lists(pieces, max_size=24).map("".join)


def stdlib_text(fragment: str) -> str:
    collector = _TextCollector()
    collector.feed(fragment)
    collector.close()
    return collapse_whitespace("".join(collector.parts))


@SOME
@given(fragments)
def test_the_fast_path_reads_what_html_parser_reads(fragment: str) -> None:
    assert html_to_text(fragment) == stdlib_text(fragment)


def test_the_fast_path_takes_what_feeds_send() -> None:
    description = (
        '<p>Delegations met for a <em>second</em> round, <a href="/en/1?utm_source=rss">more</a>.</p>'
        '<p><img src="/img/1.jpg" alt="a > b"></p><ul><li>one</li><li>two<br/>three</li></ul>'
    )
    parts = _simple_text_parts(description)
    assert parts is not None
    assert collapse_whitespace("".join(parts)) == "Delegations met for a second round, more. one two three"
    assert html_to_text(description) == stdlib_text(description)


def test_fragments_it_does_not_know_go_to_html_parser() -> None:
    for fragment in ("<p>a < b</p>", "<p>x</p><!-- note -->", "<script>var a = '<p>';</script>b", "<img src=a/b>", "<svg x=1/>a",
                     "<o:p>x</o:p>", "<title>t</title>"):  # fmt: skip
        assert _simple_text_parts(fragment) is None, fragment
        assert html_to_text(fragment) == stdlib_text(fragment)


def test_an_unclosed_tag_costs_no_backtracking() -> None:
    # linear in the length: a regex that backtracked over attribute lists would not finish here
    fragment = "<a" + " b=c" * 20_000
    assert htmltext._SIMPLE_TAG.match(fragment) is None
    assert html_to_text(fragment + ">x") == "x"


def _named_characters(pattern: str) -> list[tuple[int, int]]:
    """Every (first, last) code point range a regular expression names, literals and classes."""
    found: list[tuple[int, int]] = []

    def walk(items: object) -> None:
        for op, value in items:  # type: ignore[attr-defined]
            if op is sre_constants.LITERAL:
                found.append((value, value))
            elif op is sre_constants.RANGE:
                found.append(value)
            elif op is sre_constants.IN:
                walk(value)
            elif op is sre_constants.BRANCH:
                for branch in value[1]:
                    walk(branch)
            elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
                walk(value[2])
            elif op is sre_constants.SUBPATTERN:
                walk(value[-1])

    walk(sre_parse.parse(pattern, BADNESS_RE.flags))
    return found


def test_every_character_of_ftfys_badness_test_is_a_mojibake_candidate() -> None:
    candidate = re.compile(f"[{MOJIBAKE_CHARACTERS}]")
    named = [(first, last) for first, last in _named_characters(BADNESS_RE.pattern) if last > 0x7F]
    assert len(named) > 100  # the walk found ftfy's classes
    for first, last in named:
        for point in range(max(first, 0x80), last + 1):
            assert candidate.match(chr(point)), f"U+{point:04X} of ftfy's pattern is not a candidate"


def test_mojibake_is_still_repaired_and_arabic_passes_untouched() -> None:
    assert repair_text("Ø§Ù„Ø¹Ø±Ø¨ÙŠØ©") == ("العربية", True)
    assert repair_text("العربية – اليوم") == ("العربية – اليوم", False)
    assert repair_text("عمّان") == ("عمّان", False)


@SOME
@given(st.text(st.sampled_from("abcXYZ éçñ ض ع ۱ ٣ 3 _ - ж ω 中 \u0301 ﻻ"), max_size=40))
def test_script_counts_by_removal_equal_counting_matches(text: str) -> None:
    letters = len(re.findall(r"[^\W\d_]", text))
    arabic = len(re.findall(language._ARABIC.pattern.rstrip("+"), text))
    latin = len(re.findall(language._LATIN.pattern.rstrip("+"), text))
    assert len(language._NOT_LETTERS.sub("", text)) == letters
    assert len(text) - len(language._ARABIC.sub("", text)) == arabic
    assert len(text) - len(language._LATIN.sub("", text)) == latin


@SOME
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
def test_text_without_a_candidate_never_reads_as_bad(text: str) -> None:
    text = re.sub(f"[{MOJIBAKE_CHARACTERS}]", "", text)
    assert BADNESS_RE.search(text) is None


def _canonical_the_long_way(url: str) -> str:
    """canonical_url as written before its shortcut for plain host names (kept here to compare)."""
    from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

    from publisher.sources.urls import _DEFAULT_PORTS, _is_tracking, _without_amp

    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if host.startswith("amp.") and host.count(".") >= 2:
        host = host[4:]
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{parts.port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k, v)]
    path = _without_amp(parts.path or "/")
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    path = quote(path, safe="/%:@!$&'()*+,;=-._~")
    return urlunsplit((scheme, host, path, urlencode(query, doseq=True), ""))


URL_PIECES = ["https://", "HTTP://", "News.Example.org", "amp.example.org", "[::1]", ":443", ":8080", "user@",
              "u:p@", "%25eth0", "/ar/", "amp/", "story", ".amp.html", "/", "?", "utm_source=x", "&", "a=1", "amp=1",
              "#frag", " ", "قصة", "%D9%82"]  # fmt: skip


@SOME
@given(st.lists(st.sampled_from(URL_PIECES), max_size=10).map("".join))
def test_canonical_url_shortcut_gives_the_long_ways_answer(url: str) -> None:
    from publisher.sources.urls import canonical_url

    try:
        expected = _canonical_the_long_way(url)
    except ValueError as exc:  # a port urllib refuses: the shortcut must refuse it too
        with pytest.raises(ValueError):
            canonical_url(url)
        assert str(exc)
        return
    assert canonical_url(url) == expected


@SOME
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=60))
def test_collapsing_whitespace_by_split_equals_the_regex(text: str) -> None:
    assert collapse_whitespace(text) == re.sub(r"\s+", " ", text).strip()
    spaces = "".join(chr(point) for point in range(0x3100) if chr(point).isspace())
    assert collapse_whitespace(f"{spaces}a{spaces}b{spaces}") == re.sub(r"\s+", " ", f"{spaces}a{spaces}b{spaces}").strip()


def _absolute_the_long_way(value: str | None, base: str) -> str | None:
    from urllib.parse import urljoin, urlsplit

    if value is None or not value.strip():
        return None
    resolved = urljoin(base, value.strip())
    parts = urlsplit(resolved)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return resolved


ABSOLUTE_PIECES = ["http://", "https://", "HTTPS://", "news.example.org", "a.b", ":8080", "u@", "/ar/", "story",
                   ";p", "?", "?a=1", "#f", "/", " ", "\t", "قصة", "..", "/./", "javascript:", "//cdn.example.org"]  # fmt: skip
BASES = ["", "https://news.example.org/ar/feed.xml", "http://news.example.org/", "HTTPS://Example.org/a/b?c#d",
         "file:///tmp/feed.xml"]  # fmt: skip


# mostly URLs that start like an absolute one, so that the shortcut's edges are where the examples are
absolute_like = st.builds(
    lambda start, host, rest: start + host + "".join(rest),
    st.sampled_from(["http://", "https://", "HTTP://", "https:/", " https://"]),
    st.sampled_from(["news.example.org", "a", "-a.org", "[::1]", "x_y.org", "ab.org:443", ""]),
    st.lists(st.sampled_from(ABSOLUTE_PIECES), max_size=5),
)


@SOME
@given(absolute_like | st.lists(st.sampled_from(ABSOLUTE_PIECES), max_size=8).map("".join), st.sampled_from(BASES))
def test_absolute_url_shortcut_gives_the_long_ways_answer(value: str, base: str) -> None:
    from publisher.sources.urls import absolute_http_url

    try:
        expected = _absolute_the_long_way(value, base)
    except ValueError:  # urllib refuses it (a broken IPv6 literal): not a URL anyone can follow
        return
    assert absolute_http_url(value, base) == expected
