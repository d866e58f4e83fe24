"""Strings from untrusted files and folders, made safe for each surface the audit writes to.

Names come from folders anyone can write to and from inside model files: they may hold escape
sequences, rich markup, spreadsheet formulas, lone surrogates or megabytes of text. A record keeps
them bounded (:func:`bounded`); each writer escapes them for its surface (terminal, CSV, HTML).
"""

from __future__ import annotations

import re
from typing import Any

#: Longest string kept in a record (an error message, a tensor name); the rest becomes "…".
MAX_TEXT_CHARS = 1000
#: Longest list kept in a record (a shape, a list of dead filters); the count is kept elsewhere.
MAX_LIST_ITEMS = 64

#: Surrogates that ``surrogateescape`` did not make (those stand for undecodable bytes of a name).
_LONE_SURROGATES = re.compile("[\ud800-\udc7f\udd00-\udfff]")
#: C0 controls, DEL and C1 controls: what a terminal would act on.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_ALL_SURROGATES = re.compile("[\ud800-\udfff]")
#: First characters a spreadsheet reads as a formula (OWASP's list: tab and CR too).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def bounded(value: Any) -> Any:
    """``value`` (a JSON-ready record or part of one) with every string and list cut to size."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT_CHARS else value[:MAX_TEXT_CHARS - 1] + "…"
    if isinstance(value, list):
        return [bounded(v) for v in value[:MAX_LIST_ITEMS]]
    if isinstance(value, dict):
        return {k: bounded(v) for k, v in value.items()}
    return value


def terminal(text: str) -> str:
    """One line a terminal shows as text: controls as ``\\x1b``, any surrogate as ``\\udce9``."""
    text = _CONTROLS.sub(lambda m: f"\\x{ord(m[0]):02x}", text)
    return _ALL_SURROGATES.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def encodable(text: str) -> str:
    """Text that encodes as UTF-8 with ``surrogateescape``: lone surrogates written as ``\\ud800``.

    Undecodable bytes of a file name (``surrogateescape``) stay as they are, so a CSV written with
    that handler gives back the name's own bytes.
    """
    return _LONE_SURROGATES.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def html_text(text: str) -> str:
    """Text for the HTML page: any surrogate (an undecodable byte or a lone one) becomes U+FFFD."""
    return _ALL_SURROGATES.sub("\ufffd", text)


def csv_cell(value: Any) -> Any:
    """A CSV cell no spreadsheet runs: text starting with = + - @ gets a leading apostrophe."""
    if isinstance(value, str):
        value = encodable(value)
        if value.startswith(_FORMULA_START):
            return "'" + value
    return value
