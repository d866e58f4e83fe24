"""Words around the grid: a title, filter indices beside the tiles, and a colour bar that says what
the colours mean. Drawn around the tiles, never over them, in the gutter's colour."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..untrusted import terminal
from . import colormaps

if TYPE_CHECKING:
    from .core import RenderResult

FONT_PX = 12
#: Height of the band above each row of tiles that holds their indices.
LABEL_BAND = FONT_PX + 4
TITLE_BAND = FONT_PX + 12
BAR_WIDTH = 14
#: A colour bar is at least this tall, whatever the grid's height.
MIN_BAR_HEIGHT = 96
MAX_TITLE_CHARS = 300
#: A title may widen a narrow picture up to this many pixels.
MAX_TITLE_WIDTH = 720


def _font(size: int = FONT_PX) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut with a leading ellipsis to fit ``width`` pixels (the end of a path says most)."""
    if draw.textlength(text, font=font) <= width or len(text) < 4:
        return text
    while len(text) > 1 and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text


def ink_for(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Text colour readable on ``background``: near-white on dark, near-black on light."""
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (20, 20, 20) if luminance > 140 else (235, 235, 235)


def annotate(result: RenderResult, table: np.ndarray) -> RenderResult:
    """``result`` with its title, labels and colour bar as its options ask (colour bar by default
    for one-channel and symmetric pictures)."""
    opts = result.options
    colorbar = opts.colorbar if opts.colorbar is not None else (
        result.one_channel or opts.normalize == "symmetric")
    if not (opts.labels or opts.title or colorbar):
        return result
    background = colormaps.rgb(opts.background or "black", "background")
    image = result.image
    if opts.labels:
        image = _with_labels(image, result, background)
    if colorbar:
        image = _with_colorbar(image, result, table if result.one_channel else colormaps.lut(None), background)
    if opts.title:
        image = _with_title(image, terminal(opts.title, MAX_TITLE_CHARS), background)
    return dataclasses.replace(result, image=image, options=dataclasses.replace(opts, colorbar=colorbar))


def _canvas(width: int, height: int, background: tuple[int, int, int]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("RGB", (width, height), background)
    return canvas, ImageDraw.Draw(canvas)


def _with_labels(image: Image.Image, result: RenderResult, background) -> Image.Image:
    """Indices above each tile when they fit, else the first index of each row in a left margin."""
    g = result.geometry
    draw = ImageDraw.Draw(image)
    widest = draw.textlength(str(result.filters - 1), font=_font())
    if result.arrangement == "tiles" and g.tile_w * g.scale >= widest + 2:
        return _labels_above_tiles(image, result, background)
    return _labels_beside_rows(image, result, background)


def _labels_above_tiles(image: Image.Image, result: RenderResult, background) -> Image.Image:
    g = result.geometry
    cell_h, cell_w = g.tile_h * g.scale + g.pad, g.tile_w * g.scale + g.pad
    src = np.asarray(image)
    out = np.empty((image.height + g.rows * LABEL_BAND, image.width, 3), np.uint8)
    out[...] = background  # the bottom gutter stays background
    for r in range(g.rows):
        top = r * (cell_h + LABEL_BAND) + LABEL_BAND
        out[top: top + cell_h] = src[r * cell_h: (r + 1) * cell_h]
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    font, ink = _font(), ink_for(background)
    for index in range(result.tiles):
        r, c = divmod(index, g.cols)
        draw.text((g.pad + c * cell_w, r * (cell_h + LABEL_BAND) + g.pad), str(index), fill=ink, font=font)
    return canvas


def _labels_beside_rows(image: Image.Image, result: RenderResult, background) -> Image.Image:
    """Filter index at the left of each row of tiles (every few rows when rows are thin); in split
    mode the channel index above each column."""
    g = result.geometry
    font, ink = _font(), ink_for(background)
    probe = ImageDraw.Draw(image)
    margin = int(probe.textlength(str(result.filters - 1), font=font)) + 8
    top = LABEL_BAND if result.arrangement == "split" else 0
    canvas, draw = _canvas(image.width + margin, image.height + top, background)
    canvas.paste(image, (margin, top))
    cell_h, cell_w = g.tile_h * g.scale + g.pad, g.tile_w * g.scale + g.pad
    per_row = 1 if result.arrangement in ("split", "rows") else g.cols
    step = max(1, -(-(FONT_PX + 2) // cell_h))  # label every step-th row so labels never overlap
    for r in range(0, g.rows, step):
        y = top + g.pad + r * cell_h + (cell_h - g.pad) // 2
        draw.text((margin - 4, y), str(r * per_row), fill=ink, font=font, anchor="rm")
    if result.arrangement == "split":
        for c in range(g.cols):
            draw.text((margin + g.pad + c * cell_w, 2), f"c{c}", fill=ink, font=font)
    return canvas


def _with_colorbar(image: Image.Image, result: RenderResult, table: np.ndarray, background) -> Image.Image:
    """A vertical bar of the colours used, high at the top, with the weights they stand for."""
    font, ink = _font(), ink_for(background)
    ticks = _ticks(result)
    probe = ImageDraw.Draw(image)
    text_w = int(max(probe.textlength(label, font=font) for _, label in ticks))
    bar_h = max(MIN_BAR_HEIGHT, min(image.height - 2 * TITLE_BAND, 320))
    width = image.width + 12 + BAR_WIDTH + 6 + text_w + 8
    height = max(image.height, bar_h + 2 * FONT_PX)
    canvas, draw = _canvas(width, height, background)
    canvas.paste(image, (0, 0))
    x, y = image.width + 12, (height - bar_h) // 2
    ramp = table[np.linspace(255, 0, bar_h).round().astype(int)]
    canvas.paste(Image.fromarray(np.repeat(ramp[:, None, :], BAR_WIDTH, axis=1).astype(np.uint8)), (x, y))
    draw.rectangle((x - 1, y - 1, x + BAR_WIDTH, y + bar_h), outline=ink)
    for fraction, label in ticks:
        ty = y + round((1 - fraction) * (bar_h - 1))
        draw.line((x + BAR_WIDTH, ty, x + BAR_WIDTH + 3, ty), fill=ink)
        draw.text((x + BAR_WIDTH + 6, ty), label, fill=ink, font=font, anchor="lm")
    return canvas


def _ticks(result: RenderResult) -> list[tuple[float, str]]:
    """(position 0..1, label) pairs: the range's ends, and zero where it lies inside."""
    if result.value_range is None:
        return [(1.0, "max"), (0.5, "per filter"), (0.0, "min")]
    low, high = result.value_range
    ticks = [(1.0, f"{high:.3g}"), (0.0, f"{low:.3g}")]
    if low < 0 < high:
        zero = -low / (high - low)
        if 0.12 < zero < 0.88:  # not on top of an end's label
            ticks.insert(1, (zero, "0"))
    return ticks


def _with_title(image: Image.Image, title: str, background) -> Image.Image:
    """A title line above; the canvas widens for it up to ``MAX_TITLE_WIDTH`` (then it is cut)."""
    font = _font(FONT_PX + 2)
    probe = ImageDraw.Draw(image)
    width = max(image.width, min(MAX_TITLE_WIDTH, int(probe.textlength(title, font=font)) + 12))
    canvas, draw = _canvas(width, image.height + TITLE_BAND, background)
    canvas.paste(image, (0, TITLE_BAND))
    shown = fit_text(draw, title, font, width - 8)
    draw.text((4, TITLE_BAND // 2), shown, fill=ink_for(background), font=font, anchor="lm")
    return canvas
