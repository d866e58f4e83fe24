"""report.json and report.csv: written atomically, rewritten as records arrive, read back for --resume.

The schema is versioned (:data:`SCHEMA_VERSION`) and documented in docs/audit-report.md.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import FiltergridError
from ..safeio import atomic_write
from ..untrusted import csv_cell
from .text import bounded_record, encodable
from .worker import RECORD_FIELDS

SCHEMA_VERSION = 1
#: Rewrite the report at least this often while an audit runs (seconds), or after this many records.
FLUSH_SECONDS = 2.0
FLUSH_RECORDS = 50

HEALTH_COLUMNS = ("nan", "inf", "dead_filters", "duplicate_filters", "l2_min", "l2_median", "l2_max",
                  "min", "max", "mean", "std", "saturated_fraction", "flags")
CSV_COLUMNS = tuple(f for f in RECORD_FIELDS if f != "health") + tuple(f"health.{c}" for c in HEALTH_COLUMNS)


#: ``--fail-on`` conditions: which records each one picks out.
FAIL_CONDITIONS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "error": lambda r: r["status"] == "error",
    "unsupported": lambda r: r["status"] == "unsupported",
    "nonfinite": lambda r: "nonfinite" in _flags(r),
    "dead": lambda r: "dead" in _flags(r),
    "duplicate": lambda r: "duplicates" in _flags(r),
}
#: Without ``--fail-on``: a file that could not be audited fails the run.
DEFAULT_FAIL_ON = ("error", "unsupported")


def _flags(record: dict[str, Any]) -> list[str]:
    return (record.get("health") or {}).get("flags") or []


def failing(files: list[dict[str, Any]], conditions: tuple[str, ...]) -> list[tuple[dict[str, Any], list[str]]]:
    """(record, the named conditions it meets) for each record meeting one, in report order."""
    hits = [(r, [c for c in conditions if FAIL_CONDITIONS[c](r)]) for r in files]
    return [(r, met) for r, met in hits if met]


def _cell(value: Any) -> Any:
    """Numbers as they are, lists joined, text as a cell no spreadsheet runs as a formula."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "x".join(map(str, value)) if all(isinstance(v, int) for v in value) else " ".join(map(str, value))
    return csv_cell(value) if isinstance(value, str) else value


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    """A flat row: shapes as ``64x3x7x7``, flags space-separated, health fields prefixed."""
    health = record.get("health") or {}
    row = {f: _cell(record.get(f)) for f in RECORD_FIELDS if f != "health"}
    row["path"] = encodable(record["path"])  # absolute: no formula; undecodable bytes written back as bytes
    row.update({f"health.{c}": _cell(health.get(c)) for c in HEALTH_COLUMNS})
    return row


def to_json(document: dict[str, Any]) -> str:
    """The document with one record per line: diff-friendly, and fast (json's C encoder needs no indent)."""
    def dump(value: Any) -> str:
        return json.dumps(value, allow_nan=False, ensure_ascii=True)

    def block(items: list[Any]) -> str:
        return "[\n" + ",\n".join(f"  {dump(item)}" for item in items) + "\n ]" if items else "[]"

    return (f'{{"schema_version": {dump(document["schema_version"])},\n "summary": {dump(document["summary"])},\n'
            f' "files": {block(document["files"])},\n "skipped": {block(document["skipped"])}}}\n')


class Report:
    """The records of one audit, kept in walk order whatever order workers finish in."""

    def __init__(self, out: Path, order: list[str], skipped: list[tuple[str, str]], options: dict[str, Any]):
        from .. import __version__

        self.out = out
        self.order = order
        self.skipped = skipped
        self.options = options
        self.version = __version__
        self.records: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._flushed = (self.started, 0)

    def add(self, record: dict[str, Any]) -> None:
        """Keep a worker's record (bounded in size); a file it found to be no model goes to ``skipped``."""
        record = bounded_record(record)
        if record["status"] == "skipped":
            self.order.remove(record["path"])
            self.skipped.append((record["path"], record["error"]))
            return
        self.records[record["path"]] = record

    def files(self) -> list[dict[str, Any]]:
        return [self.records[p] for p in self.order if p in self.records]

    def summary(self, *, complete: bool, interrupted: bool = False) -> dict[str, Any]:
        files = self.files()
        flags = Counter(f for r in files for f in ((r.get("health") or {}).get("flags") or []))
        return {
            "files": len(self.order),
            "audited": len(files),
            "by_status": dict(sorted(Counter(r["status"] for r in files).items())),
            "by_format": dict(sorted(Counter(r["format"] or "unknown" for r in files).items())),
            "flags": dict(sorted(flags.items())),
            "resumed": sum(1 for r in files if r.get("resumed")),
            "skipped": len(self.skipped),
            "seconds": round(time.monotonic() - self.started, 3),
            "started_at": self.started_at,
            "complete": complete,
            "interrupted": interrupted,
            "filtergrid_version": self.version,
            "options": self.options,
        }

    def document(self, *, complete: bool, interrupted: bool = False) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "summary": self.summary(complete=complete, interrupted=interrupted),
            "files": self.files(),
            "skipped": [{"path": p, "reason": why} for p, why in sorted(self.skipped)],  # workers finish in any order
        }

    def write(self, *, complete: bool, interrupted: bool = False) -> dict[str, Any]:
        """Rewrite report.json and report.csv (atomically: a reader never sees half a file)."""
        document = self.document(complete=complete, interrupted=interrupted)
        text = to_json(document)
        atomic_write(self.out / "report.json", lambda f: f.write(text.encode()))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_row(r) for r in document["files"])
        # A file name that is not UTF-8 is written back as the bytes it is made of.
        atomic_write(self.out / "report.csv", lambda f: f.write(buffer.getvalue().encode("utf-8", "surrogateescape")))
        self._flushed = (time.monotonic(), len(self.records))
        return document

    def flush_if_due(self) -> None:
        """The incremental write: every FLUSH_SECONDS or FLUSH_RECORDS new records, whichever first."""
        at, count = self._flushed
        if len(self.records) > count and (time.monotonic() - at >= FLUSH_SECONDS or len(self.records) - count >= FLUSH_RECORDS):
            self.write(complete=False)


def _own_grid(out: Path, grid: Any) -> bool:
    """A grid this audit wrote and still has (a report is data too: no paths outside grids/)."""
    return isinstance(grid, str) and grid.startswith("grids/") and ".." not in grid and (out / grid).is_file()


def previous_ok(out: Path) -> dict[str, dict[str, Any]]:
    """sha256 -> ok record from an earlier report in ``out`` whose grid is still there (for --resume)."""
    path = out / "report.json"
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"schema_version {document.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        files = document["files"]
        return {r["sha256"]: r for r in files if r.get("status") == "ok" and r.get("sha256") and _own_grid(out, r.get("grid"))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise FiltergridError(f"cannot resume from {path}: not a filtergrid audit report ({' '.join(str(e).split())[:200]})") from None
