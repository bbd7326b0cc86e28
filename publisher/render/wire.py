"""The message as SMTP's DATA carries it (RFC 5321 4.5.2): a "." opening a line doubled, then ".".

Searching a 100 KB message for "\\n." costs ~0.1 ms, more than building it; so the template stuffs
its fixed parts once, when a variant is built, and per recipient only the small values are checked.
Which pieces can open a line: a fixed part after a part that ends a line, and a quoted-printable
value (it always starts at column 0). Header values never open a line (they follow "Name: " or a
folding space), and base64 has no ".".
"""

from __future__ import annotations

END = b".\r\n"


def stuff(data: bytes, *, at_line_start: bool) -> bytes:
    """`data` with every "." that opens a line doubled; `at_line_start`: data itself opens one."""
    stuffed = data.replace(b"\n.", b"\n..") if b"." in data else data
    if at_line_start and stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed


def stuff_message(data: bytes) -> bytes:
    """A whole message as DATA content, ending with the end marker (the slow, general way)."""
    stuffed = stuff(data, at_line_start=True)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + END


def stuff_parts(parts: list[bytes], opens_line: list[bool]) -> list[bytes]:
    """The fixed parts stuffed once; opens_line[i]: part i starts a line (see the module's rules)."""
    return [stuff(part, at_line_start=start) if part else part for part, start in zip(parts, opens_line, strict=True)]
