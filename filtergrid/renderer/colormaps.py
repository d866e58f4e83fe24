"""Colours: 256-entry colormap LUTs and colour names, both from the ``cmap`` package."""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
from collections.abc import Iterator

import numpy as np

from ..errors import UsageError

#: The colours of the default options, by name, so a default render needs no ``cmap`` import (~35 ms);
#: equal to cmap's (CSS) values, which a test checks.
BASIC_COLORS = {"black": (0, 0, 0), "white": (255, 255, 255), "magenta": (255, 0, 255),
                "gray": (128, 128, 128), "grey": (128, 128, 128)}

#: Names shown when a colormap name is unknown and nothing close to it exists.
SUGGESTED = ("gray", "viridis", "magma", "inferno", "RdBu_r", "coolwarm", "seismic")


@contextlib.contextmanager
def _quiet_cmap() -> Iterator[None]:
    """cmap logs a warning for short names found in two catalogs (``RdBu`` is colorbrewer's and vispy's);
    they resolve to the same map, so the warning only confuses a filtergrid user."""
    logger = logging.getLogger("cmap")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@functools.lru_cache(maxsize=64)
def lut(name: str | None) -> np.ndarray:
    """A (256, 3) uint8 lookup table; ``None`` is the identity gray ramp. Cached per name."""
    if name is None:
        return np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    import cmap

    try:
        with _quiet_cmap():
            rgba = cmap.Colormap(name).lut(256)
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"unknown colormap {name!r}; {_suggest(name)}") from e
    return np.ascontiguousarray(np.rint(np.asarray(rgba)[:, :3] * 255), dtype=np.uint8)


def _suggest(name: str) -> str:
    import cmap

    close = difflib.get_close_matches(name, sorted(cmap.Catalog().short_keys()), n=4, cutoff=0.6)
    names = close or SUGGESTED
    return f"try {', '.join(names)} (any colormap name the cmap package knows)"


@functools.lru_cache(maxsize=64)
def rgb(color: str, what: str = "colour") -> tuple[int, int, int]:
    """An (r, g, b) byte triple from a colour name (``black``, ``magenta``) or hex (``#ff00ff``)."""
    if color.lower() in BASIC_COLORS:
        return BASIC_COLORS[color.lower()]
    if len(color) == 7 and color.startswith("#") and all(c in "0123456789abcdefABCDEF" for c in color[1:]):
        return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16))  # no cmap import for hex
    import cmap

    try:
        r, g, b, _ = cmap.Color(color).rgba8
    except (ValueError, TypeError) as e:
        raise UsageError(f"{what} {color!r} is no colour; use a name such as black or white, or hex like #202020") from e
    return (int(r), int(g), int(b))


#: Gutter colours to choose from: the one farthest from every colour a tile can take is used.
GUTTER_CANDIDATES = ((0, 0, 0), (255, 255, 255), (43, 76, 126))


def gutter(table: np.ndarray, rgb_tiles: bool) -> tuple[int, int, int]:
    """The default background: steel blue between gray tiles, white around viridis, black around
    RdBu; white between RGB tiles (they can take any colour; white is the rarest in a filter)."""
    if rgb_tiles:
        return (255, 255, 255)
    colours = table.astype(np.int32)

    def distance(candidate: tuple[int, int, int]) -> int:
        return int(((colours - np.array(candidate)) ** 2).sum(axis=1).min())

    return max(GUTTER_CANDIDATES, key=distance)


def colorize(unit: np.ndarray, table: np.ndarray, nan_rgb: tuple[int, int, int]) -> tuple[np.ndarray, int]:
    """(T, h, w, 3) uint8 pixels of (T, h, w, 1|3) display values, and how many were NaN.

    Values become bytes by rounding ``v * 255`` (so 0 -> 0, 0.5 -> 128, 1 -> 255); one channel goes
    through the colormap ``table``, three are RGB as they are. A pixel with any NaN channel is
    painted ``nan_rgb``.
    """
    nan = np.isnan(unit).any(axis=-1)
    scaled = np.nan_to_num(unit, nan=0.0) * np.float32(255) + np.float32(0.5)
    index = np.clip(scaled, 0, 255).astype(np.uint8)
    pixels = table[index[..., 0]] if unit.shape[-1] == 1 else index
    pixels[nan] = nan_rgb
    return pixels, int(np.count_nonzero(nan))
