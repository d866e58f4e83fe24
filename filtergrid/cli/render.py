"""``filtergrid render MODEL``: the grid image of a model's first layer."""

from __future__ import annotations

from pathlib import Path

import click

from . import say
from .options import (
    default_title,
    load_kwargs,
    model_options,
    render_kwargs,
    render_options,
    title_option,
)


def default_output(model: str) -> Path:
    """``resnet18.onnx`` -> ``resnet18-filters.png`` in the current folder."""
    return Path(f"{Path(model.rstrip('/')).stem or 'model'}-filters.png")


def describe(bank, result, out: Path) -> str:
    p = bank.provenance
    n, h, w, c = bank.shape
    what = "a heatmap" if bank.kind == "matrix" else f"{n} filters of {h}x{w}x{c}"
    extra = f", {result.nan_pixels} NaN/Inf pixels" if result.nan_pixels else ""
    for note in result.notes:
        extra += f"; {note}"
    if result.filters < result.total_filters:
        extra += f"; showing the first {result.filters} of {result.total_filters} (--max-filters)"
    return (f"wrote {out} ({result.image.width}x{result.image.height}): {what} from {p.format} tensor "
            f"{p.tensor!r} {list(p.original_shape)} {p.original_dtype} as {p.layout}, {p.chosen_by}{extra}")


@click.command("render")
@model_options
@render_options
@title_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Image to write (.png; .svg or .pdf for slides; .jpg, .webp, ...). Default: MODEL-filters.png here.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
def command(model, tensor, layout, image_shape, flatten, format_name, title, no_title, output, quiet, **params):
    """Render the first layer of MODEL (or --tensor NAME) as a grid of images."""
    from .. import api
    from ..renderer import RenderOptions, render_result, save
    from ..safeio import refuse_overwriting_input

    out = output or default_output(model)
    refuse_overwriting_input(out, model)
    bank = api.load(model, **load_kwargs(tensor, layout, image_shape, flatten, format_name))
    options = RenderOptions(**render_kwargs(params), title=default_title(title, no_title, bank))
    result = render_result(bank, options)
    out = save(result, bank, out)
    if not quiet:
        say(describe(bank, result, out))
