"""``DIR/index.html``: the report people read, from a jinja2 template with autoescaping on.

CSS and JS are inline. Cards show each grid's small thumbnail (``grids/*.thumb.png``) and link to
the full grid, so the folder can be zipped and opened offline; with ``self_contained`` every
thumbnail is inlined as a ``data:`` URI and the page works copied or mailed alone. File names come
from untrusted folders; the template never marks anything safe.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from ..safeio import atomic_write
from .report import failing
from .text import html_text

#: Flags and how the page words them.
FLAG_TITLES = {
    "nonfinite": "NaN/Inf weights",
    "dead": "dead filters",
    "duplicates": "near-duplicate filters",
    "saturated": "saturated (quantized)",
}
_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def display_names(paths: list[str]) -> dict[str, str]:
    """Paths shortened to what tells them apart: relative to the folder they all share."""
    if not paths:
        return {}
    root = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
    if root in paths:  # a single model folder, or one path that is the parent of the others
        root = os.path.dirname(root)
    return {p: os.path.relpath(p, root) if root else p for p in paths}


def shape_text(shape: list[int] | None) -> str:
    return "×".join(map(str, shape)) if shape else ""


def number(value: float | None, digits: int = 3) -> str:
    """Compact numbers for the table (full precision stays in report.json)."""
    if value is None:
        return ""
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits}g}"
    return f"{value:.2e}"


def human_size(size: int | None) -> str:
    """``1.5 MB`` (decimal units, as file managers show them); the exact bytes stay in report.json."""
    if size is None:
        return ""
    value, unit = float(size), 0
    while value >= 1000 and unit < len(_UNITS) - 1:
        value, unit = value / 1000, unit + 1
    return f"{size} B" if unit == 0 else f"{value:.3g} {_UNITS[unit]}"


def breakable(text: str | None) -> Markup:
    """Escaped text with line-break chances after ``.``, ``/`` and ``_`` (long tensor and file names)."""
    parts = re.split(r"(?<=[./_])", text or "")
    return Markup("<wbr>").join(escape(part) for part in parts)


def _inline(out: Path, relative: str | None) -> str | None:
    """A thumbnail as a ``data:`` URI (only files this audit wrote under grids/; else None)."""
    if not relative or not relative.startswith("grids/") or ".." in relative:
        return None
    try:
        data = (out / relative).read_bytes()
    except OSError:
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def thumbnails(files: list[dict[str, Any]], out: Path, self_contained: bool) -> dict[str, str | None]:
    """path -> what the card's <img> shows: the thumbnail (inlined when self-contained) or the grid."""
    if not self_contained:
        return {r["path"]: r.get("thumbnail") or r["grid"] for r in files}
    return {r["path"]: _inline(out, r.get("thumbnail")) for r in files}


def render_html(document: dict[str, Any], out: Path | None = None, self_contained: bool = False) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("filtergrid.audit", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(shape=shape_text, number=number, basename=os.path.basename, dirname=os.path.dirname,
                       breakable=breakable, size=human_size)
    files = document["files"]
    summary = document["summary"]
    return env.get_template("report.html.j2").render(
        schema_version=document["schema_version"],
        summary=summary,
        files=files,
        names=display_names([r["path"] for r in files]),
        images=thumbnails(files, out or Path("."), self_contained),
        self_contained=self_contained,
        skipped=document.get("skipped", []),
        problems=failing(files, ("error", "unsupported")),
        formats=sorted(summary["by_format"]),
        flag_titles=FLAG_TITLES,
    )


def write_html(document: dict[str, Any], out: Path, self_contained: bool = False) -> Path:
    """Write ``out/index.html`` atomically (names that are not UTF-8 are shown with U+FFFD)."""
    data = html_text(render_html(document, out, self_contained)).encode("utf-8")
    return atomic_write(out / "index.html", lambda f: f.write(data))
