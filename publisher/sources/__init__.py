"""Sources: fetch, parse and normalize articles (feeds, a directory of files, article pages, the
WordPress REST API)."""

from publisher.sources.base import Source, build_source

__all__ = ["Source", "build_source"]
