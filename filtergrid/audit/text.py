"""What the audit adds to :mod:`filtergrid.untrusted`: whole records bounded, file names kept as bytes.

Names come from folders anyone can write to and from inside model files: they may hold escape
sequences, rich markup, spreadsheet formulas, lone surrogates or megabytes of text. A record keeps
them bounded (:func:`bounded`); each writer escapes them for its surface (terminal and CSV cells
through :mod:`filtergrid.untrusted`, file names and HTML here).
"""

from __future__ import annotations

import re
from typing import Any

from .. import untrusted

#: Longest string kept in a record (an error message, a tensor name); the rest is counted.
MAX_TEXT_CHARS = 1000
#: Longest list kept in a record (a shape, a list of dead filters); the count is kept elsewhere.
MAX_LIST_ITEMS = 64

#: Surrogates that ``surrogateescape`` did not make (those stand for undecodable bytes of a name).
_LONE_SURROGATES = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_ALL_SURROGATES = re.compile("[\ud800-\udfff]")


def bounded(value: Any) -> Any:
    """``value`` (a JSON-ready record or part of one) with every string and list cut to size."""
    if isinstance(value, str):
        return untrusted.bounded(value, MAX_TEXT_CHARS)
    if isinstance(value, list):
        return [bounded(v) for v in value[:MAX_LIST_ITEMS]]
    if isinstance(value, dict):
        return {k: bounded(v) for k, v in value.items()}
    return value


def bounded_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record cut to size, but for its path (the report's key; the OS bounds it)."""
    return {**bounded(record), "path": record["path"]}


def encodable(text: str) -> str:
    """Text that encodes as UTF-8 with ``surrogateescape``: lone surrogates written as ``\\ud800``.

    Undecodable bytes of a file name (``surrogateescape``) stay as they are, so the CSV's path
    column gives back the name's own bytes.
    """
    return _LONE_SURROGATES.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def html_text(text: str) -> str:
    """Text for the HTML page: any surrogate (an undecodable byte or a lone one) becomes U+FFFD."""
    return _ALL_SURROGATES.sub("\ufffd", text)
