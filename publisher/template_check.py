"""`publisher check`'s template pass: every template compiles, and each edition's digest and
confirmation mail render with sample data, through the same code that renders the real ones."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import jinja2

from publisher.config import Config, EditionSettings
from publisher.errors import PublisherError
from publisher.models import Article
from publisher.render.confirmation import ConfirmationRenderer
from publisher.render.email import DigestRenderer
from publisher.render.templates import make_environment
from publisher.web.strings import load_web_strings

SAMPLE_DAY = date(2024, 12, 2)
_SAMPLE_TEXT = {
    "ar": ("المستشارون العسكريون الإيرانيون باقون في سوريا", "أكدت الخارجية الإيرانية دعمها للنظام السوري."),
    "en": (
        "Iranian military advisors remain in Syria",
        "The Iranian Foreign Ministry emphasized its support.",
    ),
}


def operator_folder(config: Config) -> tuple[Path | None, str | None]:
    """The operator's template folder, and a problem when config.yaml names one that is not there."""
    if not config.templates:
        return None, None
    folder = config.path(config.templates)
    if folder.is_dir():
        return folder, None
    if "templates" not in config.model_fields_set:
        return None, None  # the default name, not written: the packaged templates are used
    return None, (
        f"templates: {folder} is not a folder (hint: `publisher templates copy {config.templates}` starts "
        "one; or remove the key to use the packaged templates)"
    )


def sample_articles(config: Config, edition: EditionSettings) -> list[Article]:
    title, summary = _SAMPLE_TEXT.get(edition.language, _SAMPLE_TEXT["en"])
    sections = edition.sections or [None]  # type: ignore[list-item]
    moment = datetime(2024, 12, 2, 7, 0, tzinfo=UTC)
    base = config.site.base_url.rstrip("/")
    return [
        Article(
            id=f"{base}/sample/{n}",
            url=f"{base}/sample/{n}",
            title=f"{title} <{n}> & “{section or ''}”",
            language=edition.language,
            published_at=moment,
            updated_at=moment,
            source_name="sample",
            summary=summary,
            content_html=f"<p>{summary}</p>",
            section=section,
            author="Sample Author",
            image_url=f"{base}/sample/{n}.jpg",
            image_alt=title,
        )  # fmt: skip
        for n, section in enumerate(sections[:3], start=1)
    ]


def check_templates(config: Config) -> list[str]:
    """Every problem found, each naming the template (file:line when known) and what to do."""
    folder, problem = operator_folder(config)
    problems = [problem] if problem else []
    env = make_environment(folder)
    for name in sorted(env.list_templates(filter_func=lambda n: n.endswith(".j2"))):
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{exc.filename or name}:{exc.lineno}: {exc.message}")
    if problems:
        return problems
    for edition in config.editions:
        try:
            DigestRenderer(env, config.site, edition).render(
                sample_articles(config, edition), SAMPLE_DAY, archive_url=f"{config.site.public_url}/archive/"
            )
        except (PublisherError, jinja2.TemplateError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"templates: the {edition.id} digest does not render with sample data: {exc}")
        try:
            strings = load_web_strings(env, edition.language)
            ConfirmationRenderer(env, config.site, edition.language, strings).render(
                confirm_url=f"{config.site.public_url}/confirm/SAMPLE", edition_title=edition.title or config.site.name,
                name="Sample Reader", expires_hours=config.web.confirm_hours,
            )  # fmt: skip
        except (PublisherError, jinja2.TemplateError, ValueError, KeyError, TypeError) as exc:
            problems.append(
                f"templates: the {edition.language} confirmation mail does not render with sample data: {exc}"
            )
    return problems
