"""``filtergrid inspect MODEL``: what is in the file, which tensor is first and why, its canonical shape."""

from __future__ import annotations

import json

import click

from .options import load_kwargs, model_options


def report(model: str, **load_options) -> dict:
    """Everything ``inspect`` shows, as plain data (also what ``--json`` prints)."""
    from .. import api

    with api.open_model(model, load_options.get("format")) as (fmt, reader):
        infos = reader.tensors()
    bank = api.load(model, **load_options)
    return {
        "path": model,
        "format": fmt,
        "chosen": bank.provenance.tensor,
        "chosen_by": bank.provenance.chosen_by,
        "layout": bank.provenance.layout,
        "canonical_shape": list(bank.shape),
        "kind": bank.kind,
        "notes": list(bank.provenance.notes),
        "tensors": [i.to_dict() for i in infos],
    }


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
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{escape(model)}[/bold]: {data['format']}, {len(data['tensors'])} tensors")
    console.print(f"first layer: [bold]{escape(data['chosen'])}[/bold] as {escape(data['layout'])} "
                  f"-> {data['kind']} {' x '.join(map(str, data['canonical_shape']))}")
    for i, part in enumerate(data["chosen_by"].split("; runner-up ")):  # the evidence, then the runner-up
        console.print(f"  {'chosen by' if i == 0 else 'runner-up'}: {escape(part)}")
    for note in data["notes"]:
        console.print(f"  {escape(note)}")
    table = Table(show_edge=False, header_style="bold")
    for column in ("", "tensor", "shape", "dtype", "layout", "role"):
        table.add_column(column)
    rows = [t for t in data["tensors"] if show_all or t["candidate"] or t["name"] == data["chosen"]]
    for t in rows[:200]:
        mark = "*" if t["name"] == data["chosen"] else ""
        role = escape(t["role"])
        table.add_row(mark, escape(t["name"]), "x".join(map(str, t["shape"])) or "scalar", escape(t["dtype"]),
                      escape(t["layout"]), role if t["candidate"] else f"[dim]{role}[/dim]")
    console.print(table)
    hidden = len(data["tensors"]) - min(len(rows), 200)
    if hidden:
        console.print(f"[dim]{hidden} more tensors not shown (--all lists every one)[/dim]")
