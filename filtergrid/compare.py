"""Two checkpoints' first layers, filter by filter: how much each changed, and a side-by-side picture.

The question people ask once they have two files (before/after fine-tuning, fp32 vs its quantized
export). Both banks must have the same canonical shape; the picture is A | B | B - A, the difference
drawn with symmetric normalization (zero is mid-gray) so its sign and size read at a glance.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .bank import FilterBank, Provenance
from .errors import UsageError
from .renderer import RenderOptions, render_result
from .stats import filters_of, row_norms

#: Colours and spacing of the composed picture.
_CANVAS = (20, 24, 32)
_LABEL = (235, 238, 243)
_GAP = 12
_LABEL_HEIGHT = 24
_MIN_SLOT = 220


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


def side_by_side(a: FilterBank, b: FilterBank, options: RenderOptions, labels: tuple[str, str]) -> Image.Image:
    """A | B | B - A, drawn by the renderer with one geometry (same columns, same tile scale)."""
    first = render_result(a, options)
    same = dataclasses.replace(options, cols=first.cols, scale=first.scale)
    second = render_result(b, same)
    diff_options = dataclasses.replace(same, normalize="symmetric", cmap=options.cmap or "RdBu_r")
    third = render_result(difference(a, b), diff_options)
    panels = [(labels[0], first.image), (labels[1], second.image), ("B - A (symmetric: gray = no change)", third.image)]
    slot = max(_MIN_SLOT, *(p.width for _, p in panels))
    width = slot * len(panels) + _GAP * (len(panels) + 1)
    height = max(p.height for _, p in panels) + _LABEL_HEIGHT + 2 * _GAP
    canvas = Image.new("RGB", (width, height), _CANVAS)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)
    for i, (label, image) in enumerate(panels):
        x = _GAP + i * (slot + _GAP)
        draw.text((x, _GAP), _fit(draw, label, font, slot), fill=_LABEL, font=font)
        canvas.paste(image, (x + (slot - image.width) // 2, _GAP + _LABEL_HEIGHT))
    return canvas


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels (labels hold untrusted file names)."""
    if draw.textlength(text, font=font) <= width or len(text) < 4:
        return text
    while len(text) > 1 and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text
