"""Sources: fetch, parse and normalize articles (feeds, a directory of files, article pages, the
WordPress REST API). Each kind is one module declaring KIND; sources.registry finds them."""

from publisher.sources.base import Source, SourceContext, SourceKind
from publisher.sources.registry import build_source, kind_names, source_kinds

__all__ = ["Source", "SourceContext", "SourceKind", "build_source", "kind_names", "source_kinds"]
