"""Draw the documentation's normalization pictures from a synthetic first layer.

The bank imitates what a trained first conv layer holds: smooth oriented Gabor-like colour
filters of very different strengths, plus one dead filter (all zeros), one with NaN weights and one
with a single outlier weight, so the four normalization modes differ visibly.

    python docs/make_images.py      # writes docs/images/normalize-<mode>.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from filtergrid.api import grid_bank
from filtergrid.renderer import NORMALIZATIONS, RenderOptions, render_result, save

SIDE = 11
OUT = Path(__file__).parent / "images"


def gabor(theta: float, wavelength: float, phase: float, sigma: float) -> np.ndarray:
    """A (SIDE, SIDE) oriented stripe pattern under a Gaussian envelope."""
    y, x = np.mgrid[:SIDE, :SIDE] - (SIDE - 1) / 2
    along = x * np.cos(theta) + y * np.sin(theta)
    envelope = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return envelope * np.cos(2 * np.pi * along / wavelength + phase)


def synthetic_bank() -> np.ndarray:
    """(25, SIDE, SIDE, 3) float32: 22 Gabors, a dead filter, a NaN filter, an outlier filter."""
    rng = np.random.default_rng(7)
    filters = []
    for i in range(22):
        pattern = gabor(theta=i * np.pi / 8, wavelength=rng.uniform(3.5, 8), phase=rng.uniform(0, 2 * np.pi),
                        sigma=rng.uniform(2.2, 3.5))
        colour = rng.normal(size=3)
        colour = colour / np.linalg.norm(colour) if i % 3 else np.ones(3) / np.sqrt(3)  # every third is gray
        strength = 0.15 + 0.85 * (i % 5) / 4  # weak and strong filters side by side
        filters.append(strength * pattern[..., None] * colour + 0.01 * rng.normal(size=(SIDE, SIDE, 3)))
    dead = np.zeros((SIDE, SIDE, 3))
    broken = filters[3].copy()
    broken[4:7, 4:7] = np.nan
    spiky = filters[8].copy()
    spiky[5, 5] = 2.5  # one outlier weight, 2.5 times the strongest of the rest
    return np.stack([*filters[:11], dead, broken, *filters[11:], spiky]).astype(np.float32)


def main() -> None:
    bank = grid_bank(synthetic_bank(), "NHWC", name="synthetic gabor bank")
    OUT.mkdir(exist_ok=True)
    for mode in (m for m in NORMALIZATIONS if m != "none"):  # "none" is for values already in 0..1
        result = render_result(bank, RenderOptions(normalize=mode, scale=4, pad=2, background="#202020"))
        path = save(result, bank, OUT / f"normalize-{mode}.png")
        print(f"{path}: {result.image.size[0]}x{result.image.size[1]}, {path.stat().st_size:,} bytes, "
              f"{result.nan_pixels} NaN pixels, {result.constant_tiles} constant tiles")


if __name__ == "__main__":
    main()
