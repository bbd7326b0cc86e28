"""Article addresses: absolute http(s) URLs, one canonical spelling per page, and stable ids."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

# Query parameters that only say who sent the reader: they make one article look like many.
TRACKING_PARAMETERS: frozenset[str] = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "msclkid", "yclid", "twclid", "igshid", "ttclid",
        "mc_cid", "mc_eid", "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id",
        "ref", "ref_src", "ref_url", "referrer", "cmpid", "ocid", "ncid", "sr_share",
        "spm", "at_medium", "at_campaign", "at_custom1", "at_custom2", "wt_mc", "wt.mc_id",
    }
)  # fmt: skip
TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "pk_", "mtm_", "hsa_", "itm_")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# AMP variants of an article page: /story/amp, /amp/story, /story.amp.html, ?amp=1, ?outputType=amp
_AMP_SEGMENT = "amp"
_AMP_SUFFIX = re.compile(r"\.amp(\.html?)$", re.IGNORECASE)
# An absolute http(s) URL that urljoin returns as it is, whatever the base: lower-case scheme, a host
# name only, no params (;), no empty "?", no fragment, nothing urllib strips (whitespace, controls).
_PLAIN_ABSOLUTE = re.compile(r"https?://[A-Za-z0-9][A-Za-z0-9.-]*(?:/[^?#;\s\x00-\x1f\x7f]*)?(?:\?[^#;\s\x00-\x1f\x7f]+)?\Z")
# A netloc that is only a host name: urllib's hostname would be the same text, lower-cased.
_PLAIN_HOST = re.compile(r"[^@:\[\]%]*\Z")


def _is_tracking(name: str, value: str) -> bool:
    lowered = name.lower()
    if lowered == "amp" or (lowered == "outputtype" and value.lower() == "amp"):
        return True
    return lowered in TRACKING_PARAMETERS or lowered.startswith(TRACKING_PREFIXES)


def _without_amp(path: str) -> str:
    segments = path.split("/")
    if len(segments) > 2 and segments[1].lower() == _AMP_SEGMENT:
        segments.pop(1)
    while len(segments) > 2 and segments[-1] == "":
        segments.pop()
    if len(segments) > 2 and segments[-1].lower() == _AMP_SEGMENT:
        segments.pop()
    return _AMP_SUFFIX.sub(r"\1", "/".join(segments))


def canonical_url(url: str) -> str:
    """The same page always gives the same string: lower-case scheme and host, no default port,
    no fragment, no trailing slash, no tracking parameters (others keep their order), no AMP variant."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if _PLAIN_HOST.match(parts.netloc):  # no user, port, IPv6 literal or zone: hostname is netloc
        host = parts.netloc.lower()
        if host.startswith("amp.") and host.count(".") >= 2:
            host = host[4:]
    else:
        host = (parts.hostname or "").lower()
        if host.startswith("amp.") and host.count(".") >= 2:
            host = host[4:]
        if ":" in host:  # an IPv6 literal keeps its brackets
            host = f"[{host}]"
        if parts.port is not None and parts.port != _DEFAULT_PORTS.get(scheme):
            host = f"{host}:{parts.port}"
        if parts.username:
            host = f"{parts.username}@{host}"
    query = (
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k, v)]
        if parts.query
        else []
    )
    path = _without_amp(parts.path or "/")
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    path = quote(path, safe="/%:@!$&'()*+,;=-._~")
    return urlunsplit((scheme, host, path, urlencode(query, doseq=True), ""))


def absolute_http_url(value: str | None, base: str) -> str | None:
    """An absolute http(s) URL, resolved against `base`; anything else (javascript:, data:) gives None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _PLAIN_ABSOLUTE.match(value):  # what urljoin and the checks below would give back unchanged
        return value
    resolved = urljoin(base, value) if base else value  # urljoin's own answer for no base
    parts = urlsplit(resolved)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return resolved


def stable_id(guid: str | None, url: str, *, source_name: str) -> str:
    """The GUID when the source gives one, else the canonical URL.

    A URL-shaped GUID is canonicalized too (feeds often put tracking parameters in it). A bare GUID
    ("1234") is unique only inside its own feed, so it is qualified with the source name; the store
    also matches articles by canonical URL, so renaming a source duplicates nothing.
    """
    guid = (guid or "").strip()
    if not guid:
        return canonical_url(url)
    if guid.lower().startswith(("http://", "https://")):
        return canonical_url(guid)
    if _SCHEME.match(guid):  # tag:, urn: ... are globally unique by construction
        return guid
    return f"{source_name}:{guid}"
