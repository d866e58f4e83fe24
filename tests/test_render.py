"""The renderer on hand-computed arrays: exact pixel values, geometry, limits and saving."""

from __future__ import annotations

import dataclasses
import os

import cmap
import numpy as np
import pytest
from PIL import Image

import filtergrid
from filtergrid import limits
from filtergrid.api import grid_bank
from filtergrid.bank import FilterBank, Provenance
from filtergrid.errors import FiltergridError, LimitError, UsageError
from filtergrid.renderer import colormaps
from filtergrid.renderer import CHANNEL_MODES, NORMALIZATIONS, RenderOptions, core, grid, render, render_result, save

#: The modes that compute a range from the weights ("none" takes them as display values).
SCALING = [mode for mode in NORMALIZATIONS if mode != "none"]

MAGENTA = [255, 0, 255]


def bank_of(array, kind: str = "filters", source: str = "model.onnx") -> FilterBank:
    """A bank from a canonical (N, H, W, C) array."""
    a = np.asarray(array, dtype=np.float32)
    prov = Provenance(source, "onnx", "conv1.weight", (a.shape[0], a.shape[3], a.shape[1], a.shape[2]),
                      "float32", "OIHW", "weight of the first Conv node")
    return FilterBank(a, prov, kind)


def rows_of(values) -> np.ndarray:
    """Each list of numbers is one 1-pixel-high, one-channel filter."""
    return np.asarray(values, dtype=np.float32)[:, None, :, None]


def pixels(bank: FilterBank, **options) -> np.ndarray:
    """Unscaled, unpadded pixels, one filter per row of the image."""
    options = {"pad": 0, "scale": 1, "cols": 1, **options}
    return np.asarray(render(bank, **options))


def lut(name: str) -> np.ndarray:
    return np.rint(cmap.Colormap(name).lut(256)[:, :3] * 255).astype(np.uint8)


def gray(image: np.ndarray) -> np.ndarray:
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    return image[..., 0]


# --- normalization -----------------------------------------------------------------------------

def test_per_filter_stretches_each_filter_to_black_and_white():
    bank = bank_of(rows_of([[0, 1, 2], [10, 20, 30]]))
    np.testing.assert_array_equal(gray(pixels(bank, normalize="per-filter")), [[0, 128, 255], [0, 128, 255]])


def test_per_filter_uses_all_channels_of_a_filter():
    rgb = np.array([[[[0, 2, 4], [1, 1, 1]]]], dtype=np.float32)  # one 1x2 RGB filter
    np.testing.assert_array_equal(pixels(bank_of(rgb)), [[[0, 128, 255], [64, 64, 64]]])


def test_per_filter_is_the_default_for_filters():
    result = render_result(bank_of(rows_of([[0, 1]])), RenderOptions())
    assert result.options.normalize == "per-filter" and result.options.cmap is None


def test_global_uses_one_scale_for_the_bank():
    bank = bank_of(rows_of([[0, 1, 2], [2, 3, 4]]))
    np.testing.assert_array_equal(gray(pixels(bank, normalize="global")), [[0, 64, 128], [128, 191, 255]])


def test_symmetric_puts_zero_at_mid_gray():
    bank = bank_of(rows_of([[-2, 0, 1], [0.5, -1, 2]]))
    np.testing.assert_array_equal(gray(pixels(bank, normalize="symmetric")), [[0, 128, 191], [159, 64, 255]])


def test_symmetric_zero_stays_mid_gray_when_weights_are_one_sided():
    bank = bank_of(rows_of([[0, 1, 4]]))
    np.testing.assert_array_equal(gray(pixels(bank, normalize="symmetric")), [[128, 159, 255]])


def test_percentile_clips_outliers_to_the_1st_and_99th_percentile():
    values = np.arange(101, dtype=np.float32)
    values[100] = 1000.0  # one outlier; percentiles of [0..99, 1000] are 1 and 99
    assert tuple(np.percentile(values, (1, 99))) == (1.0, 99.0)
    out = gray(pixels(bank_of(rows_of([values])), normalize="percentile"))[0]
    assert out[0] == 0 and out[1] == 0       # below the 1st percentile: clipped to black
    assert out[50] == 128                    # (50 - 1) / (99 - 1) = 0.5
    assert out[99] == 255 and out[100] == 255  # the outlier no longer washes out the rest
    assert out[25] == round((25 - 1) / 98 * 255)


def test_global_would_be_washed_out_by_the_same_outlier():
    values = np.arange(101, dtype=np.float32)
    values[100] = 1000.0
    out = gray(pixels(bank_of(rows_of([values])), normalize="global"))[0]
    assert out[50] == 13  # 50 / 1000 * 255


@pytest.mark.parametrize("mode", SCALING)
def test_constant_filter_is_mid_gray_and_counted(mode):
    bank = bank_of(rows_of([[3, 3, 3], [0, 1, 2]]))
    result = render_result(bank, RenderOptions(normalize=mode, pad=0, scale=1, cols=1))
    image = gray(np.asarray(result.image))
    assert result.constant_tiles == 1
    if mode == "per-filter":
        np.testing.assert_array_equal(image[0], [128, 128, 128])
    assert len(set(image[0].tolist())) == 1  # flat, whatever its level in a bank-wide mode


def test_dead_filter_leftovers_are_not_blown_up_to_full_contrast():
    """musicnn's dead filters hold |w| ~ 1e-14 next to live ones ~ 0.5: per-filter scaling drew them as
    128 learned-looking patterns; they are flat and counted with the constant ones."""
    bank = bank_of(rows_of([[0, 0.25, 0.5], [0, 3e-14, -2e-14], [0, 1e-3, 2e-3]]))
    result = render_result(bank, RenderOptions(normalize="per-filter", pad=0, scale=1, cols=1))
    image = gray(np.asarray(result.image))
    np.testing.assert_array_equal(image[1], [128, 128, 128])
    np.testing.assert_array_equal(image[2], image[0])  # a faint live filter keeps its full contrast
    assert result.constant_tiles == 1


@pytest.mark.parametrize("mode", SCALING)
def test_all_constant_bank_is_mid_gray_in_every_mode(mode):
    result = render_result(bank_of(np.zeros((2, 3, 3, 1))), RenderOptions(normalize=mode, pad=0, scale=1))
    assert (np.asarray(result.image) == 128).all()
    assert result.constant_tiles == 2 and result.nan_pixels == 0


def test_weights_near_the_float32_limit_do_not_overflow():
    big = np.finfo(np.float32).max
    bank = bank_of(rows_of([[-big, 0, big]]))
    for mode in SCALING:
        result = render_result(bank, RenderOptions(normalize=mode, pad=0, scale=1))
        assert result.nan_pixels == 0
        np.testing.assert_array_equal(gray(np.asarray(result.image))[0], [0, 128, 255])


def test_none_shows_values_as_they_are_clipped_to_unit():
    out = gray(pixels(bank_of(rows_of([[-1, 0, 0.5, 1, 2]])), normalize="none"))[0]
    np.testing.assert_array_equal(out, [0, 0, 128, 255, 255])


def test_value_range_fixes_black_and_white_for_every_tile():
    result = render_result(bank_of(rows_of([[0, 1], [0, 4]])), RenderOptions(value_range=(0, 4), pad=0, scale=1, cols=1))
    np.testing.assert_array_equal(gray(np.asarray(result.image)), [[0, 64], [0, 255]])
    assert result.value_range == (0.0, 4.0)


# --- NaN and infinities ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", NORMALIZATIONS)
def test_nan_and_inf_are_excluded_painted_and_counted(mode):
    bank = bank_of(rows_of([[0, np.nan, 4, np.inf, -np.inf, 2]]))
    result = render_result(bank, RenderOptions(normalize=mode, pad=0, scale=1))
    image = np.asarray(result.image)[0]
    assert result.nan_pixels == 3
    for i in (1, 3, 4):
        assert image[i].tolist() == MAGENTA
    if mode in ("per-filter", "global", "percentile"):
        assert image[0].tolist() == [0, 0, 0] and image[2].tolist() == [255, 255, 255]
        assert image[5].tolist() == [128, 128, 128]


def test_nan_colour_is_configurable_and_counts_source_pixels_not_upscaled_ones():
    bank = bank_of(rows_of([[0, np.nan, 1]]))
    result = render_result(bank, RenderOptions(nan_color="#00ff00", scale=4, pad=0))
    image = np.asarray(result.image)
    assert result.nan_pixels == 1
    assert (image[:, 4:8] == [0, 255, 0]).all()


def test_one_nan_channel_paints_the_whole_rgb_pixel():
    rgb = np.array([[[[0, np.nan, 1], [1, 0, 0]]]], dtype=np.float32)
    result = render_result(bank_of(rgb), RenderOptions(pad=0, scale=1))
    assert result.nan_pixels == 1
    assert np.asarray(result.image)[0, 0].tolist() == MAGENTA


def test_filter_of_only_nan_is_not_called_constant():
    bank = bank_of(rows_of([[np.nan, np.nan], [0, 1]]))
    result = render_result(bank, RenderOptions(pad=0, scale=1, cols=1))
    assert result.nan_pixels == 2 and result.constant_tiles == 0


# --- colour ------------------------------------------------------------------------------------

def test_bgr_swaps_first_and_third_channel():
    rgb = np.array([[[[0, 0.5, 1]]]], dtype=np.float32)
    assert pixels(bank_of(rgb))[0, 0].tolist() == [0, 128, 255]
    assert pixels(bank_of(rgb), bgr=True)[0, 0].tolist() == [255, 128, 0]


def test_colormap_pixels_are_the_lut_entries():
    bank = bank_of(rows_of([[0, 1, 4]]))  # per-filter: 0, 0.25, 1 -> LUT indices 0, 64, 255
    image = pixels(bank, cmap="viridis")[0]
    table = lut("viridis")
    np.testing.assert_array_equal(image, table[[0, 64, 255]])
    assert not (image[..., 0] == image[..., 1]).all()  # really coloured


def test_matrix_defaults_to_percentile_so_outliers_do_not_wash_it_out():
    values = np.concatenate([np.linspace(-1, 1, 200), [50.0]]).astype(np.float32)  # one outlier weight
    matrix = bank_of(values.reshape(1, 1, -1, 1), kind="matrix")
    result = render_result(matrix, RenderOptions(pad=0, scale=1))
    assert result.options.normalize == "percentile" and result.options.cmap == "viridis"
    row = np.asarray(result.image)[0]
    table = lut("viridis")
    np.testing.assert_array_equal(row[-1], table[255])  # the outlier is clipped to the top colour
    np.testing.assert_array_equal(row[100], table[np.argmin(np.abs(table - row[100]).sum(axis=1))])
    assert len({tuple(p) for p in row[:200]}) > 100  # the ordinary weights keep their contrast


def test_one_d_kernels_become_rows_of_one_image():
    taps = np.arange(4 * 16, dtype=np.float32).reshape(4, 1, 16, 1)  # 4 filters of 1x16
    result = render_result(bank_of(taps), RenderOptions(pad=0, scale=1))
    assert result.arrangement == "rows" and result.tiles == 4
    assert result.image.size == (16, 8)  # each row doubled: half as tall as wide
    image = np.asarray(result.image)
    assert (image[:, 0] == 0).all() and (image[:, -1] == 255).all()  # each filter normalized on its own
    np.testing.assert_array_equal(image[0::2], image[1::2])
    column = np.transpose(taps, (0, 2, 1, 3))  # 4 filters of 16x1: drawn the same way
    assert render_result(bank_of(column), RenderOptions(pad=0, scale=1)).image.size == (16, 8)


def test_one_d_kernels_with_many_channels_become_channel_by_tap_tiles():
    taps = np.random.default_rng(0).normal(size=(6, 1, 3, 10)).astype(np.float32)
    result = render_result(bank_of(taps), RenderOptions(pad=0, scale=1))
    assert result.tiles == 6 and (result.image.size[0] % 3, result.image.size[1] % 10) == (0, 0)
    assert result.arrangement == "tiles"


def test_two_one_d_filters_are_rows_and_a_nan_tap_is_one_nan_pixel_as_high_as_the_row():
    taps = np.arange(2 * 16, dtype=np.float32).reshape(2, 1, 16, 1)
    taps[0, 0, 3, 0] = np.nan
    result = render_result(bank_of(taps), RenderOptions(pad=0, scale=1))
    assert result.arrangement == "rows" and result.image.size == (16, 8)  # rows of 4 px: half as tall as wide
    image = np.asarray(result.image)
    assert (image[:4, 3] == MAGENTA).all() and not (image[4:] == MAGENTA).all(axis=-1).any()
    assert result.nan_pixels == 1  # one weight, however tall its row is drawn


def test_colormap_does_not_touch_rgb_tiles():
    rgb = np.array([[[[0, 0.5, 1]]]], dtype=np.float32)
    assert pixels(bank_of(rgb), cmap="viridis")[0, 0].tolist() == [0, 128, 255]


# --- channels ----------------------------------------------------------------------------------

def _five_channel_bank() -> FilterBank:
    """Two 2x2 filters of 5 channels; channel k of filter n is the constant k (plus 10 n)."""
    a = np.zeros((2, 2, 2, 5), dtype=np.float32)
    a[...] = np.arange(5, dtype=np.float32)
    a[1] += 10
    return bank_of(a)


def test_split_draws_one_row_per_filter_one_tile_per_channel():
    result = render_result(_five_channel_bank(), RenderOptions(pad=1, scale=1, background="black"))
    assert (result.rows, result.cols, result.tiles) == (2, 5, 10)
    image = gray(np.asarray(result.image))
    assert image.shape == (2 * 3 + 1, 5 * 3 + 1)
    expected = [0, 64, 128, 191, 255]  # per filter, over all its channels: k / 4
    for row in range(2):
        for k in range(5):
            tile = image[1 + 3 * row: 3 + 3 * row, 1 + 3 * k: 3 + 3 * k]
            assert (tile == expected[k]).all(), (row, k)


def test_split_refuses_an_explicit_cols():
    with pytest.raises(UsageError, match="split .*; use channels mean or first3$"):
        render(_five_channel_bank(), cols=3)


def test_mean_draws_one_gray_tile_per_filter():
    a = np.zeros((1, 1, 2, 4), dtype=np.float32)
    a[0, 0, 0] = [0, 0, 0, 4]  # mean 1
    a[0, 0, 1] = [4, 4, 4, 8]  # mean 5
    result = render_result(bank_of(np.concatenate([a, a + 1], axis=2)), RenderOptions(channels="mean", pad=0, scale=1))
    assert result.tiles == 1
    # means 1, 5, 2, 6 stretched over [1, 6]
    np.testing.assert_array_equal(gray(np.asarray(result.image))[0], [0, 204, 51, 255])


def test_first3_shows_the_first_three_channels_as_rgb():
    a = np.array([[[[0, 0.5, 1, 99, -99]]]], dtype=np.float32)
    result = render_result(bank_of(a), RenderOptions(channels="first3", pad=0, scale=1))
    assert np.asarray(result.image)[0, 0].tolist() == [0, 128, 255]
    result = render_result(bank_of(a), RenderOptions(channels="first3", bgr=True, pad=0, scale=1))
    assert np.asarray(result.image)[0, 0].tolist() == [255, 128, 0]


def test_first3_needs_three_channels():
    with pytest.raises(UsageError, match="first3"):
        render(bank_of(np.zeros((1, 2, 2, 2))), channels="first3")


@pytest.mark.parametrize("mode", CHANNEL_MODES)
def test_gray_and_rgb_filters_ignore_the_channel_mode(mode):
    rgb = np.array([[[[0, 0.5, 1]]]], dtype=np.float32)
    assert pixels(bank_of(rgb), channels=mode)[0, 0].tolist() == [0, 128, 255]


# --- geometry ----------------------------------------------------------------------------------

def test_image_size_follows_cols_pad_and_scale():
    bank = bank_of(np.random.default_rng(0).normal(size=(10, 3, 5, 1)))
    result = render_result(bank, RenderOptions(cols=4, pad=2, scale=3, background="white"))
    assert (result.cols, result.rows, result.scale) == (4, 3, 3)
    image = np.asarray(result.image)
    assert image.shape == (3 * (3 * 3 + 2) + 2, 4 * (5 * 3 + 2) + 2, 3)  # rows*(H*s+pad)+pad, cols*(W*s+pad)+pad
    assert (image[:2] == 255).all() and (image[:, :2] == 255).all()     # outer border
    assert (image[:, 17:19] == 255).all()                                # gap between columns
    empty_slot = image[2 + 2 * 11: 2 + 2 * 11 + 9, 2 + 2 * 17:]          # tiles 11 and 12 do not exist
    assert (empty_slot == 255).all()


def test_nearest_neighbour_upscaling_repeats_each_pixel():
    bank = bank_of(rows_of([[0, 1]]))
    image = gray(np.asarray(render(bank, scale=3, pad=0)))
    np.testing.assert_array_equal(image, np.repeat(np.repeat([[0, 255]], 3, axis=0), 3, axis=1))


def test_default_cols_are_near_square():
    result = render_result(bank_of(np.ones((64, 5, 5, 3))), RenderOptions())
    assert (result.cols, result.rows) == (8, 8)
    result = render_result(bank_of(np.ones((10, 5, 5, 3))), RenderOptions())
    assert (result.cols, result.rows) == (4, 3)


def test_cols_beyond_the_tile_count_are_not_drawn_empty():
    assert render_result(bank_of(np.ones((3, 2, 2, 1))), RenderOptions(cols=50)).cols == 3


@pytest.mark.parametrize(("side", "scale"), [(3, 22), (5, 13), (7, 10), (11, 6), (16, 4), (32, 2), (224, 1)])
def test_small_kernels_are_scaled_up_to_viewable_tiles(side, scale):
    result = render_result(bank_of(np.ones((4, side, side, 3))), RenderOptions(pad=1))
    assert result.scale == scale
    assert 64 <= side * scale <= 96 or scale == 1
    assert result.image.size == (2 * (side * scale + 1) + 1,) * 2


def test_explicit_scale_over_the_pixel_cap_is_refused_before_allocating(monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("work started before the size was checked")

    monkeypatch.setattr(limits, "MAX_OUTPUT_PIXELS", 10_000)
    monkeypatch.setattr(core.channels, "select", must_not_run)
    monkeypatch.setattr(core, "normalize", must_not_run)
    monkeypatch.setattr(grid, "paste", must_not_run)
    with pytest.raises(LimitError, match=r"(?=.*pixels)(?=.*--scale)(?=.*FILTERGRID_MAX_OUTPUT_PIXELS)"):
        render(bank_of(np.ones((64, 3, 3, 3))), scale=11)


def test_automatic_scale_shrinks_to_fit_the_cap(monkeypatch):
    bank = bank_of(np.ones((64, 3, 3, 3)))
    assert render_result(bank, RenderOptions()).scale == 22  # 8 * 67 + 1 = 537 px square
    monkeypatch.setattr(limits, "MAX_OUTPUT_PIXELS", 200 * 200)
    result = render_result(bank, RenderOptions())
    assert result.scale == 7  # 8 * 22 + 1 = 177; scale 8 would give 201
    assert result.image.size[0] * result.image.size[1] <= 200 * 200


def test_automatic_scale_errors_only_when_scale_1_does_not_fit(monkeypatch):
    monkeypatch.setattr(limits, "MAX_OUTPUT_PIXELS", 100)
    with pytest.raises(LimitError, match="scale 1"):
        render(bank_of(np.ones((64, 3, 3, 3))))


def test_a_vast_bank_is_refused_without_allocating_the_image(monkeypatch):
    monkeypatch.setattr(limits, "MAX_OUTPUT_PIXELS", 1_000_000)
    wide = np.broadcast_to(np.float32(0), (1, 1, 2_000_000, 1))  # 2 Mpx in one tile, no real memory
    bank = FilterBank.__new__(FilterBank)
    object.__setattr__(bank, "array", wide)
    object.__setattr__(bank, "provenance", bank_of(np.ones((1, 1, 1, 1))).provenance)
    object.__setattr__(bank, "kind", "filters")
    with pytest.raises(LimitError):
        render(bank)


def test_a_large_bank_renders_in_one_vectorized_pass():
    bank = grid_bank(np.random.default_rng(0).normal(size=(4096, 3, 16, 16)).astype(np.float32), "OIHW")
    result = render_result(bank, RenderOptions(max_filters=4096, scale=4, pad=1))
    assert (result.cols, result.rows, result.scale) == (64, 64, 4)
    assert result.image.size == (64 * 65 + 1, 64 * 65 + 1)


# --- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    ({"normalize": "minmax"}, "per-filter, global, symmetric, percentile"),
    ({"cols": 0}, "cols"),
    ({"cols": True}, "cols"),
    ({"scale": 0}, "scale"),
    ({"pad": -1}, "pad"),
    ({"channels": "rgb"}, "split, mean, first3"),
    ({"cmap": "viridiss"}, "viridis"),
    ({"cmap": "no-such-map-at-all"}, "gray, viridis"),
    ({"background": "blurple"}, "background"),
    ({"nan_color": "#12"}, "nan colour"),
    ({"colour": "red"}, "unknown render option 'colour'; choose from background, bgr, channels, cmap, "),
])
def test_bad_options_are_one_line_usage_errors(options, message):
    with pytest.raises(UsageError, match=message) as info:
        render(bank_of(np.ones((1, 2, 2, 1))), **options)
    assert "\n" not in str(info.value)


def test_empty_bank_is_a_usage_error():
    with pytest.raises(UsageError, match="nothing to draw"):
        render(bank_of(np.ones((0, 3, 3, 1))))


def test_package_level_render_and_grid_use_this_renderer():
    a = np.array([[[[0.0, 1.0]]]], dtype=np.float32)  # OIHW (1, 1, 1, 2)
    image = filtergrid.grid(a, "OIHW", pad=0, scale=1)
    np.testing.assert_array_equal(gray(np.asarray(image)), [[0, 255]])
    # the renderer package (filtergrid.renderer) and the public verb filtergrid.render are distinct names
    assert callable(filtergrid.render)
    assert filtergrid.render(bank_of(rows_of([[0, 1]])), pad=0, scale=1).size == (2, 1)


def test_renderer_modules_import_by_their_dotted_names():
    import importlib

    for name in ("options", "core", "grid", "normalize", "output", "colormaps", "channels", "slides", "annotate"):
        assert importlib.import_module(f"filtergrid.renderer.{name}").__name__ == f"filtergrid.renderer.{name}"
    import filtergrid.renderer.options as o  # the import the old name clash broke

    assert o.RenderOptions is filtergrid.renderer.RenderOptions


# --- saving ------------------------------------------------------------------------------------

def _result_and_bank(source: str = "model.onnx"):
    bank = bank_of(np.random.default_rng(1).normal(size=(4, 3, 3, 3)), source=source)
    return render_result(bank, RenderOptions(normalize="symmetric")), bank


def test_png_records_provenance_in_text_chunks(tmp_path):
    result, bank = _result_and_bank()
    path = save(result, bank, tmp_path / "grid.png")
    with Image.open(path) as im:
        text = dict(im.text)
        assert im.format == "PNG" and im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), np.asarray(result.image))
    assert text["source"] == "model.onnx" and text["format"] == "onnx"
    assert text["tensor"] == "conv1.weight" and text["original_shape"] == "4x3x3x3"
    assert text["dtype"] == "float32" and text["layout"] == "OIHW"
    assert text["chosen_by"] == "weight of the first Conv node"
    assert text["normalization"] == "symmetric"
    assert text["filtergrid_version"] == filtergrid.__version__
    assert text["Software"] == f"filtergrid {filtergrid.__version__}"
    assert text["channels"] == "split" and text["scale"] == str(result.scale) and text["cmap"] == "none (RGB tiles)"
    assert "notes" not in text


def test_png_text_names_the_gray_ramp_and_joins_notes(tmp_path):
    bank = bank_of(np.random.default_rng(0).normal(size=(2, 3, 3, 1)))
    result = render_result(bank, RenderOptions(scale=1, pad=0))
    assert Image.open(save(result, bank, tmp_path / "g.png")).text["cmap"] == "gray"
    noted = dataclasses.replace(result, notes=("first", "second"))
    assert Image.open(save(noted, bank, tmp_path / "n.png")).text["notes"] == "first; second"


def test_an_unknown_colormap_suggests_the_four_closest_names():
    with pytest.raises(UsageError, match=r"unknown colormap 'Bluez'; try Blues, (\w+, ){2}\w+ \(any colormap"):
        colormaps.lut("Bluez")


def test_png_text_survives_a_non_latin_source_path(tmp_path):
    result, bank = _result_and_bank(source="модели/模型.onnx")
    with Image.open(save(result, bank, tmp_path / "grid.png")) as im:
        assert im.text["source"] == "модели/模型.onnx"


@pytest.mark.parametrize(("name", "fmt"), [("g.jpg", "JPEG"), ("g.JPEG", "JPEG"), ("g.webp", "WEBP"),
                                           ("g.bmp", "BMP"), ("g.tif", "TIFF")])
def test_other_formats_follow_the_suffix(tmp_path, name, fmt):
    result, bank = _result_and_bank()
    with Image.open(save(result, bank, tmp_path / name)) as im:
        assert im.format == fmt and im.size == result.image.size
        if fmt != "JPEG":  # lossless: the exact pixels
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), np.asarray(result.image))


@pytest.mark.parametrize("name", ["grid.xyz", "grid", "grid.npy", "grid.fits"])  # FITS: Pillow reads, never writes
def test_unknown_suffix_is_a_usage_error(tmp_path, name):
    result, bank = _result_and_bank()
    with pytest.raises(UsageError, match=r"end the name in \.png, \.svg, \.pdf, \.jpg, \.webp or another suffix Pillow writes$"):
        save(result, bank, tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_save_leaves_no_temporary_file(tmp_path):
    result, bank = _result_and_bank()
    save(result, bank, tmp_path / "grid.png")
    save(result, bank, tmp_path / "grid.png")  # overwrite
    assert os.listdir(tmp_path) == ["grid.png"]


def test_a_failing_writer_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    result, bank = _result_and_bank()
    (tmp_path / "old.png").write_bytes(b"previous picture")

    def broken(self, fp, *args, **kwargs):
        fp.write(b"half a picture")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(FiltergridError, match="disk full"):
        save(result, bank, tmp_path / "new.png")
    with pytest.raises(FiltergridError):
        save(result, bank, tmp_path / "old.png")
    assert sorted(os.listdir(tmp_path)) == ["old.png"]
    assert (tmp_path / "old.png").read_bytes() == b"previous picture"


def test_a_lone_heatmap_is_enlarged_to_a_readable_size():
    result = render_result(bank_of(np.ones((1, 64, 32, 1))), RenderOptions(pad=1))
    assert result.scale == 8 and result.image.size == (32 * 8 + 2, 64 * 8 + 2)


# --- words around the grid: title, labels, colour bar; gutter; max filters -----------------------

def test_gutter_is_the_colour_least_like_any_tile():
    assert colormaps.gutter(colormaps.lut(None), rgb_tiles=False) == (43, 76, 126)  # steel blue beside grays
    assert colormaps.gutter(colormaps.lut("viridis"), rgb_tiles=False) == (255, 255, 255)
    assert colormaps.gutter(colormaps.lut("RdBu_r"), rgb_tiles=False) == (0, 0, 0)


def test_enlarged_small_kernels_get_a_wider_gutter():
    result = render_result(bank_of(np.random.default_rng(0).normal(size=(4, 3, 3, 1))), RenderOptions())
    assert result.scale > 1 and result.geometry.pad >= 2
    gutter = np.asarray(result.image)[0, 0]
    assert gutter.tolist() == [43, 76, 126] and result.options.background == "#2b4c7e"


def test_max_filters_draws_the_first_n_and_says_so():
    bank = bank_of(np.random.default_rng(0).normal(size=(20, 2, 2, 1)))
    result = render_result(bank, RenderOptions(max_filters=6, pad=0, scale=1, cols=6))
    assert (result.filters, result.total_filters, result.tiles) == (6, 20, 6)
    assert result.image.size == (12, 2)


def test_a_huge_dense_layer_is_capped_by_default():
    bank = bank_of(np.zeros((5000, 2, 2, 1), np.float32))
    assert render_result(bank, RenderOptions()).filters == 1024


def test_labels_title_and_colorbar_surround_the_tiles_without_covering_them():
    bank = bank_of(np.random.default_rng(0).normal(size=(4, 3, 3, 1)))
    plain = render_result(bank, RenderOptions(normalize="symmetric", cmap="RdBu_r"))
    dressed = render_result(bank, RenderOptions(normalize="symmetric", cmap="RdBu_r", labels=True,
                                                title="model.onnx · conv1.weight", colorbar=True))
    assert dressed.image.width > plain.image.width and dressed.image.height > plain.image.height
    # every tile's pixels are still there, moved down by the title band and one label band
    from filtergrid.renderer import annotate

    top = annotate.TITLE_BAND + annotate.LABEL_BAND
    g = plain.geometry
    tile = np.asarray(plain.image)[g.pad: g.pad + 3 * g.scale, g.pad: g.pad + 3 * g.scale]
    moved = np.asarray(dressed.image)[top + g.pad: top + g.pad + 3 * g.scale, g.pad: g.pad + 3 * g.scale]
    np.testing.assert_array_equal(tile, moved)
    assert dressed.value_range is not None and dressed.value_range[0] == -dressed.value_range[1]


def test_colorbar_ticks_name_the_range_and_zero():
    from filtergrid.renderer.annotate import _ticks

    bank = bank_of(rows_of([[-2, 0, 2]]))
    result = render_result(bank, RenderOptions(normalize="symmetric", pad=0, scale=1))
    assert [label for _, label in _ticks(result)] == ["2", "0", "-2"]
    per_filter = render_result(bank, RenderOptions(pad=0, scale=1))
    assert [label for _, label in _ticks(per_filter)] == ["max", "per filter", "min"]


def test_one_d_kernels_are_separated_by_a_line():
    taps = np.random.default_rng(0).normal(size=(6, 1, 40, 1)).astype(np.float32)
    result = render_result(bank_of(taps), RenderOptions(background="red"))
    image = np.asarray(result.image)
    rows_of_red = [y for y in range(image.shape[0]) if (image[y] == [255, 0, 0]).all()]
    assert len(rows_of_red) == 7  # above, between and below 6 strips


def test_symmetric_range_is_the_largest_magnitude_of_either_sign():
    from filtergrid.renderer.normalize import normalize

    weights = np.array([-3.0, 0.0, 1.0], np.float32).reshape(1, 1, 3, 1)
    assert normalize(weights, "symmetric").value_range == (-3.0, 3.0)
    np.testing.assert_allclose(normalize(weights, "symmetric").unit.ravel(), [0.0, 0.5, 4 / 6])
    assert normalize(weights * np.float32(0.1), "symmetric").value_range == pytest.approx((-0.3, 0.3))
    # all zero: no magnitude to scale by; the drawn range is -1..1 and every pixel mid-gray
    zeros = normalize(np.zeros((1, 2, 2, 1), np.float32), "symmetric")
    assert zeros.value_range == (-1.0, 1.0) and np.all(zeros.unit == 0.5)


def test_percentile_of_a_bank_without_finite_weights_is_all_nan():
    from filtergrid.renderer.normalize import normalize

    out = normalize(np.full((2, 2, 2, 1), np.nan, np.float32), "percentile")
    assert out.value_range == (0.0, 0.0) and np.isnan(out.unit).all()
    with pytest.raises(ValueError, match="unknown normalization 'loud'"):
        normalize(np.ones((1, 2, 2, 1), np.float32), "loud")


@pytest.mark.parametrize("tile_px,scale,pad", [(32, 1, 1), (66, 22, 2), (64, 2, 2), (128, 2, 4), (256, 4, 8),
                                               (320, 10, 8)])
def test_auto_pad_is_one_pixel_unscaled_then_a_32nd_of_the_tile_within_2_to_8(tile_px, scale, pad):
    assert grid.auto_pad(tile_px, scale) == pad


# --- gaps the mutation run found ----------------------------------------------------------------

def test_bgr_swaps_only_the_first_three_channels():
    from filtergrid.renderer.channels import select

    a = np.arange(5, dtype=np.float32).reshape(1, 1, 1, 5)
    np.testing.assert_array_equal(select(a, "split", bgr=True)[0, 0, 0], [2, 1, 0, 3, 4])


def test_mean_of_two_channels_is_their_average():
    from filtergrid.renderer.channels import select

    a = np.array([[[[1.0, 3.0]]]], dtype=np.float32)
    np.testing.assert_array_equal(select(a, "mean", bgr=False), [[[[2.0]]]])


def test_values_outside_a_given_range_are_clipped_to_its_ends():
    out = gray(pixels(bank_of(rows_of([[-5, 0, 1, 2, 9]])), value_range=(0, 2)))[0]
    np.testing.assert_array_equal(out, [0, 0, 128, 255, 255])


def test_a_colormap_on_rgb_tiles_is_reported_not_recorded(tmp_path):
    bank = bank_of(np.random.default_rng(0).normal(size=(2, 3, 3, 3)))
    result = render_result(bank, RenderOptions(cmap="viridis", scale=1, pad=0))
    assert result.options.cmap is None and "not applied: the tiles are RGB" in result.notes[0]
    text = Image.open(save(result, bank, tmp_path / "g.png")).text
    assert text["cmap"] == "none (RGB tiles)" and "viridis" in text["notes"]


# --- annotate: the geometry and placement of the words, not the glyphs ----------------------------

def _ink_rows(region: np.ndarray, background) -> list[int]:
    return [y for y in range(region.shape[0]) if (region[y] != background).any()]


def test_ink_is_dark_on_light_and_light_on_dark_at_luminance_140():
    from filtergrid.renderer.annotate import ink_for

    assert ink_for((0, 0, 0)) == (235, 235, 235) and ink_for((255, 255, 255)) == (20, 20, 20)
    assert ink_for((140, 140, 140)) == (235, 235, 235) and ink_for((141, 141, 141)) == (20, 20, 20)
    assert ink_for((0, 255, 0)) == (20, 20, 20) and ink_for((255, 0, 0)) == (235, 235, 235)  # green counts most


def test_fit_text_keeps_the_longest_end_that_fits_after_an_ellipsis():
    from PIL import ImageDraw

    from filtergrid.renderer.annotate import _font, fit_text

    draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), _font()
    path = "/models/some/deep/folder/conv1.weight"
    assert fit_text(draw, path, font, 1000) == path and fit_text(draw, "abc", font, 1) == "abc"
    width = int(draw.textlength("…conv1.weight", font=font))
    cut = fit_text(draw, path, font, width)
    assert cut == "…conv1.weight"  # one character more would not fit
    assert draw.textlength("…" + path[-(len(cut)):], font=font) > width


def test_colorbar_ticks_sit_at_the_ends_and_at_zero_only_away_from_them():
    from filtergrid.renderer.annotate import _ticks

    bank = bank_of(rows_of([[-2, 0, 2]]))
    result = render_result(bank, RenderOptions(normalize="symmetric", pad=0, scale=1))
    assert _ticks(result) == [(1.0, "2"), (0.5, "0"), (0.0, "-2")]
    assert _ticks(render_result(bank, RenderOptions(pad=0, scale=1))) == [(1.0, "max"), (0.5, "per filter"), (0.0, "min")]
    for low, high, zero_shown in [(-12, 88, False), (-13, 87, True), (-88, 12, False), (-87, 13, True)]:
        fixed = render_result(bank, RenderOptions(value_range=(low, high), pad=0, scale=1))
        assert [label for _, label in _ticks(fixed)] == ([str(high), "0", str(low)] if zero_shown else [str(high), str(low)])


def test_split_labels_put_filter_indices_left_of_rows_and_channel_indices_above_columns():
    from PIL import ImageDraw

    from filtergrid.renderer import annotate

    bank = bank_of(np.random.default_rng(0).normal(size=(12, 3, 3, 4)))
    options = dict(channels="split", colorbar=False, background="black", scale=4, pad=2)
    plain = render_result(bank, RenderOptions(**options))
    labelled = render_result(bank, RenderOptions(labels=True, **options))
    margin = int(ImageDraw.Draw(plain.image).textlength("11", font=annotate._font())) + 8
    top = annotate.LABEL_BAND
    assert labelled.image.size == (plain.image.width + margin, plain.image.height + top)
    image = np.asarray(labelled.image)
    np.testing.assert_array_equal(image[top:, margin:], np.asarray(plain.image))  # tiles untouched
    g = plain.geometry
    cell_h, cell_w = g.tile_h * g.scale + g.pad, g.tile_w * g.scale + g.pad
    black = [0, 0, 0]
    # one index per row (cell_h 14 >= FONT_PX + 2), centred on the row, right-aligned 4 px from the tiles
    left = image[:, : margin]
    centres = [top + g.pad + r * cell_h + (cell_h - g.pad) // 2 for r in range(g.rows)]
    ink = _ink_rows(left, black)
    assert all(min(abs(y - c) for c in centres) <= annotate.FONT_PX // 2 + 1 for y in ink)
    assert all(any(abs(y - c) <= 2 for y in ink) for c in centres)
    assert not (left[:, margin - 2:] != black).any()  # right-aligned 4 px from the tiles (1 px of antialiasing)
    # c0..c3 above the columns, each starting at its column
    band = image[:top, margin:]
    for c in range(4):
        columns = band[:, c * cell_w + g.pad: c * cell_w + g.pad + 8]
        assert (columns != black).any(), f"no channel index above column {c}"
    assert not (band[:, : g.pad] != black).any()


def test_thin_rows_are_labelled_every_few_rows_so_labels_never_overlap():
    from filtergrid.renderer import annotate

    taps = np.random.default_rng(0).normal(size=(40, 1, 30, 1)).astype(np.float32)
    options = dict(colorbar=False, background="black", scale=1)
    plain = render_result(bank_of(taps), RenderOptions(**options))
    labelled = render_result(bank_of(taps), RenderOptions(labels=True, **options))
    assert plain.arrangement == "rows" and labelled.image.height == plain.image.height
    g = plain.geometry
    cell_h = g.tile_h * g.scale + g.pad
    step = -(-(annotate.FONT_PX + 2) // cell_h)
    assert step > 1
    margin = labelled.image.width - plain.image.width
    np.testing.assert_array_equal(np.asarray(labelled.image)[:, margin:], np.asarray(plain.image))
    ink = _ink_rows(np.asarray(labelled.image)[:, :margin], [0, 0, 0])
    centres = [g.pad + r * cell_h + (cell_h - g.pad) // 2 for r in range(0, g.rows, step)]
    assert ink and all(min(abs(y - c) for c in centres) <= annotate.FONT_PX // 2 + 1 for y in ink)
    assert all(any(abs(y - c) <= 2 for y in ink) for c in centres)


def test_a_write_error_without_words_is_named_by_its_type(tmp_path, monkeypatch):
    from filtergrid.renderer import output as save_module

    def refuse(path, write):
        raise OSError()

    monkeypatch.setattr(save_module, "atomic_write", refuse)
    result, bank = _result_and_bank()
    with pytest.raises(FiltergridError, match=r"cannot write PNG image .*grid.png: OSError$"):
        save(result, bank, tmp_path / "grid.png")


def test_near_square_columns_for_one_tile_and_for_wide_strips_is_one():
    assert grid.near_square_cols(1, 3, 3) == 1 and grid.near_square_cols(4, 1, 100) == 1
    assert grid.near_square_cols(64, 3, 3) == 8 and grid.near_square_cols(10, 4, 1) == 7


def test_channel_mean_is_float32_and_does_not_overflow_near_the_float32_limit():
    from filtergrid.renderer import channels

    big = np.full((1, 1, 1, 4), 3e38, np.float32)
    mean = channels.select(big, "mean", bgr=False)
    assert mean.dtype == np.float32 and mean.shape == (1, 1, 1, 1) and mean[0, 0, 0, 0] == np.float32(3e38)


def test_one_d_kernels_are_scaled_like_one_lone_image_of_all_strips():
    """Six 40-tap strips (4 px rows each) in one column, enlarged until the stack is 512 px wide."""
    result = render_result(bank_of(np.random.default_rng(0).normal(size=(6, 1, 40, 1))), RenderOptions())
    assert result.arrangement == "rows" and (result.cols, result.rows) == (1, 6)
    assert result.scale == 13 and result.geometry.tile_h == 4 and result.geometry.pad == 1


def test_automatic_gutter_is_one_pixel_unscaled_and_grows_with_the_enlarged_tile():
    big = render_result(bank_of(np.zeros((4, 64, 64, 1))), RenderOptions())
    assert big.scale == 1 and big.geometry.pad == 1
    lone = render_result(bank_of(np.zeros((1, 3, 3, 1))), RenderOptions())
    assert lone.scale == 171 and lone.geometry.pad == 8  # 513 px tile -> the widest gutter


def test_an_automatic_scale_shrinks_down_to_1_to_meet_the_pixel_target(monkeypatch):
    monkeypatch.setattr(grid, "TARGET_OUTPUT_PIXELS", 100)
    assert render_result(bank_of(np.zeros((4, 3, 3, 1))), RenderOptions()).scale == 1


def test_pixel_target_and_limit_boundaries_and_how_each_refusal_says_to_fix_it(monkeypatch):
    """Four 3x3 tiles in 2 columns with a 2 px gutter: 12x12 px at scale 1, 18x18 at scale 2."""
    bank = bank_of(np.zeros((4, 3, 3, 1)))
    monkeypatch.setattr(grid, "TARGET_OUTPUT_PIXELS", 18 * 18)
    assert render_result(bank, RenderOptions()).scale == 2  # exactly at the target: no further shrinking
    monkeypatch.setattr(limits, "MAX_OUTPUT_PIXELS", 12 * 12)
    assert render_result(bank, RenderOptions(scale=1, pad=2)).image.size == (12, 12)  # exactly at the limit
    with pytest.raises(LimitError, match=r"18x18 pixels \(lower --scale or pad, change --cols\) \(324\) is over"):
        render(bank, scale=2, pad=2)
    monkeypatch.setattr(limits, "MAX_OUTPUT_PIXELS", 100)
    with pytest.raises(LimitError, match=r"12x12 pixels \(even at scale 1; lower --max-filters\) \(144\) is over"):
        render(bank)


def test_a_column_of_two_weights_is_drawn_as_a_row_and_single_weights_as_tiles():
    assert render_result(bank_of(np.zeros((3, 2, 1, 1))), RenderOptions()).arrangement == "rows"
    assert render_result(bank_of(np.zeros((4, 1, 1, 1))), RenderOptions()).arrangement == "tiles"


def test_rgb_tiles_get_a_white_gutter_and_the_result_records_the_options_it_used():
    result = render_result(bank_of(np.random.default_rng(0).normal(size=(4, 3, 3, 3))), RenderOptions())
    assert result.options.background == "#ffffff" and (np.asarray(result.image)[0, 0] == 255).all()
    assert result.options.pad == result.geometry.pad == 2 and result.notes == ()


@pytest.mark.parametrize("option", ["background", "nan_color"])
def test_a_colour_that_is_none_is_refused_naming_its_option(option):
    what = {"background": "background", "nan_color": "nan colour"}[option]
    with pytest.raises(UsageError, match=f"^{what} 'nocolour' is no colour; use a name such as black"):
        render(bank_of(np.zeros((2, 3, 3, 1))), **{option: "nocolour"})


def test_a_filter_without_finite_weights_takes_no_part_in_any_range():
    nan = [np.nan] * 3
    shifted = render_result(bank_of(rows_of([nan, [5, 6, 7]])), RenderOptions(normalize="global", pad=0, scale=1))
    assert shifted.value_range == (5.0, 7.0)  # not stretched down to 0 by the filter without weights
    np.testing.assert_array_equal(gray(np.asarray(shifted.image)[1]), [0, 128, 255])
    tiny = bank_of(rows_of([nan, [0, 1e-7, 2e-7]]))  # small weights, but the largest there are: contrast
    np.testing.assert_array_equal(gray(pixels(tiny, normalize="per-filter")[1]), [0, 128, 255])
    dead = bank_of(rows_of([nan, [0, 1e-9, 2e-9], [0, 1, 2]]))  # next to weights of 2: a dead filter
    result = render_result(dead, RenderOptions(normalize="per-filter", pad=0, scale=1, cols=1))
    assert result.constant_tiles == 1 and (gray(np.asarray(result.image)[1]) == 128).all()


def _count(image, rgb) -> int:
    return int((np.asarray(image) == rgb).all(axis=-1).sum())


def test_a_colour_bar_where_it_helps_or_alone_in_the_tiles_colours():
    gray_bank = bank_of(np.random.default_rng(0).normal(size=(4, 3, 3, 1)))
    rgb_bank = bank_of(np.random.default_rng(0).normal(size=(4, 3, 3, 3)))
    yellow = lut("viridis")[255].tolist()

    def pair(bank, **options):
        plain = render_result(bank, RenderOptions(**{**options, "colorbar": False}))
        return plain, render_result(bank, RenderOptions(**options))

    for bank, options in ((gray_bank, {"colorbar": True}), (gray_bank, {"colorbar": None}),
                          (rgb_bank, {"colorbar": None, "normalize": "symmetric"})):
        plain, barred = pair(bank, **options)  # asked for, or by default: one channel, or symmetric
        assert barred.image.width > plain.image.width and barred.options.colorbar is True
    plain, unbarred = pair(rgb_bank, colorbar=None)  # RGB tiles scaled per filter: no bar by default
    assert unbarred.image.size == plain.image.size
    plain, barred = pair(gray_bank, colorbar=True, cmap="viridis")  # the bar in the tiles' colormap
    assert _count(barred.image, yellow) > _count(plain.image, yellow)
    plain, barred = pair(rgb_bank, colorbar=True, cmap="viridis")  # RGB tiles: a gray bar
    def mid_grays(image) -> int:
        a = np.asarray(image).astype(int)
        return int(((a[..., 0] == a[..., 1]) & (a[..., 1] == a[..., 2]) & (a[..., 0] > 20) & (a[..., 0] < 235)).sum())

    assert _count(barred.image, yellow) == 0 and mid_grays(barred.image) > mid_grays(plain.image) + 100


def test_the_renderer_modules_do_not_shadow_the_packages_functions():
    """Importing every renderer module, in any order, leaves ``filtergrid.renderer.save`` and
    ``.render`` the functions (a module named like an exported function would replace it)."""
    import importlib
    import pkgutil

    import filtergrid.renderer as renderer

    for module in pkgutil.iter_modules(renderer.__path__):
        importlib.import_module(f"filtergrid.renderer.{module.name}")
    assert callable(renderer.save) and renderer.save.__module__ == "filtergrid.renderer.output"
    assert callable(renderer.render) and not isinstance(renderer.render_result, type(renderer))
