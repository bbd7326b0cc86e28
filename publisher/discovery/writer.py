"""A survey written as config.yaml, with what was found, what was guessed and what to review."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from publisher.discovery.survey import FoundFeed, SiteSurvey

SCHEMA_FILE = "config.schema.json"
SCHEMA_COMMENT = f"# yaml-language-server: $schema={SCHEMA_FILE}"


@dataclass
class InitReport:
    text: str  # the config.yaml
    found: list[str] = field(default_factory=list)
    guessed: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)


def q(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML), Unicode kept as is."""
    return json.dumps(value, ensure_ascii=False)


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "feed"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def build_config(survey: SiteSurvey, *, timezone: str | None = None) -> InitReport:
    report = InitReport(text="")
    host = urlsplit(survey.base_url).hostname or "example.org"
    domain = host.removeprefix("www.")
    _note_site(survey, report)
    name = survey.site_name() or domain
    if not survey.site_name():
        report.guessed.append(f"site.name: {name!r} (the host name: the page names no site)")
    zone = timezone or survey.zone.zone or "UTC"
    if timezone:
        report.found.append(f"site.timezone: {timezone} (given)")
    elif survey.zone.zone:
        also = f"; also fits {', '.join(survey.zone.also_fits)}" if survey.zone.also_fits else ""
        report.guessed.append(f"site.timezone: {zone} ({survey.zone.reason}{also})")
    else:
        report.review.append(
            f"site.timezone: set to UTC because {survey.zone.reason}; pass --timezone or edit it"
        )
    logos = survey.logos
    # an edition per language that has a feed; with no feed at all, one per language the pages show
    with_feeds = [language for language in survey.languages if survey.feeds_in(language)]
    languages = with_feeds or survey.languages or ["en"]
    if not survey.languages:
        report.guessed.append("editions: one English edition (no language found on the site)")
    for language in survey.languages:
        if language not in languages:
            report.review.append(
                f"language {language}: the site has pages in it but no feed; no edition made for it"
            )
    lines = [
        SCHEMA_COMMENT,
        f"# Written by `publisher init {survey.url}`. Review the lines marked REVIEW.",
        "",
    ]
    lines += [
        "site:",
        f"  name: {q(name)}",
        f"  base_url: {q(survey.base_url)}",
        f"  timezone: {zone}"
        + ("" if timezone or survey.zone.zone == zone else "    # REVIEW: not found on the site"),
    ]
    if logos:
        lines.append(f"  logo_url: {q(logos[0].url)}    # from the {logos[0].where}")
        report.found.append(f"site.logo_url: {logos[0].url} (the {logos[0].where})")
    else:
        lines.append("  # logo_url: https://.../logo.png    # REVIEW: no logo found")
        report.review.append("site.logo_url: no logo found; add the absolute URL of a PNG logo")
    lines += [
        "  public_url: http://127.0.0.1:8080    # REVIEW: the https:// address of `publisher serve` in production",
        f"  secret: ${{PUBLISHER_SECRET:-{secrets.token_urlsafe(24)}}}    # REVIEW: export PUBLISHER_SECRET in production",
        f"  unsubscribe_mailto: {q('unsubscribe@' + domain)}    # REVIEW: a mailbox someone reads (README)",
        "",
        "store:",
        "  url: sqlite:///var/publisher.db    # or postgresql+psycopg://user@host/db",
        "",
    ]
    report.review.append(
        "site.public_url and site.secret: set them before the first real send (see README, Production)"
    )
    lines += _sources(survey, report)
    lines += _editions(survey, languages, name, domain, report)
    lines += [
        "feeds:",
        "  directory: var/feeds",
        "  base_url: http://127.0.0.1:8080/feeds",
        "",
        "mail:",
        "  transport:",
        "    kind: outbox    # a Maildir in var/outbox; see README for smtp and the providers",
        "    path: var/outbox",
        f"  message_id_domain: {q(domain)}",
        f"  list_id: {q('digest.' + domain)}",
        "",
        "schedule:",
        '  collect: "*/15 * * * *"',
        '  feeds: "*/15 * * * *"',
        "  digests:",
        *[f'    {language}: "0 7 * * *"' for language in languages],
        "  digest_day: yesterday",
        "",
    ]
    report.review.append(
        "mail.transport: outbox writes .eml files; switch to smtp or a provider to send (README)"
    )
    report.text = "\n".join(lines)
    return report


def _note_site(survey: SiteSurvey, report: InitReport) -> None:
    if survey.error:
        report.review.append(
            f"the site could not be read: {survey.error} (run init again with --force once it answers)"
        )
    for page in survey.pages:
        bits = [f"lang={page.language}" if page.language else "no lang attribute"]
        if page.site_name:
            bits.append(f"og:site_name={page.site_name!r}")
        elif page.title:
            bits.append(f"title={page.title!r}")
        report.found.append(f"page {page.url}: {', '.join(bits)}")
    report.review.extend(survey.rejected)
    report.found.extend(survey.duplicates)


def _sources(survey: SiteSurvey, report: InitReport) -> list[str]:
    taken: set[str] = set()
    lines = ["sources:"]
    for found in survey.feeds:
        facts = found.facts
        title = facts.title if facts.title and re.search(r"[A-Za-z]", facts.title) else survey.site_name("en")
        if not title or not re.search(r"[A-Za-z]", title):
            title = (urlsplit(survey.base_url).hostname or "feed").removeprefix("www.").split(".")[0]
        name = _slug(f"{title}-{found.language or ''}", taken)
        lines += [
            "  - kind: feed",
            f"    name: {name}",
            f"    url: {q(facts.url)}",
        ]
        if found.language:
            lines.append(f"    language: {found.language}")
        report.found.append(
            f"feed {facts.url} ({facts.kind}, {facts.entries} entries, language {found.language or '?'} "
            f"from {found.language_from or 'nowhere'}; {found.how})"
        )
        if found.language is None:
            report.review.append(f"sources.{name}: no language found; set language: for it")
        if found.language_from in ("the page linking it", "the home page"):
            report.guessed.append(
                f"sources.{name}.language: {found.language} ({found.language_from}; the feed names none)"
            )
    if survey.wordpress_api:
        report.found.append(f"WordPress REST API at {survey.wordpress_api}")
        wp = ["  - kind: wordpress", "    name: wordpress", f"    url: {q(survey.base_url)}"]
        if survey.feeds:
            lines.append(
                "  # The site also runs WordPress; its API gives whole articles. To use it instead of the feeds:"
            )
            lines += ["  #" + line[1:] for line in wp]
        else:
            lines += wp
            report.found.append("no feed found: using the WordPress API as the source")
    if len(lines) == 1:
        lines[0] = "sources: []    # REVIEW: no feed found; add one (README: sources[])"
        report.review.append(
            "sources: no feed found (the site could not be read); add the feed's URL by hand"
            if not survey.reachable
            else "sources: no feed found (no <link rel=alternate> feed and none of "
            "/feed, /rss.xml, /atom.xml, /feed.json, /wp-json/); add the feed's URL by hand"
        )
    return lines + [""]


def _editions(
    survey: SiteSurvey, languages: list[str], name: str, domain: str, report: InitReport
) -> list[str]:
    lines = ["editions:"]
    for language in languages:
        local_name = survey.site_name(language) or name
        sections = survey.sections(language)
        feeds: list[FoundFeed] = survey.feeds_in(language)
        lines += [
            f"  - id: {language}",
            f"    language: {language}",
            f"    title: {q(local_name)}",
            '    subject: "{site} — {date}"',
            f"    from: {q(f'{local_name} <digest@{domain}>')}    # REVIEW: a mailbox of yours, SPF/DKIM aligned",
            f"    sections: [{', '.join(q(s) for s in sections)}]",
            "    max_articles: 10",
        ]
        if sections:
            report.found.append(
                f"editions.{language}.sections: {', '.join(sections)} (the feeds' categories)"
            )
        if not feeds and survey.languages:
            report.review.append(
                f"editions.{language}: the site has pages in {language} but no feed for them: nothing to send yet"
            )
    return lines + [""]
