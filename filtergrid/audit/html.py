"""``DIR/index.html``: the report people read, from a jinja2 template with autoescaping on.

Self-contained: CSS and JS are inline, grids are linked by relative path (``grids/...``), so the
folder can be zipped, mailed and opened from disk offline. File names come from untrusted folders;
the template never marks anything safe.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from ..safeio import atomic_write

#: Flags and how the page words them.
FLAG_TITLES = {
    "nonfinite": "NaN/Inf weights",
    "dead": "dead filters",
    "duplicates": "near-duplicate filters",
    "saturated": "saturated (quantized)",
}


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


def breakable(text: str | None) -> Markup:
    """Escaped text with line-break chances after ``.``, ``/`` and ``_`` (long tensor and file names)."""
    parts = re.split(r"(?<=[./_])", text or "")
    return Markup("<wbr>").join(escape(part) for part in parts)


def render_html(document: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("filtergrid.audit", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(shape=shape_text, number=number, basename=os.path.basename, dirname=os.path.dirname,
                       breakable=breakable)
    files = document["files"]
    names = display_names([r["path"] for r in files])
    summary = document["summary"]
    return env.get_template("report.html.j2").render(
        schema_version=document["schema_version"],
        summary=summary,
        files=files,
        names=names,
        skipped=document.get("skipped", []),
        errors=[r for r in files if r["status"] != "ok"],
        formats=sorted(summary["by_format"]),
        flag_titles=FLAG_TITLES,
    )


def write_html(document: dict[str, Any], out: Path) -> Path:
    """Write ``out/index.html`` atomically (names that are not UTF-8 are shown with U+FFFD)."""
    data = render_html(document).encode("utf-8", "surrogateescape").decode("utf-8", "replace").encode("utf-8")
    return atomic_write(out / "index.html", lambda f: f.write(data))
