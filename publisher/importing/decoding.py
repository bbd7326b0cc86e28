"""Which text encoding an import file is in, decided before any row is read.

Accepted without asking: UTF-8 with or without a byte-order mark, UTF-16 and UTF-32 with one. Anything
else is refused with the line of the first byte that does not decode, the encoding it most likely is
(charset-normalizer's guess) and how to convert it, or `--encoding NAME` to name it. The guess is never
used silently: a wrong guess would store every accented name garbled, with nothing reported.

The whole file is checked in a streaming pass (1 MiB at a time, C speed), so a bad byte on line 900,000
stops the import before the first row is written, and memory stays flat.
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from charset_normalizer import from_bytes

from publisher.importing.errors import ImportFileError

CHUNK = 1 << 20

# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class Encoding:
    codec: str  # a name for open(); BOM-aware codecs skip the mark
    label: str  # what the summary shows: "UTF-8", "UTF-8 with BOM", "UTF-16 (BOM)", or the given name


def known_codec(name: str) -> str:
    """The codec's canonical name, or ValueError naming the problem (for --encoding)."""
    try:
        return codecs.lookup(name).name
    except LookupError as exc:
        raise ValueError(f"unknown encoding {name!r} (examples: utf-8, utf-16, latin-1, cp1252, cp1256)") from exc


def detect(path: Path, given: str | None = None) -> Encoding:
    """The encoding to read `path` with; ImportFileError when it is not one we take without asking."""
    with path.open("rb") as handle:
        head = handle.read(4)
        if given:
            codec = known_codec(given)
            encoding = Encoding(codec, given)
        else:
            encoding = _from_head(path, head, handle)
        handle.seek(0)
        _check_all(path, handle, encoding, explicit=bool(given))
    return encoding


def open_text(path: Path, encoding: Encoding) -> tuple[io.TextIOWrapper, BinaryIO]:
    """The file as text (newlines untranslated, for csv) and its binary layer (for progress)."""
    binary = path.open("rb")
    text = io.TextIOWrapper(binary, encoding=encoding.codec, errors="strict", newline="")
    return text, binary


def _from_head(path: Path, head: bytes, handle: BinaryIO) -> Encoding:
    for mark, codec in _BOMS:
        if head.startswith(mark):
            name = {"utf-8-sig": "UTF-8 with BOM", "utf-16": "UTF-16", "utf-32": "UTF-32"}[codec]
            return Encoding(codec, name)
    handle.seek(0)
    sample = handle.read(4096)
    if len(sample) >= 4 and sample.count(0) * 3 > len(sample):
        # A third or more NUL bytes and no mark: UTF-16 or UTF-32 written without a byte-order mark.
        raise ImportFileError(
            path, 1,
            "looks like UTF-16 without a byte-order mark, which cannot be read safely; save it as UTF-8 "
            f"(iconv -f UTF-16LE -t UTF-8 {path} > {_converted(path)}) or pass --encoding utf-16-le",
        )
    return Encoding("utf-8", "UTF-8")


def _check_all(path: Path, handle: BinaryIO, encoding: Encoding, *, explicit: bool) -> None:
    decoder = codecs.getincrementaldecoder(encoding.codec)(errors="strict")
    newlines = 0
    offset = 0
    while True:
        chunk = handle.read(CHUNK)
        final = not chunk
        pending = decoder.getstate()[0]
        try:
            newlines += decoder.decode(chunk, final=final).count("\n")
        except UnicodeDecodeError as exc:
            data = pending + chunk
            prefix = codecs.decode(data[: exc.start], encoding.codec, errors="ignore")
            line = newlines + prefix.count("\n") + 1
            bad = data[exc.start : exc.end]
            _refuse(path, handle, line, bad, offset - len(pending) + exc.start, encoding, explicit)
        if final:
            return
        offset += len(chunk)


def _refuse(
    path: Path, handle: BinaryIO, line: int, bad: bytes, position: int, encoding: Encoding, explicit: bool
) -> None:
    shown = " ".join(f"0x{b:02x}" for b in bad[:4])
    if explicit:
        raise ImportFileError(path, line, f"byte {shown} is not {encoding.label}; check the --encoding name")
    handle.seek(max(0, position - 64 * 1024))
    guess = _guess(handle.read(256 * 1024))
    likely = f"it looks like {guess}" if guess else "its encoding could not be recognized"
    name = guess or "CP1252"
    raise ImportFileError(
        path, line,
        f"not UTF-8 (byte {shown}); {likely}. Convert it to UTF-8 "
        f"(iconv -f {name} -t UTF-8 {path} > {_converted(path)}, or in a spreadsheet: "
        f"Save As, CSV UTF-8) or pass --encoding {name.lower()}",
    )


def _guess(sample: bytes) -> str | None:
    best = from_bytes(sample).best()
    if best is None or best.encoding in ("utf_8", "ascii"):
        return None
    name = str(best.encoding)
    if name == "latin_1":
        return "ISO-8859-1"
    if name.startswith("iso8859_"):
        return "ISO-8859-" + name.removeprefix("iso8859_")
    return name.replace("_", "-").upper()  # cp1252 -> CP1252: names iconv and Python both know


def _converted(path: Path) -> str:
    return str(path.with_name(f"{path.stem}-utf8{path.suffix}"))
