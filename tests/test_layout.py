"""Every layout rule against an independent construction of the expected (filters, H, W, C) array."""

import numpy as np
import pytest

from filtergrid.errors import UsageError
from filtergrid.layout import CHANNELS_FIRST, CHANNELS_LAST, guess_layout, image_shape_for, parse_image_shape, place

rng = np.random.default_rng(0)


def test_oihw_to_nhwc_puts_input_channels_last():
    w = rng.standard_normal((8, 3, 5, 7))
    out = place(w, "OIHW").array
    assert out.shape == (8, 5, 7, 3) and out.dtype == np.float32
    assert out[2, 4, 6, 1] == np.float32(w[2, 1, 4, 6])


def test_hwio_keras_kernel():
    w = rng.standard_normal((3, 5, 2, 16))
    out = place(w, "HWIO").array
    assert out.shape == (16, 3, 5, 2)
    assert out[15, 2, 4, 1] == np.float32(w[2, 4, 1, 15])


def test_ohwi_tflite_and_transposed_layouts():
    w = rng.standard_normal((4, 3, 3, 2))
    np.testing.assert_array_equal(place(w, "OHWI").array, w.astype(np.float32))
    iohw = rng.standard_normal((2, 6, 3, 3))  # ConvTranspose: (in, out, kH, kW) -> filters are outputs
    assert place(iohw, "IOHW").array[5, 1, 2, 0] == np.float32(iohw[0, 5, 1, 2])
    hwoi = rng.standard_normal((3, 3, 6, 2))
    assert place(hwoi, "HWOI").array[5, 1, 2, 0] == np.float32(hwoi[1, 2, 5, 0])


def test_depthwise_tflite_1hwo_and_keras_hwim():
    w = rng.standard_normal((1, 3, 3, 8))
    out = place(w, "IHWO").array
    assert out.shape == (8, 3, 3, 1) and out[7, 1, 2, 0] == np.float32(w[0, 1, 2, 7])
    k = rng.standard_normal((3, 3, 4, 2))  # 4 channels x multiplier 2 -> 8 single-channel filters
    out = place(k, "HWIM").array
    assert out.shape == (8, 3, 3, 1)
    assert out[3 * 2 + 1, 2, 0, 0] == np.float32(k[2, 0, 3, 1])


def test_conv1d_both_conventions():
    torch_w = rng.standard_normal((6, 2, 5))
    out = place(torch_w, "OIK").array
    assert out.shape == (6, 1, 5, 2) and out[5, 0, 4, 1] == np.float32(torch_w[5, 1, 4])
    keras_w = rng.standard_normal((5, 2, 6))
    out = place(keras_w, "KIO").array
    assert out.shape == (6, 1, 5, 2) and out[5, 0, 4, 1] == np.float32(keras_w[4, 1, 5])


def test_dense_cs231n_w1_rows_become_32x32x3_images():
    w1 = rng.standard_normal((3072, 100)).astype(np.float32)
    placed = place(w1, "IO", image_shape=(32, 32, 3), image_why="32x32x3 by evidence")
    assert placed.array.shape == (100, 32, 32, 3) and placed.kind == "filters"
    np.testing.assert_array_equal(placed.array[7], w1[:, 7].reshape(32, 32, 3))
    assert "32x32x3" in placed.notes[0]


def test_dense_without_image_evidence_is_a_heatmap_whatever_its_size():
    """768 inputs are 16x16x3 by arithmetic only: no evidence, no fake RGB tiles."""
    placed = place(rng.standard_normal((64, 768)), "OI", image_why="not the input layer")
    assert placed.kind == "matrix" and "not the input layer" in placed.notes[0]
    unexplained = place(rng.standard_normal((64, 768)), "OI")
    assert unexplained.notes == ("dense: no evidence that its inputs form an image; "
                                 "shown as a heatmap (--image-shape HxWxC draws images)",)


def test_one_by_one_kernels_are_a_heatmap_and_a_long_row_is_wrapped():
    pointwise = place(rng.standard_normal((8, 5, 1, 1)), "OIHW")
    assert pointwise.kind == "matrix" and pointwise.array.shape == (1, 8, 5, 1)
    assert pointwise.layout == "OIHW 1x1 as matrix"
    assert pointwise.notes == ("1x1 kernels: shown as a filters x input-channels heatmap",)
    row = rng.standard_normal((1, 1475, 1, 1)).astype(np.float32)
    wrapped = place(row, "OIHW")
    assert wrapped.array.shape == (1, 25, 59, 1)
    np.testing.assert_array_equal(wrapped.array.ravel(), row.ravel())
    prime = place(rng.standard_normal((1, 1031)), "matrix")
    assert prime.array.shape[1] * prime.array.shape[2] >= 1031 and np.isnan(prime.array).sum() == prime.array.size - 1031


def test_a_convention_names_the_layout_of_each_rank_it_knows_and_auto_for_the_rest():
    """``auto`` is what listings show for biases and the like, and what guess_layout guesses from."""
    assert [CHANNELS_FIRST.layout_for((2,) * r) for r in range(1, 6)] == ["auto", "OI", "OIK", "OIHW", "OIDHW"]
    assert [CHANNELS_LAST.layout_for((2,) * r) for r in range(1, 6)] == ["auto", "IO", "KIO", "HWIO", "auto"]


def test_a_long_row_wraps_at_the_divisor_search_bounds_else_pads_with_nan():
    """A row of 64 stays a strip; a longer one wraps into rows of a divisor between its square root
    and a quarter of it (at least 2), else into rows of isqrt + 1 padded with NaN."""
    assert place(np.arange(64.0), "matrix").array.shape == (1, 1, 64, 1)
    two = place(np.arange(74.0), "matrix")  # 74 = 2 x 37: 2 is the last divisor searched (isqrt 8)
    assert two.array.shape == (1, 2, 37, 1) and two.notes == ("a single row of 74 values wrapped into 2 rows of 37",)
    padded = place(np.arange(412.0), "matrix")  # 412 = 4 x 103, and 4 < isqrt(412) // 4 = 5 is not searched
    assert padded.array.shape == (1, 20, 21, 1)
    np.testing.assert_array_equal(padded.array.ravel()[:412], np.arange(412.0))
    assert np.isnan(padded.array.ravel()[412:]).all()
    assert padded.notes == ("a single row of 412 values wrapped into rows of 21; the last 8 cells are padding (NaN colour)",)


def test_dense_out_in_and_chw_flatten():
    w = rng.standard_normal((10, 3 * 4 * 4))
    out = place(w, "OI", flatten="CHW", image_shape=(4, 4, 3)).array
    assert out.shape == (10, 4, 4, 3)
    np.testing.assert_array_equal(out[3], np.transpose(w[3].reshape(3, 4, 4), (1, 2, 0)).astype(np.float32))


@pytest.mark.parametrize("n,expected", [(3072, (32, 32, 3)), (784, (28, 28, 1)), (64, (8, 8, 1)),
                                        (75, (5, 5, 3)), (100, (10, 10, 1)), (10, None), (3, None)])
def test_image_shape_guess(n, expected):
    assert image_shape_for(n) == expected


def test_dense_with_explicit_image_shape_and_wrong_one():
    w = rng.standard_normal((50, 10))
    assert place(w, "IO", image_shape=(5, 10, 1)).array.shape == (10, 5, 10, 1)
    with pytest.raises(UsageError, match="has 12 values"):
        place(w, "IO", image_shape=(2, 2, 3))


def test_dense_that_is_no_image_becomes_a_bounded_heatmap(monkeypatch):
    from filtergrid import limits

    monkeypatch.setattr(limits, "MAX_HEATMAP_ROWS", 6)
    w = rng.standard_normal((10, 7))  # (in=10, out=7): 10 inputs are no square image
    placed = place(w, "IO")
    assert placed.kind == "matrix" and placed.array.shape == (1, 6, 10, 1)
    np.testing.assert_array_equal(placed.array[0, :, :, 0], w.T[:6].astype(np.float32))
    assert any("cut to" in n for n in placed.notes)


def test_conv3d_middle_slice_and_wrong_rank():
    w = rng.standard_normal((4, 2, 5, 3, 3))
    out = place(w, "OIDHW").array
    np.testing.assert_array_equal(out, np.transpose(w[:, :, 2], (0, 2, 3, 1)).astype(np.float32))
    with pytest.raises(UsageError, match="rank-4"):
        place(rng.standard_normal((3, 3)), "OIHW")
    with pytest.raises(UsageError, match="unknown layout"):
        place(w, "XYZ")


def test_guess_layout_prefers_the_hint_and_guesses_sensibly():
    assert guess_layout((3, 3, 3, 64), "auto") == "HWIO"
    assert guess_layout((64, 3, 7, 7), "auto") == "OIHW"
    assert guess_layout((64, 3, 3, 3), "auto") == "OIHW"
    assert guess_layout((4096, 16, 16, 3), "auto") == "NHWC"  # a bank of images saved as they are
    assert guess_layout((64, 3, 7, 7), "HWIO") == "HWIO"
    assert guess_layout((64, 3), "OIHW") == "OI"  # a hint of the wrong rank is ignored
    assert guess_layout((3, 3), "matrix") == "matrix"


def test_parse_image_shape():
    assert parse_image_shape("32x32x3") == (32, 32, 3)
    assert parse_image_shape("28x28") == (28, 28, 1)
    assert parse_image_shape("8,8,1") == (8, 8, 1)
    with pytest.raises(UsageError):
        parse_image_shape("axb")


def test_guess_layout_kernel_size_rule_at_its_edges():
    """Kernels are at most 11x11 (AlexNet's): a square pair of leading dims up to 11 is (kH, kW)."""
    assert guess_layout((3, 3, 3, 64)) == "HWIO"  # the default hint is auto
    assert guess_layout((5, 5, 3, 32), "auto") == "HWIO"  # kernel side differs from in-channels
    assert guess_layout((11, 11, 3, 96), "auto") == "HWIO"  # AlexNet's kernel, Keras-stored
    assert guess_layout((12, 12, 1, 64), "auto") == "OIHW"  # 12 is no kernel side: 12 filters of 12 channels
    assert guess_layout((8, 3, 5, 7), "auto") == "OIHW"  # small first dim alone does not mean (kH, kW)
    assert guess_layout((3, 3, 11, 11), "auto") == "OIHW"  # both pairs could be kernels: channels first wins
    assert guess_layout((3, 3, 12, 12), "auto") == "HWIO"
    assert guess_layout((100, 28, 28, 1), "auto") == "NHWC"  # MNIST images as they are
    assert guess_layout((100, 28, 14, 1), "auto") == "OIHW"  # images are square
    assert guess_layout((64, 3, 7, 7), "not-a-layout") == "OIHW"  # an unknown hint is ignored
    assert guess_layout((5,), "not-a-layout") == "matrix"


def test_guess_layout_conv1d():
    """Keras (k, in, out) when a short leading kernel precedes more channels in and out, else PyTorch."""
    assert guess_layout((5, 16, 32)) == "KIO"
    assert guess_layout((11, 16, 32)) == "KIO"
    assert guess_layout((12, 16, 32)) == "OIK"  # 12 taps is no kernel side
    assert guess_layout((32, 16, 5)) == "OIK"
    assert guess_layout((3, 64, 32)) == "KIO"
    assert guess_layout((8, 1, 64)) == "OIK"  # raw audio: 8 filters of one channel, 64 taps
    assert guess_layout((3, 3, 16)) == guess_layout((5, 16, 5)) == "OIK"  # ties go to channels first
    assert guess_layout((4, 2, 5, 3, 3)) == "OIDHW" and guess_layout((10, 7)) == "OI"


def test_smallest_image_is_two_pixels_square():
    assert image_shape_for(4) == (2, 2, 1) and image_shape_for(12) == (2, 2, 3)


def test_parse_image_shape_refuses_wrong_rank_and_empty_sides():
    for text in ("2x2x2x2", "0x4", "4x4x0"):
        with pytest.raises(UsageError, match="positive sizes"):
            parse_image_shape(text)
    with pytest.raises(UsageError, match="'axb' is not HxW"):
        parse_image_shape("axb")


def test_place_refusals_say_what_is_allowed():
    w = rng.standard_normal((4, 3, 3, 3))
    with pytest.raises(UsageError, match="choose from OIHW, HWIO"):
        place(w, "XYZ")
    with pytest.raises(UsageError, match="HWC or CHW, got 'WHC'"):
        place(w, "OIHW", flatten="WHC")
    with pytest.raises(UsageError, match="applies to dense layers"):
        place(w, "OIHW", image_shape=(3, 3, 3))


def test_provenance_notes_of_depthwise_conv3d_and_dense_images():
    assert place(rng.standard_normal((3, 3, 4, 2)), "HWIM").notes == (
        "depthwise: 4 channels x 2 multiplier = 8 single-channel filters",)
    assert place(rng.standard_normal((4, 2, 5, 3, 3)), "OIDHW").notes == ("conv3d: depth slice 2 of 5 shown",)
    given = place(rng.standard_normal((50, 10)), "IO", image_shape=(5, 10, 1), image_why="given by --image-shape")
    assert given.notes == ("dense: given by --image-shape, flattened HWC",)


def test_matrix_layout_of_any_rank_is_one_heatmap_of_rows():
    scalar = place(np.float64(2.5), "matrix")
    assert scalar.array.shape == (1, 1, 1, 1) and scalar.array[0, 0, 0, 0] == 2.5
    vector = np.arange(5.0)
    np.testing.assert_array_equal(place(vector, "matrix").array[0, :, :, 0], [vector])
    cube = rng.standard_normal((2, 3, 4))  # rows stay rows, the rest of each row is flattened
    np.testing.assert_array_equal(place(cube, "matrix").array[0, :, :, 0], cube.reshape(2, 12).astype(np.float32))
    assert place(cube, "matrix").layout == "matrix" and place(rng.standard_normal((10, 7)), "IO").layout == "IO as matrix"
    empty = place(np.zeros((0, 5), np.float32), "matrix")  # no rows (a read of none): an empty tile, no reshape error
    assert empty.array.shape == (1, 0, 5, 1)


def test_heatmap_exactly_at_the_limits_is_not_cut(monkeypatch):
    from filtergrid import limits

    monkeypatch.setattr(limits, "MAX_HEATMAP_ROWS", 6)
    monkeypatch.setattr(limits, "MAX_HEATMAP_COLS", 10)
    placed = place(rng.standard_normal((6, 10)), "matrix")
    assert placed.array.shape == (1, 6, 10, 1) and placed.notes == ()
