"""Options shared by the subcommands, declared once."""

from __future__ import annotations

from pathlib import Path

import click

from ..layout import LAYOUTS


def model_options(f):
    """How to pick and lay out the tensor: shared by render, inspect and convert."""
    for decorator in reversed((
        click.argument("model", type=click.Path(dir_okay=True, path_type=str)),
        click.option("--tensor", "-t", metavar="NAME", help="Show this tensor instead of the first layer."),
        click.option("--layout", type=click.Choice(list(LAYOUTS), case_sensitive=False), default=None,
                     help="How the tensor is stored (default: as the format says, else guessed)."),
        click.option("--image-shape", metavar="HxWxC", help="Shape of a dense layer's input image, e.g. 32x32x3."),
        click.option("--flatten", type=click.Choice(["HWC", "CHW"], case_sensitive=False), default=None,
                     help="Order in which a dense layer's input image was flattened (default: the framework's)."),
        click.option("--format", "format_name", metavar="NAME", default=None,
                     help="Skip detection and read the file as this format."),
    )):
        f = decorator(f)
    return f


def load_kwargs(tensor, layout, image_shape, flatten, format_name) -> dict:
    """The keyword arguments of :func:`filtergrid.load` from the shared options."""
    return {"tensor": tensor, "layout": layout, "image_shape": image_shape, "flatten": flatten,
            "format": format_name}


def render_options(f):
    """How tiles are scaled and drawn: shared by render, demo and the audit."""
    from ..renderer import CHANNEL_MODES, NORMALIZATIONS

    for decorator in reversed((
        click.option("--normalize", "-n", type=click.Choice(NORMALIZATIONS, case_sensitive=False), default=None,
                     help="Intensity scaling: per-filter min-max (default), global, symmetric around 0, "
                          "percentile, or none (values already in 0..1)."),
        click.option("--cols", type=click.IntRange(min=1), default=None, help="Tiles per row (default: near-square)."),
        click.option("--pad", type=click.IntRange(min=0, max=64), default=None,
                     help="Pixels between tiles and around the grid (default: 1, or 2-8 for enlarged tiles)."),
        click.option("--scale", type=click.IntRange(min=1, max=256), default=None,
                     help="Upscale each tile this many times, nearest-neighbour (default: automatic)."),
        click.option("--cmap", metavar="NAME", default=None, help="Colormap for one-channel tiles (e.g. viridis)."),
        click.option("--bgr", is_flag=True, help="The model was trained on BGR images: swap red and blue."),
        click.option("--channels", type=click.Choice(CHANNEL_MODES, case_sensitive=False), default="split", show_default=True,
                     help="Filters with other than 1 or 3 input channels: a tile per channel, their mean, or the first 3 as RGB."),
        click.option("--background", default=None,
                     help="Colour between tiles (default: the colour least like any tile's: steel blue "
                          "between gray tiles, white between RGB ones)."),
        click.option("--max-filters", type=click.IntRange(min=1), default=None,
                     help="Draw at most N filters (default 1024; the output says how many were left out)."),
        click.option("--labels", is_flag=True, help="Number the filters (and the channels in split mode)."),
        click.option("--colorbar/--no-colorbar", default=None,
                     help="A scale of what the colours mean (default: for one-channel, symmetric and heatmap pictures)."),
    )):
        f = decorator(f)
    return f


#: The parameters ``render_options`` adds, by their Python names.
RENDER_PARAMETERS = ("normalize", "cols", "pad", "scale", "cmap", "bgr", "channels", "background",
                     "max_filters", "labels", "colorbar")


def render_kwargs(params: dict) -> dict:
    """The :class:`~filtergrid.renderer.RenderOptions` fields among a command's parameters (removed from them)."""
    return {name: params.pop(name) for name in RENDER_PARAMETERS}


def title_option(f):
    """``--title TEXT`` / ``--no-title`` for pictures of one model (default: its file and tensor)."""
    f = click.option("--no-title", is_flag=True, help="No title line above the grid.")(f)
    return click.option("--title", metavar="TEXT", default=None,
                        help="Title above the grid (default: the file and the tensor).")(f)


def default_title(title: str | None, no_title: bool, bank) -> str | None:
    if no_title:
        return None
    p = bank.provenance
    return title or f"{Path(p.source.rstrip('/')).name} · {p.tensor} {list(p.original_shape)} · {p.layout}"
