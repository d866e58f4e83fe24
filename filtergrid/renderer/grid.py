"""Tile geometry and pasting: where every tile goes, how big, and the one allocation of the image."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import limits

#: Automatic upscaling makes a tile's longer side at least this many pixels (3x3 -> 66, 7x7 -> 70, 32x32 -> 64).
TARGET_TILE_PX = 64
#: A lone tile (a heatmap of a matrix) is enlarged until its longer side is at least this.
TARGET_SINGLE_PX = 512
#: Automatic scaling keeps the picture under this many pixels (4096 x 4096); an explicit ``scale``
#: may go up to ``limits.MAX_OUTPUT_PIXELS``.
TARGET_OUTPUT_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class Geometry:
    """Where tiles go: ``rows`` x ``cols`` tiles of ``tile_h`` x ``tile_w`` pixels each upscaled by
    ``scale``, ``pad`` pixels between them and around the edge."""

    rows: int
    cols: int
    tile_h: int
    tile_w: int
    scale: int
    pad: int

    @property
    def width(self) -> int:
        return self.cols * (self.tile_w * self.scale + self.pad) + self.pad

    @property
    def height(self) -> int:
        return self.rows * (self.tile_h * self.scale + self.pad) + self.pad


def near_square_cols(tiles: int, tile_h: int, tile_w: int) -> int:
    """Columns that make the grid about as wide as it is tall in pixels (8 for 64 square tiles)."""
    return max(1, min(tiles, math.ceil(math.sqrt(tiles * tile_h / tile_w))))


def auto_scale(tile_h: int, tile_w: int, tiles: int = 2) -> int:
    """Nearest-neighbour factor that turns a small kernel (or a small lone heatmap) into something one can see."""
    target = TARGET_SINGLE_PX if tiles == 1 else TARGET_TILE_PX
    return max(1, math.ceil(target / max(tile_h, tile_w)))


def auto_pad(tile_px: int, scale: int) -> int:
    """Gutter for tiles of ``tile_px`` pixels: 1 px unscaled, 2-8 px once enlarged (3x3 kernels
    scaled to 66 px get 2 px), so per-filter-scaled tiles, which all hold a black pixel, stay apart."""
    return 1 if scale == 1 else max(2, min(8, tile_px // 32))


def fit(tiles: int, cols: int, tile_h: int, tile_w: int, pad: int, scale: int | None, automatic: int) -> Geometry:
    """The geometry, decided before any pixel is allocated.

    Without an explicit ``scale``, ``automatic`` shrinks until the image is under
    ``TARGET_OUTPUT_PIXELS``; an explicit one is honoured up to ``limits.MAX_OUTPUT_PIXELS`` or refused.
    """
    rows = math.ceil(tiles / cols)
    target = min(TARGET_OUTPUT_PIXELS, limits.MAX_OUTPUT_PIXELS)  # for the automatic scale only
    geometry = Geometry(rows, cols, tile_h, tile_w, scale if scale is not None else automatic, pad)
    while scale is None and geometry.scale > 1 and geometry.width * geometry.height > target:
        geometry = Geometry(rows, cols, tile_h, tile_w, geometry.scale - 1, pad)
    pixels = geometry.width * geometry.height
    if pixels > limits.MAX_OUTPUT_PIXELS:
        how = "lower --scale or pad, change --cols" if scale is not None else "even at scale 1; lower --max-filters"
        raise limits.exceeded("MAX_OUTPUT_PIXELS", f"the image would be {geometry.width}x{geometry.height} "
                              f"pixels ({how})", pixels)
    return geometry


def paste(tiles: np.ndarray, geometry: Geometry, background: tuple[int, int, int]) -> np.ndarray:
    """One (height, width, 3) uint8 image of ``tiles`` (T, h, w, 3) laid out row by row; tiles of
    one pixel row (T, 1, w, 3), the strips of 1-D kernels, are drawn ``geometry.tile_h`` rows high.

    The image is allocated once; tiles are upscaled by broadcasting straight into a strided view of
    it, so no upscaled copy of the tiles ever exists.
    """
    g = geometry
    count = tiles.shape[0]
    fill = np.array(background, dtype=np.uint8)
    slots = np.empty((g.rows * g.cols, g.tile_h, g.tile_w, 3), dtype=np.uint8)
    slots[:count] = tiles
    slots[count:] = fill
    image = np.empty((g.height, g.width, 3), dtype=np.uint8)
    image[...] = fill
    pixels = _tile_pixels(image, g)
    by_row = slots.reshape(g.rows, g.cols, g.tile_h, g.tile_w, 3).transpose(0, 2, 1, 3, 4)
    pixels[...] = by_row[:, :, None, :, :, None, :]
    return image


def _tile_pixels(image: np.ndarray, g: Geometry) -> np.ndarray:
    """A writeable (rows, tile_h, scale, cols, tile_w, scale, 3) view of the tile pixels of ``image``:
    writing one source pixel broadcast over both ``scale`` axes is nearest-neighbour upscaling."""
    row, col, channel = image.strides
    cell_h, cell_w = g.tile_h * g.scale + g.pad, g.tile_w * g.scale + g.pad
    return np.lib.stride_tricks.as_strided(
        image[g.pad:, g.pad:],
        shape=(g.rows, g.tile_h, g.scale, g.cols, g.tile_w, g.scale, 3),
        strides=(cell_h * row, g.scale * row, row, cell_w * col, g.scale * col, col, channel),
        writeable=True,
    )
