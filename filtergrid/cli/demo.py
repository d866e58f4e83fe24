"""``filtergrid demo``: render the small CNN that ships inside the package (no network needed)."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

import click

from . import say
from .options import default_title, render_kwargs, render_options, title_option

DEMO_MODEL = "digits_cnn.onnx"


@click.command("demo")
@render_options
@title_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("filtergrid-demo.png"), show_default=True, help="Image to write.")
def command(title, no_title, output, **params):
    """Render the first conv layer of a tiny CNN trained on scikit-learn's digits."""
    from .. import api
    from ..renderer import RenderOptions, render_result, save
    from .render import describe

    with as_file(files("filtergrid") / "demo" / DEMO_MODEL) as model:
        bank = api.load(model)
        options = RenderOptions(**render_kwargs(params), title=default_title(title, no_title, bank))
        result = render_result(bank, options)
        out = save(result, bank, output)
    say(describe(bank, result, out))
