"""Finding what a news site offers from its address: feeds, languages, sections, name, logo, time zone.

`survey_site(url)` reads the home page and what it links to; `feed_links_of(body, url)` names the
feeds an HTML page links to (for an error message when a feed URL turns out to be a page).
`publisher init` turns a survey into a config.yaml (see publisher.discovery.writer).
"""

from __future__ import annotations

from publisher.discovery.page import feed_links_of
from publisher.discovery.survey import SiteSurvey, survey_site

__all__ = ["SiteSurvey", "feed_links_of", "survey_site"]
