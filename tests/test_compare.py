"""diff: A and B on one scale, the difference on a symmetric one, the most-changed filters outlined."""

from __future__ import annotations

import numpy as np

from filtergrid.api import grid_bank
from filtergrid.compare import _MARK, compare, shared_options, side_by_side
from filtergrid.renderer import RenderOptions, render_result


def _banks():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 1, 6, 6)).astype(np.float32)
    return grid_bank(a, "OIHW"), grid_bank(2 * a, "OIHW")


def test_a_and_twice_a_look_different_on_the_shared_scale():
    a, b = _banks()
    options = shared_options(a, b, RenderOptions(pad=0, scale=1))
    image_a = np.asarray(render_result(a, options).image).astype(int)
    image_b = np.asarray(render_result(b, options).image).astype(int)
    assert np.abs(image_b - 128).mean() > 1.5 * np.abs(image_a - 128).mean()
    # each panel on its own scale would hide it: per-filter pictures of A and 2A are equal
    alone = RenderOptions(pad=0, scale=1, normalize="per-filter")
    np.testing.assert_array_equal(np.asarray(render_result(a, alone).image), np.asarray(render_result(b, alone).image))


def test_the_range_is_taken_over_both_banks():
    a, b = _banks()
    low, high = shared_options(a, b, RenderOptions(normalize="symmetric")).value_range
    assert high == -low == float(np.abs(b.array).max())


def test_most_changed_filters_are_outlined_on_the_difference():
    a, b = _banks()
    marked = compare(a, b).most_changed(1)
    image = np.asarray(side_by_side(a, b, RenderOptions(), ("A", "B"), marked))
    assert (image == _MARK).all(axis=-1).sum() > 20
    unmarked = np.asarray(side_by_side(a, b, RenderOptions(), ("A", "B")))
    assert not (unmarked == _MARK).all(axis=-1).any()


def test_no_change_is_white_like_the_caption_says():
    a, _ = _banks()
    image = np.asarray(side_by_side(a, a, RenderOptions(pad=0), ("A", "A")))
    third = image[:, 2 * image.shape[1] // 3:]  # the difference panel (and its colour bar)
    whites = (third > 240).all(axis=-1).sum()
    assert whites > 6 * 6 * 4  # every tile of a zero difference is the map's white centre


def test_the_caption_names_the_colour_that_is_drawn_for_no_change():
    from filtergrid.compare import _difference_panel, difference

    a, b = _banks()
    assert "white = no change" in _difference_panel(difference(a, b), RenderOptions(), [])[1]
    rgb = grid_bank(np.ones((2, 3, 4, 4), np.float32), "OIHW")
    assert "gray = no change" in _difference_panel(difference(rgb, rgb), RenderOptions(), [])[1]
