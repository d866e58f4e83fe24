"""How stored weights become (filters, H, W, C) tiles: the one place that knows axis conventions.

A converter says how its framework stores a tensor (a *layout* name below) and how that framework
flattens images into dense inputs; everything else happens here, the same for every format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import limits
from .dtypes import to_float32
from .errors import UsageError

#: Stored layouts filtergrid understands: name -> (rank, what it is, axes moved to (O, H, W, I)).
LAYOUTS: dict[str, tuple[int, str]] = {
    "OIHW": (4, "conv2d (out, in, kH, kW): PyTorch, ONNX Conv"),
    "HWIO": (4, "conv2d (kH, kW, in, out): Keras, TensorFlow"),
    "OHWI": (4, "conv2d (out, kH, kW, in): TFLite CONV_2D"),
    "IOHW": (4, "transposed conv2d (in, out, kH, kW): PyTorch, ONNX ConvTranspose"),
    "HWOI": (4, "transposed conv2d (kH, kW, out, in): Keras Conv2DTranspose"),
    "IHWO": (4, "depthwise conv2d (1, kH, kW, out): TFLite DEPTHWISE_CONV_2D"),
    "HWIM": (4, "depthwise conv2d (kH, kW, in, multiplier): Keras DepthwiseConv2D"),
    "NHWC": (4, "already canonical (filters, H, W, C)"),
    "OIK": (3, "conv1d (out, in, k): PyTorch, ONNX Conv"),
    "KIO": (3, "conv1d (k, in, out): Keras Conv1D"),
    "OIDHW": (5, "conv3d (out, in, kD, kH, kW): middle depth slice shown"),
    "OI": (2, "dense (out, in): PyTorch Linear, ONNX Gemm transB=1"),
    "IO": (2, "dense (in, out): Keras Dense, ONNX MatMul/Gemm, CS231n W1"),
    "matrix": (0, "any matrix as one heatmap (embeddings, inputs that are no image)"),
}

_TO_OHWI = {"OIHW": (0, 2, 3, 1), "HWIO": (3, 0, 1, 2), "OHWI": (0, 1, 2, 3), "IOHW": (1, 2, 3, 0),
            "HWOI": (2, 0, 1, 3), "NHWC": (0, 1, 2, 3)}


@dataclass(frozen=True)
class Convention:
    """How a framework stores weights of each rank when nothing else (a graph, a layer class) says."""

    name: str
    by_rank: dict[int, str]
    flatten: str

    def layout_for(self, shape: tuple[int, ...]) -> str:
        return self.by_rank.get(len(shape), "auto")


#: PyTorch, ONNX, safetensors and most Hugging Face files: channels first, images flattened C,H,W.
CHANNELS_FIRST = Convention("channels-first", {2: "OI", 3: "OIK", 4: "OIHW", 5: "OIDHW"}, "CHW")
#: Keras and TensorFlow: channels last, images flattened H,W,C.
CHANNELS_LAST = Convention("channels-last", {2: "IO", 3: "KIO", 4: "HWIO"}, "HWC")
#: PaddlePaddle: channels-first convolutions (OIHW) but ``Linear`` weights stored (in, out).
PADDLE = Convention("paddle", {2: "IO", 3: "OIK", 4: "OIHW", 5: "OIDHW"}, "CHW")
#: Plain arrays as in CS231n: ``W1`` is (inputs, units) over H,W,C-flattened images; conv ranks guessed.
ARRAYS = Convention("arrays", {2: "IO"}, "HWC")


@dataclass(frozen=True)
class Placement:
    """The outcome of applying a layout: canonical array plus what was decided, for provenance."""

    array: np.ndarray
    layout: str
    kind: str
    notes: tuple[str, ...]


def guess_layout(shape: tuple[int, ...], hint: str = "auto") -> str:
    """The layout of a stored tensor: the converter's hint when it fits the rank, else a guess."""
    if hint == "matrix" or LAYOUTS.get(hint, (-1,))[0] == len(shape):  # "auto" is no layout: guessed
        return hint
    rank = len(shape)
    if rank == 4:
        # Kernels are small and square: (kH, kW) first means channels-last storage.
        if shape[0] == shape[1] and shape[0] <= 11 and not (shape[2] == shape[3] and shape[2] <= 11):
            return "HWIO"
        # Square images of 1 or 3 channels, channels last: already (filters, H, W, C).
        if shape[1] == shape[2] and shape[3] in (1, 3) and shape[2] != shape[3]:
            return "NHWC"
        return "OIHW"
    if rank == 3:
        return "KIO" if shape[0] <= 11 and shape[2] > shape[0] and shape[1] > shape[0] else "OIK"
    if rank == 5:
        return "OIDHW"
    if rank == 2:
        return "OI"
    return "matrix"


def image_shape_for(size: int) -> tuple[int, int, int] | None:
    """A square image with 3 or 1 channels whose pixels number ``size`` (3072 -> 32x32x3), or None."""
    for channels in (3, 1):
        if size % channels == 0:
            side = math.isqrt(size // channels)
            if side >= 2 and side * side * channels == size:
                return (side, side, channels)
    return None


def parse_image_shape(text: str) -> tuple[int, int, int]:
    """``32x32x3`` / ``28x28`` / ``32,32,3`` -> (H, W, C)."""
    parts = [p for p in text.replace(",", "x").lower().split("x") if p.strip()]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"image shape {text!r} is not HxW or HxWxC") from None
    if len(dims) == 2:
        dims = (*dims, 1)
    if len(dims) != 3 or min(dims) < 1:
        raise UsageError(f"image shape {text!r} is not HxW or HxWxC with positive sizes")
    return dims  # type: ignore[return-value]


def place(
    stored: np.ndarray,
    layout: str,
    *,
    flatten: str = "HWC",
    image_shape: tuple[int, int, int] | None = None,
    image_why: str = "no evidence that its inputs form an image",
) -> Placement:
    """Turn a stored tensor (any numeric dtype) into the canonical float32 (filters, H, W, C).

    A dense layer becomes images only with an ``image_shape`` (given, or found by
    :func:`filtergrid.firstlayer.dense_image`); otherwise it is a heatmap and ``image_why`` says why.
    """
    shape = tuple(stored.shape)
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    rank = LAYOUTS[layout][0]
    if layout != "matrix" and rank != len(shape):
        raise UsageError(f"layout {layout} needs a rank-{rank} tensor, this one is {list(shape)}")
    if flatten not in ("HWC", "CHW"):
        raise UsageError(f"flatten order must be HWC or CHW, got {flatten!r}")
    if image_shape is not None and layout not in ("OI", "IO"):
        raise UsageError(f"an image shape applies to dense layers (OI or IO); this tensor is read as {layout}")
    notes: list[str] = []
    if layout in _TO_OHWI:
        out = np.transpose(stored, _TO_OHWI[layout])
    elif layout == "IHWO":  # TFLite stores 1 in front; anything there is kept as the filters' channels
        out = np.transpose(stored, (3, 1, 2, 0))
    elif layout == "HWIM":
        kh, kw, i, m = shape
        out = np.transpose(stored.reshape(kh, kw, i * m), (2, 0, 1))[..., None]
        notes.append(f"depthwise: {i} channels x {m} multiplier = {i * m} single-channel filters")
    elif layout == "OIK":
        out = np.transpose(stored, (0, 2, 1))[:, None, :, :]
    elif layout == "KIO":
        out = np.transpose(stored, (2, 0, 1))[:, None, :, :]
    elif layout == "OIDHW":
        mid = shape[2] // 2
        out = np.transpose(stored[:, :, mid], (0, 2, 3, 1))
        notes.append(f"conv3d: depth slice {mid} of {shape[2]} shown")
    elif layout in ("OI", "IO"):
        units = stored if layout == "OI" else stored.T
        return _dense(units, layout, flatten, image_shape, image_why)
    else:
        return _matrix(stored, layout, notes)
    if out.shape[1:3] == (1, 1):  # 1x1 kernels are no picture: one (filters x channels) heatmap
        return _matrix(out.reshape(out.shape[0], out.shape[3]), f"{layout} 1x1",
                       [*notes, "1x1 kernels: shown as a filters x input-channels heatmap"])
    return Placement(_float32(out), layout, "filters", tuple(notes))


def _dense(units: np.ndarray, layout: str, flatten: str, image_shape, image_why: str) -> Placement:
    """Each output unit is a filter over an image of ``image_shape``; without one, a heatmap."""
    n_out, n_in = units.shape
    if image_shape is None:
        return _matrix(units, layout, [f"dense: {image_why}; shown as a heatmap (--image-shape HxWxC draws images)"])
    h, w, c = image_shape
    if h * w * c != n_in:
        raise UsageError(f"image shape {h}x{w}x{c} has {h * w * c} values, the layer takes {n_in} inputs")
    how = image_why
    if flatten == "CHW":
        out = np.transpose(units.reshape(n_out, c, h, w), (0, 2, 3, 1))
    else:
        out = units.reshape(n_out, h, w, c)
    return Placement(_float32(out), layout, "filters", (f"dense: {how}, flattened {flatten}",))


def _matrix(stored: np.ndarray, layout: str, notes: list[str]) -> Placement:
    """One heatmap tile of a matrix, cut to MAX_HEATMAP_ROWS x MAX_HEATMAP_COLS."""
    m = np.asarray(stored)
    if m.ndim == 0:
        m = m.reshape(1, 1)
    elif m.ndim == 1:
        m = m.reshape(1, -1)
    elif m.ndim > 2:
        m = m.reshape(m.shape[0], -1)
    rows, cols = m.shape
    max_r, max_c = limits.MAX_HEATMAP_ROWS, limits.MAX_HEATMAP_COLS
    if rows > max_r or cols > max_c:
        m = m[:max_r, :max_c]
        notes = [*notes, f"matrix {rows}x{cols} cut to its first {min(rows, max_r)}x{min(cols, max_c)}"]
    if m.shape[0] == 1 and m.shape[1] > MAX_ROW_ASPECT:
        m, how = _wrap(m[0])
        notes = [*notes, how]
    kind_layout = layout if layout == "matrix" else f"{layout} as matrix"
    return Placement(_float32(m)[None, :, :, None], kind_layout, "matrix", tuple(notes))


#: A single row longer than this is wrapped into a near-square block instead of a one-pixel strip.
MAX_ROW_ASPECT = 64


def _wrap(row: np.ndarray) -> tuple[np.ndarray, str]:
    """A long row as a near-square block: a divisor near the square root rows, else NaN-padded rows."""
    n = row.size
    side = math.isqrt(n)
    rows = next((d for d in range(side, max(2, side // 4) - 1, -1) if n % d == 0), None)
    if rows is not None:
        return row.reshape(rows, -1), f"a single row of {n} values wrapped into {rows} rows of {n // rows}"
    width = side + 1
    padded = np.full(width * math.ceil(n / width), np.nan, dtype=np.float32)
    padded[:n] = to_float32(row)
    return padded.reshape(-1, width), (f"a single row of {n} values wrapped into rows of {width}; "
                                        f"the last {padded.size - n} cells are padding (NaN colour)")


def _float32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(to_float32(a))
