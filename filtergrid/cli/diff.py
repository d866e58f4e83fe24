"""``filtergrid diff A B``: two checkpoints' first layers side by side, with the per-filter change."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..layout import LAYOUTS
from . import say
from .options import render_kwargs, render_options

#: Filters listed as "most changed".
TOP = 5


def _stats(values: np.ndarray) -> str:
    finite = values[~np.isnan(values)]
    if not finite.size:
        return "n/a"
    return "  ".join(f"{name} {v:.4g}" for name, v in
                     (("min", finite.min()), ("median", np.median(finite)), ("max", finite.max())))


def _label(which: str, path: str, bank) -> str:
    p = bank.provenance
    return f"{which}: {Path(path).name} · {p.tensor}"


@click.command("diff")
@click.argument("a", type=click.Path(exists=True, path_type=str))
@click.argument("b", type=click.Path(exists=True, path_type=str))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Image to write (.png, .svg, .pdf, .jpg, ...; default: A-vs-B.png here).")
@click.option("--tensor", "-t", metavar="NAME", help="Compare this tensor (in both files) instead of the first layer.")
@click.option("--tensor-b", metavar="NAME", help="A different tensor name in B (default: --tensor, or B's first layer).")
@click.option("--layout", type=click.Choice(list(LAYOUTS), case_sensitive=False), default=None,
              help="How the tensors are stored (default: as each format says).")
@click.option("--image-shape", metavar="HxWxC", help="Shape of a dense layer's input image, e.g. 32x32x3.")
@render_options
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
def command(a, b, output, tensor, tensor_b, layout, image_shape, quiet, **params):
    """Render the first layers of A and B side by side with B - A, and print how much each filter changed."""
    from .. import api
    from ..compare import compare, side_by_side
    from ..renderer import RenderOptions
    from ..renderer.output import image_format, save_image
    from ..safeio import refuse_overwriting_input

    out = output or Path(f"{Path(a.rstrip('/')).stem}-vs-{Path(b.rstrip('/')).stem}.png")
    refuse_overwriting_input(out, a, b)
    image_format(out)  # an unknown suffix is refused before the models are read
    bank_a = api.load(a, tensor, layout=layout, image_shape=image_shape)
    bank_b = api.load(b, tensor_b or tensor, layout=layout, image_shape=image_shape)
    comparison = compare(bank_a, bank_b)
    options = RenderOptions(**render_kwargs(params))
    top = comparison.most_changed(TOP)
    image = side_by_side(bank_a, bank_b, options, (_label("A", a, bank_a), _label("B", b, bank_b)), top)
    save_image(image, out, title=f"{_label('A', a, bank_a)} vs {_label('B', b, bank_b)}")
    if quiet:
        return
    n, h, w, c = bank_a.shape
    say(f"A: {a}: {bank_a.provenance.format} tensor {bank_a.provenance.tensor!r} {list(bank_a.provenance.original_shape)}")
    say(f"B: {b}: {bank_b.provenance.format} tensor {bank_b.provenance.tensor!r} {list(bank_b.provenance.original_shape)}")
    say(f"{len(comparison.cosine)} {'rows' if bank_a.kind == 'matrix' else f'filters of {h}x{w}x{c}'}")
    say(f"relative L2 change ||B-A||/||A||: {_stats(comparison.relative_change)}")
    say(f"cosine similarity:                {_stats(comparison.cosine)}")
    say("most changed: " + (", ".join(
        f"#{i} ({comparison.relative_change[i]:.3g}, cos {comparison.cosine[i]:.3g})" for i in top) or "none (identical)"))
    say(f"wrote {out} ({image.width}x{image.height})")
