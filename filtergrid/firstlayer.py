"""Which tensor a model applies first to its input, when the file keeps no model order.

safetensors, ``.npz``, bare Keras ``.weights.h5`` and Hugging Face folders store tensors by name, and
a sorted name is no model order (``classifier.1`` sorts before ``features.0``, ``decoder.`` before
``encoder.``). Each layer weight collects evidence instead, from three sources:

* the shapes chain: a conv whose input channels (1-4, or 3 for RGB; more when it is the only conv
  with so few) are no other layer's output channels (a last layer's output, read by no layer, does
  not count: image-to-image nets end in 3 channels); a dense layer of a conv-less model whose inputs
  are no other layer's outputs;
* ``config.json``: ``num_channels``/``num_mel_bins`` equal to a conv's input channels, ``vocab_size``
  equal to an embedding's rows;
* names: ``stem``, ``conv1``, ``patch_embed``, ``embed_tokens``, ``wte``, ... count for; ``decoder``,
  ``head``, ``classifier``, ... count against (an encoder runs before its decoder).

The weight with the most evidence is the first layer, ties going to natural name order; the role of
the chosen tensor says what the evidence was and which tensor came second, or that there was none.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from .bank import TensorInfo
from .layout import image_shape_for

#: (input, output) axes of the layouts a first layer can have; the rest are no input layer.
_IN_OUT_AXES = {"OIHW": (1, 0), "OIK": (1, 0), "OIDHW": (1, 0), "HWIO": (2, 3), "KIO": (1, 2),
                "OHWI": (3, 0), "HWIM": (2, 2), "IHWO": (3, 3), "OI": (1, 0), "IO": (0, 1)}
_DENSE = ("OI", "IO")

#: Name parts of input layers, and of parts that run late (heads) or second (decoders).
_INPUT_NAMES = re.compile(r"^(stem|conv_?stem|conv_?[01]|conv_proj|patch_?embed\w*|embed_tokens|wte|"
                          r"word_embeddings|token_embedding|embedder|feature_extractor|features\.0)$")
_LATE_NAMES = re.compile(r"^(decoder|decode_head|head|heads|lm_head|classifier|pooler|score|logits|fc_?out)$")

#: config.json keys whose value is a model's input channels, and the one that counts tokens.
_CHANNEL_KEYS = ("num_channels", "in_channels", "input_channels", "num_mel_bins", "n_mels", "in_chans")
_CONFIG_DEPTH = 3
_CONFIG_KEYS = 4096


@dataclass(frozen=True)
class Evidence:
    """One candidate's points and the reasons for them."""

    info: TensorInfo
    points: int
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "no evidence"


def config_values(config: dict | None, keys: tuple[str, ...]) -> Iterator[tuple[str, int]]:
    """(key, value) for integer ``keys`` anywhere in a (nested, bounded) config.json object."""
    stack, seen = [(config or {}, "", 0)], 0
    while stack and seen < _CONFIG_KEYS:
        node, prefix, depth = stack.pop()
        for key, value in list(node.items())[:_CONFIG_KEYS]:
            seen += 1
            if isinstance(value, dict) and depth < _CONFIG_DEPTH:
                stack.append((value, f"{prefix}{key}.", depth + 1))
            elif key in keys and type(value) is int:
                yield f"{prefix}{key}"[:80], value


def in_out(info: TensorInfo) -> tuple[int, int] | None:
    """(inputs, outputs) of a layer weight in its stored layout, or None for a matrix."""
    axes = _IN_OUT_AXES.get(info.layout)
    if axes is None or len(info.shape) <= max(axes):
        return None
    return info.shape[axes[0]], info.shape[axes[1]]


def _name_parts(name: str) -> list[str]:
    parts = re.split(r"[./:]", name.lower())
    return parts + [f"{a}.{b}" for a, b in zip(parts, parts[1:])]


@dataclass(frozen=True)
class _Chain:
    """How many candidate layers take and give each width: the shapes chain without a graph."""

    reads: Counter[int]
    gives: Counter[int]
    small_inputs: int  # convs taking 1-4 channels
    has_conv: bool

    @classmethod
    def of(cls, layers: list[tuple[TensorInfo, tuple[int, int]]]) -> _Chain:
        convs = [io for info, io in layers if info.layout not in _DENSE]
        return cls(Counter(io[0] for _, io in layers), Counter(io[1] for _, io in layers),
                   sum(1 <= n_in <= 4 for n_in, _ in convs), bool(convs))

    def fed(self, io: tuple[int, int]) -> bool:
        """Whether another layer's output can be this layer's input. A layer whose output width no
        layer but this one reads gives the model's output (an image-to-image net's last conv gives
        3 channels, a VAD's 1): that is no evidence against an input layer of the same width."""
        n_in, n_out = io
        return self.gives[n_in] - (n_out == n_in) > 0 and self.reads[n_in] > 1


def _channels(n_in: int, chain: _Chain) -> tuple[int, str]:
    """Points for a conv's 1-4 input channels: an image's or a signal's, more when no other conv has so few."""
    what = f"{n_in} input channel{'s' * (n_in > 1)} " + ("(RGB)" if n_in == 3 else "(an image or a signal)")
    if chain.small_inputs == 1:
        return 2, f"{what}, the only conv with 1-4"
    return (2 if n_in == 3 else 1), what


def _gather(info: TensorInfo, chain: _Chain, config: dict | None) -> Evidence:
    reasons: list[tuple[int, str]] = []
    io = in_out(info)
    if io is not None and info.layout not in _DENSE:
        n_in = io[0]
        if not chain.fed(io):
            reasons.append((2, f"its {n_in} input channel{'s' * (n_in > 1)} no other layer outputs"))
        if 1 <= n_in <= 4:
            reasons.append(_channels(n_in, chain))
        reasons += [(3, f"config.json {key}={value}") for key, value in config_values(config, _CHANNEL_KEYS)
                    if value == n_in]
    elif io is not None and not chain.has_conv and not chain.fed(io):
        reasons.append((2, f"its {io[0]} inputs are no other layer's output"))
    if info.layout == "matrix" and info.shape:
        reasons += [(3, f"its {info.shape[0]} rows are config.json {key}")
                    for key, value in config_values(config, ("vocab_size",)) if value == info.shape[0]]
    parts = _name_parts(info.name)
    for part in parts:
        if _INPUT_NAMES.match(part):
            reasons.append((1, f"named like an input layer ({part})"))
            break
    for part in parts:
        if _LATE_NAMES.match(part):
            reasons.append((-3, f"named like a later part ({part})"))
            break
    return Evidence(info, sum(p for p, _ in reasons), tuple(r for _, r in reasons))


def weigh(infos: list[TensorInfo], config: dict | None = None) -> list[Evidence]:
    """Every candidate's evidence, best first; ties keep the listing's (natural name) order."""
    candidates = [i for i in infos if i.candidate]
    layers = [(i, io) for i in candidates if (io := in_out(i)) is not None]
    chain = _Chain.of(layers)
    return sorted((_gather(info, chain, config) for info in candidates), key=lambda e: -e.points)


def order_by_evidence(infos: list[TensorInfo], config: dict | None = None,
                      stored_as: str = "natural name order") -> list[TensorInfo]:
    """The listing with the inferred first layer moved to the first candidate's place; its role says why
    and names the runner-up.

    For stores without a model order (see the module docstring): the Keras HDF5 reader calls this for
    a bare ``.weights.h5``, the safetensors, npz and Hugging Face readers for theirs.
    """
    ranked = weigh(infos, config)
    if not ranked:
        return infos
    best = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    if best.points <= 0:
        role = f"no evidence of the input layer: first weight in {stored_as}"
    else:
        role = f"inferred input layer: {best.describe()}"
        if runner is not None and runner.points == best.points:
            role += f"; tied, {stored_as} decided"
    if runner is not None:
        role += f"; runner-up {runner.info.name} ({runner.describe()})"
    chosen = dataclasses.replace(best.info, role=role)
    rest = [i for i in infos if i.name != chosen.name]
    at = next(n for n, i in enumerate(infos) if i.candidate)  # where the first candidate stood
    return [*rest[:at], chosen, *rest[at:]]


def dense_image(info: TensorInfo, infos: list[TensorInfo], config: dict | None,
                first: bool, model_inputs: tuple[int, ...] = ()) -> tuple[tuple[int, int, int] | None, str]:
    """The image a dense layer's inputs form, with the evidence, or None and why not.

    Evidence is: a configured image size, or the input layer of a model with no conv whose input
    count is that of a square image (a CS231n ``W1``, an MLP on MNIST) and, where the file states
    the sizes of the model's inputs (``model_inputs``, values per example), one of them. Any other
    dense layer takes features, not pixels: 768 inputs are no 16x16 RGB image, nor are 144 features
    computed from a 3-value input a 12x12 one.
    """
    io = in_out(info)
    if io is None:
        return None, "not a dense layer"
    n_in = io[0]
    if not first:
        return None, f"{info.name} is not the input layer: its {n_in} inputs are features, no image"
    sizes = dict(config_values(config, ("image_size",)))
    channels = dict(config_values(config, ("num_channels",)))
    for size in sizes.values():
        for c in channels.values() or (3,):
            if size * size * c == n_in:
                return (size, size, c), f"config.json image_size {size} x num_channels {c}"
    if any(in_out(i) is not None and i.layout not in _DENSE for i in infos if i.candidate):
        return None, f"the model has convs, so its dense layer's {n_in} inputs are features, no image"
    if model_inputs and n_in not in model_inputs:
        given = ", ".join(map(str, model_inputs[:4]))
        return None, f"its {n_in} inputs are computed from the model's input ({given} values), no image"
    shape = image_shape_for(n_in)
    if shape is None:
        return None, f"{n_in} inputs are no square image"
    return shape, f"input layer of a model with no conv; {n_in} inputs read as a {shape[0]}x{shape[1]}x{shape[2]} image"


def guessed_image(shape: tuple[int, ...], layout: str) -> tuple[tuple[int, int, int] | None, str]:
    """For an array handed over in memory as a dense layer: its input size decides (the caller chose it)."""
    if layout not in _DENSE or len(shape) != 2:
        return None, ""
    n_in = shape[1 if layout == "OI" else 0]
    image = image_shape_for(n_in)
    return image, (f"{n_in} inputs of an array given in memory read as an image" if image
                   else f"{n_in} inputs are no square image")
