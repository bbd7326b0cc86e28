"""publisher: daily email digests and Atom/RSS feeds from a news site's articles."""

__version__ = "0.1.0"
