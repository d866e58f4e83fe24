"""One audit from start to finish: walk, plan tasks, run them locally or on Dask, write the reports.

Records reach the report as workers finish; the report is rewritten every few seconds, so an audit
stopped by Ctrl-C or a power cut leaves a valid report of what was done (``complete: false``).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..remote import is_url, redact
from .report import Report, previous_ok
from .walk import Found, find_models
from .worker import files_of, size_and_sha256

#: Characters kept from a model's path in its grid's file name (the rest become "_").
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class AuditOptions:
    paths: tuple[str, ...]
    out: Path
    workers: int = 1
    scheduler: str | None = None
    resume: bool = False
    timeout: float | None = None
    max_memory: int = 0
    max_memory_text: str = ""
    pattern: str | None = None
    follow_links: bool = False
    self_contained: bool = False
    render: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """What the report records about how it was made."""
        return {"paths": [redact(p) if is_url(p) else p for p in self.paths], "workers": self.workers,
                "scheduler": self.scheduler, "resume": self.resume, "timeout": self.timeout,
                "max_memory": self.max_memory or None,
                "glob": self.pattern, "follow_links": self.follow_links, "self_contained": self.self_contained,
                "render": self.render}


def grid_name(path: str) -> str:
    """``grids/<readable tail of the path>-<hash of the whole path>.png``: unique and filesystem-safe."""
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    tail = "__".join(Path(path).parts[-2:])
    readable = _UNSAFE.sub("_", tail)[-80:].strip("._") or "model"
    return f"grids/{readable}-{digest}.png"


def shown_path(found: Found) -> str:
    """The path records and reports use: a URL without credentials or query."""
    return redact(found.path) if isinstance(found.path, str) else str(found.path)


def _size(found: Found) -> int:
    if isinstance(found.path, str):
        return found.size or 0
    if not found.is_folder:
        return found.path.stat().st_size
    return sum(p.stat().st_size for p in files_of(found.path, True))


def plan(models: list[Found], options: AuditOptions, report: Report) -> list[dict[str, Any]]:
    """Tasks for the workers, largest first (no worker is left with one big file at the end while
    the others idle); with --resume, models already ``ok`` (same sha256) are copied instead."""
    previous = previous_ok(options.out) if options.resume else {}
    sizes = {r.get("size") for r in previous.values()}
    tasks = []
    for found in models:
        path = shown_path(found)
        remote = isinstance(found.path, str)
        try:
            size = _size(found)
            sha = None
            if previous and size in sizes and isinstance(found.path, Path):  # a remote file is never hashed
                sha = size_and_sha256(found.path, found.is_folder)[1]
        except OSError:
            size, sha = 0, None  # the worker will report why
        if sha in previous:
            report.add({**previous[sha], "path": path, "resumed": True})
            continue
        task = {"path": path, "is_folder": found.is_folder, "claimed": found.claimed,
                "out": os.path.abspath(options.out), "grid": grid_name(path), "render": options.render,
                "max_memory_text": options.max_memory_text}
        if remote:  # the worker reads the store itself; the URL keeps any credentials it was given
            task.update(url=found.path, size=found.size, etag=found.etag, probed=found.probed)
        tasks.append((size, task))
    tasks.sort(key=lambda sized: -sized[0])
    return [task for _, task in tasks]


class Progress:
    """What the caller sees while the audit runs (the CLI draws a progress bar; the default is silent)."""

    def start(self, total: int, done: int) -> None: ...

    def advance(self, record: dict[str, Any]) -> None: ...

    def refresh(self) -> None: ...

    def stop(self) -> None: ...


def audit(options: AuditOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Audit every model under ``options.paths``; returns the final report document."""
    if options.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {options.workers}")
    client = None
    if options.scheduler:  # an unreachable scheduler is a usage error: fail before writing anything
        from .dask import connect

        client = connect(options.scheduler)
    try:
        return _run(options, progress or Progress(), client)
    finally:
        if client is not None:
            client.close()


def _run(options: AuditOptions, progress: Progress, client) -> dict[str, Any]:
    from .html import write_html

    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    walk = find_models(options.paths, options.pattern, exclude=[out], follow_links=options.follow_links)
    models = [f if isinstance(f.path, str) else replace(f, path=Path(os.path.abspath(f.path))) for f in walk.models]
    skipped = [(p if is_url(p) else os.path.abspath(p), why) for p, why in walk.skipped]
    report = Report(out, [shown_path(f) for f in models], skipped, options.to_dict())
    tasks = plan(models, options, report)
    progress.start(len(models), len(report.records))

    def on_record(record: dict[str, Any]) -> None:
        report.add(record)
        progress.advance(record)

    def tick() -> None:
        report.flush_if_due()
        progress.refresh()

    report.write(complete=False)
    try:
        if client is not None:
            from .dask import run_dask

            run_dask(client, tasks, timeout=options.timeout, max_memory=options.max_memory, on_record=on_record,
                     tick=tick)
        elif tasks:
            from .runner import run_local

            run_local(tasks, workers=options.workers, timeout=options.timeout, max_memory=options.max_memory,
                      on_record=on_record, tick=tick)
    except KeyboardInterrupt:
        write_html(report.write(complete=False, interrupted=True), out, options.self_contained)
        raise
    document = report.write(complete=True)
    write_html(document, out, options.self_contained)
    return document
