"""Feeds: a format-independent model, one module per format, and the builder that fills them.

- model: Feed, FeedEntry, Enclosure, atom_id (no config, no format);
- formats: the registry (`FORMATS`), one module per format (atom, rss, jsonfeed), each a FeedFormatSpec;
- build: articles -> Feed -> FeedFile per configured format, file names and public URLs;
- opml: the per-language list of section feeds that feed readers import.

Nothing is imported here, so that config can read the registry without loading the builder (which
imports config).
"""
