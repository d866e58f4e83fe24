"""``filtergrid audit PATH... --out DIR``: every model under PATH -> report.json/.csv, grids, index.html.

Exit 0 when no file meets a ``--fail-on`` condition (default: ``error,unsupported``), 1 when some
do (they are named on stdout), 2 on usage errors (and an unreachable scheduler), 130 after Ctrl-C.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..audit.report import DEFAULT_FAIL_ON, FAIL_CONDITIONS, failing
from ..audit.session import Progress
from ..errors import UsageError
from ..remote import is_url
from ..untrusted import terminal
from .options import render_kwargs, render_options

#: Failing files named on stdout after the summary (all of them are in the report).
LISTED_FAILURES = 20
#: Without a terminal, a progress line at least this often (seconds) while the audit runs.
PROGRESS_SECONDS = 3.0

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``2G``, ``512M``, ``1.5GiB``, ``1000000`` -> bytes (binary units); ``none`` -> 0 (no limit)."""
    if text.strip().lower() in ("none", "0"):
        return 0
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"--max-memory {text!r} is not a size like 2G, 512M or 1000000")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def parse_fail_on(text: str | None) -> tuple[str, ...]:
    """``nonfinite,dead`` -> the conditions (case-insensitive; ``none``: never fail)."""
    if text is None:
        return DEFAULT_FAIL_ON
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in FAIL_CONDITIONS]
    if unknown or not names:
        raise UsageError(f"--fail-on {text!r}: choose from {','.join(FAIL_CONDITIONS)} (or none)")
    return names


def local_paths_exist(paths: tuple[str, ...]) -> tuple[str, ...]:
    """PATHs as given; a local one must exist now, a URL (``s3://``, ``https://``) is checked by its listing."""
    for path in paths:
        if not is_url(path) and not os.path.exists(path):
            raise click.BadParameter(f"Path {terminal(path)!r} does not exist.", param_hint="'PATHS...'")
    return paths


def default_memory(workers: int) -> int:
    """Physical memory shared out between the workers (so together they cannot exhaust the machine)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // max(workers, 1)
    except (ValueError, OSError, AttributeError):
        return 0


class BarProgress(Progress):
    """A rich progress bar on stderr: files done, errors, files per second."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(TextColumn("auditing"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[errors]} errors · {task.fields[rate]} files/s"),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.errors = 0
        self.done_here = 0
        self.began = time.monotonic()
        self.task = self.bar.add_task("audit", start=False, total=None, errors=0, rate="-")

    def start(self, total: int, done: int) -> None:
        self.bar.start()
        self.bar.update(self.task, total=total, completed=done)
        self.bar.start_task(self.task)

    def advance(self, record: dict[str, Any]) -> None:
        self.errors += record["status"] != "ok"
        self.done_here += 1
        rate = self.done_here / max(time.monotonic() - self.began, 1e-9)
        self.bar.update(self.task, advance=1, errors=self.errors, rate=f"{rate:.1f}")

    def refresh(self) -> None:
        self.bar.refresh()

    def stop(self) -> None:
        self.bar.stop()


class LineProgress(Progress):
    """Without a terminal (CI logs): one plain line on stderr at least every PROGRESS_SECONDS."""

    def __init__(self) -> None:
        self.total = self.done = self.errors = 0
        self.began = self.printed = time.monotonic()

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.line(time.monotonic())

    def advance(self, record: dict[str, Any]) -> None:
        self.done += 1
        self.errors += record["status"] != "ok"
        self.refresh()

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self.printed >= PROGRESS_SECONDS:
            self.line(now)

    def line(self, now: float) -> None:
        self.printed = now
        click.echo(f"auditing: {self.done}/{self.total} files, {self.errors} not ok, {now - self.began:.0f} s", err=True)


def summary_line(document: dict[str, Any], out: Path) -> str:
    s = document["summary"]
    ok, errors = s["by_status"].get("ok", 0), s["audited"] - s["by_status"].get("ok", 0)
    flags = ", ".join(f"{n} {flag}" for flag, n in s["flags"].items())
    resumed = f", {s['resumed']} resumed" if s["resumed"] else ""
    return terminal(f"audited {s['audited']} models: {ok} ok, {errors} not ok{resumed}"
                    f"{f' (health flags: {flags})' if flags else ''} in {s['seconds']:.1f} s; "
                    f"{s['skipped']} files skipped; report: {out / 'index.html'}")


def failure_lines(failures: list[tuple[dict[str, Any], list[str]]], conditions: tuple[str, ...]) -> list[str]:
    """The failing files, one escaped line each (the first LISTED_FAILURES; the rest are counted)."""
    lines = [f"{len(failures)} file{'' if len(failures) == 1 else 's'} failed --fail-on {','.join(conditions)}:"]
    for record, met in failures[:LISTED_FAILURES]:
        why = f": {record['error']}" if record.get("error") else ""
        lines.append(terminal(f"  {record['path']} [{', '.join(met)}]{why}"[:300]))
    if len(failures) > LISTED_FAILURES:
        lines.append(f"  ... and {len(failures) - LISTED_FAILURES} more (see report.json)")
    return lines


@click.command("audit")
@click.argument("paths", nargs=-1, required=True, callback=lambda ctx, param, value: local_paths_exist(value))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for report.json, report.csv, index.html and grids/.")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: one per CPU core).")
@click.option("--scheduler", metavar="ADDR", default=None,
              help="Run on a Dask cluster, e.g. tcp://host:8786 (pip install 'filtergrid[dask]'); "
                   "--out, and local models, must be on a filesystem the workers share (models in "
                   "s3:// and other stores are read by each worker from the store).")
@click.option("--resume", is_flag=True, help="Keep models already ok (same sha256) in DIR/report.json.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=300, show_default=True,
              metavar="SECONDS", help="Time limit per model; a model past it is an error record.")
@click.option("--max-memory", metavar="SIZE", default=None,
              help="Memory a worker may allocate for one model, e.g. 2G (default: RAM / workers; 'none' for no limit).")
@click.option("--glob", "pattern", metavar="PATTERN", default=None,
              help="Only files in folders whose name or relative path matches, e.g. '*.safetensors'.")
@click.option("--follow-links", is_flag=True,
              help="Also audit what symlinks point to outside the PATHs (by default listed as skipped, never read).")
@click.option("--fail-on", metavar="CONDITIONS", default=None,
              help="Exit 1 when a file meets any of these (comma-separated): "
                   f"{','.join(FAIL_CONDITIONS)}; 'none' to never fail. Default: {','.join(DEFAULT_FAIL_ON)}.")
@click.option("--self-contained", is_flag=True,
              help="index.html with every thumbnail inline: one file that can be copied or mailed alone.")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary.")
@render_options
def command(paths, out, workers, scheduler, resume, timeout, max_memory, pattern, follow_links, fail_on,
            self_contained, quiet, **params):
    """Audit every model under PATH...: format, first layer, health and grid of each, in one report.

    A PATH may be a URL: s3://bucket/prefix/ (gs://, az://, hf:// likewise) is listed once and each
    model is read from the store by ranges; https://host/model.safetensors names one file.
    """
    from ..audit import AuditOptions, audit
    from ..renderer import RenderOptions

    conditions = parse_fail_on(fail_on)
    render = render_kwargs(params)
    RenderOptions(**render)  # a bad colour or colormap is a usage error now, not N error records
    workers = workers or os.cpu_count() or 1
    memory = parse_size(max_memory) if max_memory else default_memory(workers)
    options = AuditOptions(paths=tuple(paths), out=out, workers=workers, scheduler=scheduler, resume=resume,
                           timeout=timeout, max_memory=memory, max_memory_text=max_memory or "", pattern=pattern,
                           follow_links=follow_links, self_contained=self_contained, render=render)
    progress = Progress()
    if not quiet:
        progress = BarProgress() if sys.stderr.isatty() else LineProgress()
    try:
        document = audit(options, progress)
    finally:
        progress.stop()
    failures = failing(document["files"], conditions)
    if not quiet:
        click.echo(summary_line(document, out))
        if failures:
            click.echo("\n".join(failure_lines(failures, conditions)))
    if failures:
        sys.exit(1)
