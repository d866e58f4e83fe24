"""Options shared by the subcommands, declared once."""

from __future__ import annotations

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
                     help="Intensity scaling: per-filter min-max (default), global, symmetric around 0, percentile."),
        click.option("--cols", type=click.IntRange(min=1), default=None, help="Tiles per row (default: near-square)."),
        click.option("--pad", type=click.IntRange(min=0, max=64), default=1, show_default=True,
                     help="Pixels between tiles and around the grid."),
        click.option("--scale", type=click.IntRange(min=1, max=256), default=None,
                     help="Upscale each tile this many times, nearest-neighbour (default: automatic)."),
        click.option("--cmap", metavar="NAME", default=None, help="Colormap for one-channel tiles (e.g. viridis)."),
        click.option("--bgr", is_flag=True, help="The model was trained on BGR images: swap red and blue."),
        click.option("--channels", type=click.Choice(CHANNEL_MODES, case_sensitive=False), default="split", show_default=True,
                     help="Filters with other than 1 or 3 input channels: a tile per channel, their mean, or the first 3 as RGB."),
        click.option("--background", default="black", show_default=True, help="Colour between tiles."),
    )):
        f = decorator(f)
    return f


def render_kwargs(normalize, cols, pad, scale, cmap, bgr, channels, background) -> dict:
    """The keyword arguments of :func:`filtergrid.renderer.render` from the shared options."""
    return {"normalize": normalize, "cols": cols, "pad": pad, "scale": scale, "cmap": cmap, "bgr": bgr,
            "channels": channels, "background": background}
