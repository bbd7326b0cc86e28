"""Fuzzed (hypothesis): what arrives from outside never raises anything but our own errors.

- the config loader (publisher.config.parse_config): ConfigError or a Config;
- the token verifier and the CSRF check: InvalidToken / False, for any text;
- the feed parser wrappers (RSS/Atom/RDF and JSON Feed): FeedParseError or a ParsedFeed;
- `publisher subscribers import` through click's CliRunner: an exit code, never a traceback (this
  drives the command, so it holds whatever module implements the import behind it).

Example counts are modest: the suite runs on two loaded cores.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.cli import main_group
from publisher.config import Config, parse_config
from publisher.errors import ConfigError
from publisher.sources.jsonfeed import parse_json_feed
from publisher.sources.xmlfeed import FeedParseError, ParsedFeed, parse_xml_feed
from publisher.tokens import InvalidToken, TokenClaims, TokenSigner
from publisher.web.csrf import CsrfGuard
from tests.conftest import write_config

FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECRET = "fuzz-secret-0123456789abcdef"

# Text a client or a file could hold: every plane, controls, surrogates excluded (not encodable).
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)

# --- the config loader ---------------------------------------------------------------------------


def _valid_config() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as directory:
        text = write_config(Path(directory)).read_text(encoding="utf-8")
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


VALID = _valid_config()


def _parse(text: str) -> None:
    try:
        assert isinstance(parse_config(text, source="fuzz.yaml", base_dir=Path("/tmp/sec")), Config)
    except ConfigError as exc:
        assert str(exc)  # says something


@FEW
@given(any_text)
def test_config_text_of_any_kind_is_a_config_error_at_worst(text: str) -> None:
    _parse(text)


@FEW
@given(st.sampled_from(sorted(VALID)), st.data())
def test_a_valid_config_with_one_value_replaced_is_a_config_error_at_worst(section: str, data: st.DataObject) -> None:
    config = json.loads(json.dumps(VALID))
    holder = config[section]
    if isinstance(holder, dict) and holder:
        key = data.draw(st.sampled_from(sorted(holder)))
        holder[key] = data.draw(json_values)
    elif isinstance(holder, list) and holder and isinstance(holder[0], dict):
        key = data.draw(st.sampled_from(sorted(holder[0])))
        holder[0][key] = data.draw(json_values)
    else:
        config[section] = data.draw(json_values)
    _parse(yaml.safe_dump(config, allow_unicode=True))


# --- tokens and CSRF values ----------------------------------------------------------------------

signer = TokenSigner(SECRET, previous=["an-older-secret-0123456789"])
genuine = signer.sign("unsubscribe", 42)


def _verify(token: str) -> None:
    for purpose in ("unsubscribe", "preferences", "confirm"):
        with contextlib.suppress(InvalidToken):
            assert isinstance(signer.verify(token, purpose), TokenClaims)


@FEW
@given(any_text)
def test_any_text_is_a_valid_token_or_an_invalid_token(token: str) -> None:
    _verify(token)
    assert CsrfGuard(SECRET).check(token, "binding") in (True, False)


token_parts = st.text(st.sampled_from("0123456789abcdefABCDEF-_=١٢٣٤٥٦٧٨٩٠۱۲०१२¹²é\x00 ."), max_size=30)


@FEW
@given(st.sampled_from(["unsubscribe", "preferences", "confirm", "x"]), token_parts, token_parts, token_parts)
def test_token_shaped_text_with_any_digits_is_refused_cleanly(purpose: str, subscriber: str, expires: str,
                                                               mac: str) -> None:
    # Arabic-Indic and other Unicode digits pass int(); they once reached the ASCII-only MAC and raised
    _verify(f"{purpose}.{subscriber}.{expires}.{mac}")
    _verify(f"{purpose}.{subscriber}.{expires}.{genuine.rsplit('.', 1)[1]}")


@FEW
@given(st.integers(0, len(genuine) - 1), st.characters(exclude_categories=["Cs"]))
def test_a_genuine_token_changed_anywhere_never_verifies_for_someone_else(position: int, char: str) -> None:
    changed = genuine[:position] + char + genuine[position + 1:]
    try:
        claims = signer.verify(changed, "unsubscribe")
    except InvalidToken:
        return
    assert changed == genuine and claims.subscriber_id == 42


# --- feeds ---------------------------------------------------------------------------------------

XML_SHAPES = [
    '<?xml version="1.0"?><rss version="2.0"><channel><title>{0}</title><item><title>{1}</title><link>{2}</link>'
    "<pubDate>{3}</pubDate><description>{4}</description></item></channel></rss>",
    '<feed xmlns="http://www.w3.org/2005/Atom"><title>{0}</title><entry><title>{1}</title><link href="{2}"/>'
    "<updated>{3}</updated><content type=\"html\">{4}</content></entry></feed>",
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">'
    '<item rdf:about="{2}"><title>{1}</title><description>{4}</description></item></rdf:RDF>',
]


def _parse_feed(parse: object, body: bytes) -> None:
    assert callable(parse)
    try:
        assert isinstance(parse(body, url="https://news.example.org/feed"), ParsedFeed)
    except FeedParseError as exc:
        assert str(exc)


@FEW
@given(st.binary(max_size=2000))
def test_any_bytes_are_a_feed_or_a_feed_error(body: bytes) -> None:
    _parse_feed(parse_xml_feed, body)
    _parse_feed(parse_json_feed, body)


@FEW
@given(st.sampled_from(XML_SHAPES), st.lists(any_text, min_size=5, max_size=5))
def test_feeds_with_any_text_in_their_fields_parse_or_fail_cleanly(shape: str, values: list[str]) -> None:
    _parse_feed(parse_xml_feed, shape.format(*values).encode("utf-8", "replace"))


@FEW
@given(st.lists(st.dictionaries(st.sampled_from(
    ["id", "url", "external_url", "title", "content_html", "content_text", "summary", "image", "date_published",
     "date_modified", "authors", "author", "language", "tags", "attachments"]), json_values, max_size=8), max_size=4),
    json_values)
def test_json_feeds_with_any_values_parse_or_fail_cleanly(items: list[dict[str, object]], extra: object) -> None:
    body = {"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": items, "authors": extra}
    _parse_feed(parse_json_feed, json.dumps(body).encode())


# --- the subscriber import, through the command ---------------------------------------------------

csv_cells = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
csv_rows = st.lists(st.lists(csv_cells, min_size=0, max_size=6), max_size=6)
IMPORT_DIR = Path(tempfile.mkdtemp(prefix="fuzz-import-"))
CONFIG = write_config(IMPORT_DIR, store_url=f"sqlite:///{IMPORT_DIR / 'store.db'}")


def _import(data: bytes) -> None:
    csv_file = IMPORT_DIR / "subscribers.csv"
    csv_file.write_bytes(data)
    result = CliRunner().invoke(main_group, ["subscribers", "import", "--config", str(CONFIG), str(csv_file)])
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_rows, st.booleans())
def test_the_import_command_answers_any_csv_with_an_exit_code(rows: list[list[str]], with_header: bool) -> None:
    header = "email,name,language,status,sections\n" if with_header else ""
    lines = [",".join(cells) for cells in rows]
    _import((header + "\n".join(lines)).encode("utf-8"))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400).filter(lambda data: _is_utf8(data)))
def test_the_import_command_answers_any_utf8_bytes_with_an_exit_code(data: bytes) -> None:
    _import(b"email,name,language\n" + data)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_the_import_command_answers_a_file_that_is_not_utf8_with_an_exit_code() -> None:
    _import(b"email,name,language\n\x80reader@example.org,R\xe9,en\n")
