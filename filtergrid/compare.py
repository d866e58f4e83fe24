"""Two checkpoints' first layers, filter by filter: how much each changed, and a side-by-side picture.

The question people ask once they have two files (before/after fine-tuning, fp32 vs its quantized
export). Both banks must have the same canonical shape; the picture is A | B | B - A: A and B on
one scale, the difference on a symmetric one (zero is white in RdBu_r) with a colour bar, so its
sign and size read at a glance, and the filters that moved most outlined.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .bank import FilterBank, Provenance
from .errors import UsageError
from .renderer import RenderOptions, colormaps, render_result
from .renderer.annotate import annotate, fit_text
from .renderer.normalize import normalize
from .stats import filters_of, row_norms

#: Colours and spacing of the composed picture.
_CANVAS = (20, 24, 32)
_LABEL = (235, 238, 243)
_GAP = 12
_LABEL_HEIGHT = 24
_MIN_SLOT = 220
#: The most-changed filters are outlined in this colour (no diverging map has it).
_MARK = (255, 200, 0)
#: The difference's colours: red where B is larger, blue where smaller, white where equal.
DIFF_CMAP = "RdBu_r"
DIFF_CAPTION = "B - A: red up, blue down, white = no change"


@dataclass(frozen=True)
class Comparison:
    """Per-filter change from ``a`` to ``b`` (rows of a matrix heatmap count as filters)."""

    a: FilterBank
    b: FilterBank
    relative_change: np.ndarray  # ||b - a|| / ||a|| per filter (inf where a is all zero and b is not)
    cosine: np.ndarray  # cos(a, b) per filter (NaN where either is all zero)

    def most_changed(self, k: int) -> list[int]:
        """Indices of the (at most ``k``) changed filters with the largest relative change."""
        change = np.nan_to_num(self.relative_change, nan=-1.0)
        order = np.argsort(-change, kind="stable")
        return [int(i) for i in order[:k] if change[i] > 0]


def compare(a: FilterBank, b: FilterBank) -> Comparison:
    """Per-filter relative L2 change and cosine similarity; the banks must line up exactly."""
    if a.shape != b.shape or a.kind != b.kind:
        raise UsageError(f"cannot compare {a.kind} {list(a.shape)} with {b.kind} {list(b.shape)}: "
                         "the first layers differ in shape (pick matching tensors with --tensor / --tensor-b)")
    fa, fb = filters_of(a).astype(np.float64), filters_of(b).astype(np.float64)
    norm_a, norm_b, change = row_norms(fa), row_norms(fb), row_norms(fb - fa)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(norm_a > 0, change / norm_a, np.where(change > 0, np.inf, 0.0))
        cosine = np.einsum("ij,ij->i", fa, fb) / (norm_a * norm_b)
    return Comparison(a, b, relative, np.where((norm_a > 0) & (norm_b > 0), cosine, np.nan))


def difference(a: FilterBank, b: FilterBank) -> FilterBank:
    """The bank ``b - a``, with a provenance that says so."""
    pa, pb = a.provenance, b.provenance
    provenance = Provenance(f"{pb.source} - {pa.source}", "difference", f"{pb.tensor} - {pa.tensor}",
                            pa.original_shape, "float32", pa.layout, "difference of the two first layers")
    return FilterBank((b.array - a.array).astype(np.float32), provenance, a.kind)


def shared_options(a: FilterBank, b: FilterBank, options: RenderOptions) -> RenderOptions:
    """A and B drawn on one scale, so that A and 2·A look different: a bank-wide mode's range is
    taken over both banks (the default is ``global``); an explicit ``per-filter`` stays per tile."""
    mode = options.normalize or "global"
    if mode == "per-filter" or options.value_range is not None:
        return dataclasses.replace(options, normalize=mode)
    both = np.concatenate([a.array, b.array])
    return dataclasses.replace(options, normalize=mode, value_range=normalize(both, mode).value_range)


def side_by_side(a: FilterBank, b: FilterBank, options: RenderOptions, labels: tuple[str, str],
                 marked: Sequence[int] = ()) -> Image.Image:
    """A | B | B - A, drawn by the renderer with one geometry (same columns, same tile scale) and
    one scale for A and B; the filters in ``marked`` are outlined on the difference."""
    shared = shared_options(a, b, options)
    first = render_result(a, shared)
    same = dataclasses.replace(shared, cols=first.cols, scale=first.scale, pad=first.geometry.pad)
    second = render_result(b, same)
    third, caption = _difference_panel(difference(a, b), same, marked)
    panels = [(labels[0], first.image), (labels[1], second.image), (caption, third)]
    slot = max(_MIN_SLOT, *(p.width for _, p in panels))
    width = slot * len(panels) + _GAP * (len(panels) + 1)
    height = max(p.height for _, p in panels) + _LABEL_HEIGHT + 2 * _GAP
    canvas = Image.new("RGB", (width, height), _CANVAS)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)
    for i, (label, image) in enumerate(panels):
        x = _GAP + i * (slot + _GAP)
        draw.text((x, _GAP), fit_text(draw, label, font, slot), fill=_LABEL, font=font)
        canvas.paste(image, (x + (slot - image.width) // 2, _GAP + _LABEL_HEIGHT))
    return canvas


def _difference_panel(diff: FilterBank, options: RenderOptions, marked: Sequence[int]) -> tuple[Image.Image, str]:
    """B - A on a symmetric scale (zero in the middle of the colour bar), most-changed tiles outlined,
    and a caption that names the colour of "no change" as drawn (RGB tiles ignore the colormap)."""
    cmap = options.cmap or DIFF_CMAP
    plain = dataclasses.replace(options, normalize="symmetric", value_range=None, cmap=cmap, labels=False,
                                title=None, colorbar=False, background="black")
    raw = render_result(diff, plain)
    image = raw.image.copy()
    draw = ImageDraw.Draw(image)
    g = raw.geometry
    for index in marked:
        if raw.arrangement != "tiles" or index >= raw.tiles:
            continue
        r, c = divmod(index, g.cols)
        x, y = g.pad + c * (g.tile_w * g.scale + g.pad), g.pad + r * (g.tile_h * g.scale + g.pad)
        width = min(2, g.pad) or 1  # in the gutter where there is one
        draw.rectangle((x - width, y - width, x + g.tile_w * g.scale + width - 1, y + g.tile_h * g.scale + width - 1),
                       outline=_MARK, width=width)
    # no labels here: bands inserted between rows would split the outlines; A and B carry them,
    # on the same geometry
    shown = dataclasses.replace(raw, image=image, options=dataclasses.replace(raw.options, colorbar=True))
    if not raw.one_channel:
        caption = "B - A, per channel: gray = no change"
    elif cmap == DIFF_CMAP:
        caption = DIFF_CAPTION
    else:
        caption = f"B - A: the middle of the {cmap} bar = no change"
    return annotate(shown, colormaps.lut(cmap)).image, caption


