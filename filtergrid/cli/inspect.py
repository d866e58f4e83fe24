"""``filtergrid inspect MODEL``: what is in the file, which tensor is first and why, its canonical shape."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from ..untrusted import markup
from .options import load_kwargs, model_options


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def stored_bytes(path) -> int | None:
    """The file's size, or a folder's (its files, up to 10,000 of them)."""
    if not path.is_dir():
        return path.stat().st_size
    if not isinstance(path, Path):
        return None  # a remote folder: listing it to add up sizes is not worth the requests
    files = [p for _, p in zip(range(10_000), path.rglob("*")) if p.is_file() and not p.is_symlink()]
    return sum(p.stat().st_size for p in files)


def report(model: str, **load_options) -> dict:
    """Everything ``inspect`` shows, as plain data (also what ``--json`` prints)."""
    import numpy as np

    from .. import api
    from ..stats import moments
    from ..safeio import model_path

    with api.open_model(model, load_options.get("format")) as (fmt, reader):
        infos = reader.tensors()
    bank = api.load(model, **load_options)
    finite = np.isfinite(bank.array)
    stats = {**moments(bank.array, finite), "nonfinite": int(finite.size - finite.sum())} if finite.any() else None
    return {
        "path": str(bank.provenance.source),
        "format": fmt,
        "file_bytes": stored_bytes(model_path(model)),
        "parameters": sum(math.prod(i.shape) for i in infos),
        "chosen": bank.provenance.tensor,
        "chosen_by": bank.provenance.chosen_by,
        "original_shape": list(bank.provenance.original_shape),
        "original_dtype": bank.provenance.original_dtype,
        "layout": bank.provenance.layout,
        "canonical_shape": list(bank.shape),
        "kind": bank.kind,
        "stats": stats,
        "notes": list(bank.provenance.notes),
        "producer": bank.provenance.producer.to_dict() if bank.provenance.producer else None,
        "tensors": [i.to_dict() for i in infos],
    }


def shown_as(data: dict) -> str:
    n, h, w, c = data["canonical_shape"]
    if data["kind"] == "matrix":
        return f"a heatmap of {h} x {w}"
    return f"{n} filters of {h}x{w}x{c}"


def written_by(producer: dict | None) -> str:
    """What the file says wrote it, or that it does not say."""
    from ..bank import Producer

    return Producer(**producer).describe() if producer else "not recorded in the file"


@click.command("inspect")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of a table.")
@click.option("--all", "show_all", is_flag=True, help="List every tensor, not only first-layer candidates.")
def command(model, tensor, layout, image_shape, flatten, format_name, as_json, show_all):
    """List MODEL's tensors in model order and say which one is the first layer."""
    data = report(model, **load_kwargs(tensor, layout, image_shape, flatten, format_name))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    # Wide enough for real tensor names when piped (rich would wrap at 80 columns).
    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    size = f", {human_bytes(data['file_bytes'])}" if data["file_bytes"] is not None else ""
    console.print(f"[bold]{markup(data['path'])}[/bold]: {data['format']}{size}, {len(data['tensors'])} tensors, "
                  f"{data['parameters']:,} parameters")
    console.print(f"written by: {markup(written_by(data['producer']))}")
    console.print(f"first layer: [bold]{markup(data['chosen'])}[/bold] "
                  f"{'x'.join(map(str, data['original_shape']))} {markup(data['original_dtype'])}, "
                  f"stored as {markup(data['layout'])}, shown as {shown_as(data)}")
    for i, part in enumerate(data["chosen_by"].split("; runner-up ")):  # the evidence, then the runner-up
        console.print(f"  {'chosen by' if i == 0 else 'runner-up'}: {markup(part)}")
    if data["stats"]:
        st = data["stats"]
        console.print(f"  values: min {st['min']:.4g}, max {st['max']:.4g}, mean {st['mean']:.4g}, std {st['std']:.4g}"
                      + (f", {st['nonfinite']} NaN/Inf" if st["nonfinite"] else ""))
    for note in data["notes"]:
        console.print(f"  {markup(note)}")
    table = Table(show_edge=False, header_style="bold")
    for column in ("", "tensor", "shape", "dtype", "layout", "role"):
        table.add_column(column, no_wrap=column in ("tensor", "shape"), overflow="fold")
    rows = [t for t in data["tensors"] if show_all or t["candidate"] or t["name"] == data["chosen"]]
    for t in rows[:200]:
        mark = "*" if t["name"] == data["chosen"] else ""
        role = markup(t["role"])
        table.add_row(mark, markup(t["name"]), "x".join(map(str, t["shape"])) or "scalar", markup(t["dtype"]),
                      markup(t["layout"]), role if t["candidate"] else f"[dim]{role}[/dim]")
    console.print(table)
    hidden = len(data["tensors"]) - min(len(rows), 200)
    if hidden:
        console.print(f"[dim]{hidden} more tensors not shown (--all lists every one)[/dim]")
