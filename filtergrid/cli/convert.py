"""``filtergrid convert MODEL -o OUT``: the canonical float32 (N, H, W, C) bank as an array file."""

from __future__ import annotations

from pathlib import Path

import click

from . import say
from .options import load_kwargs, model_options


@click.command("convert")
@model_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Array file to write: .npy, .npz or .safetensors (provenance kept in the last two).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
def command(model, tensor, layout, image_shape, flatten, format_name, output, quiet):
    """Write the first layer of MODEL as a float32 (filters, H, W, C) array."""
    from .. import api
    from ..export import write_bank
    from ..safeio import refuse_overwriting_input

    refuse_overwriting_input(output, model)

    bank = api.load(model, **load_kwargs(tensor, layout, image_shape, flatten, format_name))
    out = write_bank(bank, output)
    if not quiet:
        p = bank.provenance
        say(f"wrote {out}: float32 {list(bank.shape)} from {p.format} tensor {p.tensor!r} "
                   f"{list(p.original_shape)} as {p.layout}")
