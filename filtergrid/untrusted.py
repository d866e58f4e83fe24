"""Text that came from a file (tensor, layer, member and file names, metadata) is untrusted.

One place says how it is shown on each surface: the terminal (no escape sequences, always
encodable), rich markup (never interpreted), CSV (never a formula) and any message (bounded).
HTML is escaped by jinja2's autoescape.
"""

from __future__ import annotations

import re

#: Longest piece of untrusted text put into a message or a terminal line.
MAX_NAME_CHARS = 200
#: Longest whole line written to the terminal (an error with many names).
MAX_LINE_CHARS = 2000

#: C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def bounded(text: str, limit: int = MAX_NAME_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def terminal(text: object, limit: int = MAX_LINE_CHARS) -> str:
    """Safe to print: control characters and lone surrogates shown as ``\\x1b``-style escapes, bounded."""
    return bounded(_UNSAFE.sub(_escape, str(text)), limit)


def name(text: object, limit: int = MAX_NAME_CHARS) -> str:
    """A name from a file, quoted for a message: ``'conv1.weight'``, escaped and bounded."""
    return "'" + terminal(text, limit).replace("'", "\\'") + "'"


def markup(text: object, limit: int = MAX_LINE_CHARS) -> str:
    """For a rich markup string: escaped for the terminal, and ``[...]`` never read as a tag."""
    from rich.markup import escape

    return escape(terminal(text, limit))


#: Characters XML 1.0 forbids that :func:`terminal` leaves alone (it escapes controls and surrogates).
_NOT_XML = re.compile("[\ufffe\uffff]")


def xml_text(text: object, limit: int = MAX_NAME_CHARS) -> str:
    """For SVG/XML text and attribute values: escaped for the terminal, bounded, every character
    allowed by XML 1.0, and ``& < > " '`` as entities."""
    from xml.sax.saxutils import escape

    safe = _NOT_XML.sub(_escape, terminal(text, limit))
    return escape(safe, {'"': "&quot;", "'": "&apos;"})


#: A spreadsheet reads a cell starting with these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: object) -> str:
    """A CSV cell that no spreadsheet runs: a leading ``'`` before ``= + - @``; surrogates escaped."""
    value = _UNSAFE.sub(_escape, str(text)) if re.search(r"[\ud800-\udfff]", str(text)) else str(text)
    return "'" + value if value.startswith(_FORMULA_START) else value
