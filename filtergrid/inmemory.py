"""Weights already in memory: torch, JAX and TensorFlow tensors, NumPy arrays, ``nn.Module``s and
state dicts, with torchvision's ``make_grid`` keyword names. No framework is imported here: a value
is recognised by the module its type comes from, and converted with its own methods.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bank import FilterBank, Provenance
from .errors import UsageError
from .firstlayer import guessed_image
from .layout import guess_layout, parse_image_shape, place


@dataclass(frozen=True)
class Framework:
    """How a framework stores weights by rank, and how it flattens an image into a dense input."""

    name: str
    layouts: dict[int, str]
    flatten: str

    def layout_for(self, rank: int) -> str:
        return self.layouts.get(rank, "auto")


TORCH = Framework("torch", {2: "OI", 3: "OIK", 4: "OIHW", 5: "OIDHW"}, "CHW")
CHANNELS_LAST = {2: "IO", 3: "KIO", 4: "HWIO"}
TENSORFLOW = Framework("tensorflow", CHANNELS_LAST, "HWC")
JAX = Framework("jax", CHANNELS_LAST, "HWC")  # Flax/Haiku kernels are channels-last like Keras
NUMPY = Framework("numpy", {4: "OIHW"}, "HWC")

#: ``make_grid`` keyword -> filtergrid render option, for people coming from torchvision.
MAKE_GRID_NAMES = {"nrow": "cols", "padding": "pad"}


def framework_of(value: Any) -> Framework:
    module = type(value).__module__.split(".")[0]
    return {"torch": TORCH, "tensorflow": TENSORFLOW, "keras": TENSORFLOW, "jax": JAX, "jaxlib": JAX}.get(module, NUMPY)


def to_numpy(value: Any) -> np.ndarray:
    """A tensor's values as a NumPy array: detached, on the CPU, bf16/fp8 widened to float32."""
    framework = framework_of(value)
    if framework is TORCH:
        value = value.detach().cpu()
        if str(value.dtype).replace("torch.", "") not in _NUMPY_NATIVE:
            value = value.float()
        return value.numpy()
    if hasattr(value, "numpy") and framework is TENSORFLOW:
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype.kind == "V" or array.dtype.name in ("bfloat16",) or array.dtype.name.startswith("float8"):
        array = array.astype(np.float32)  # ml_dtypes' bfloat16 / float8 (JAX, TF)
    if array.dtype == object:
        raise UsageError(f"cannot show a {type(value).__name__}: its values are not numbers")
    return array


_NUMPY_NATIVE = {"float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool"}


def is_in_memory(value: Any) -> bool:
    """Anything but a path or a FilterBank: an array, tensor, module or state dict."""
    return not isinstance(value, (str, os.PathLike, FilterBank))


def bank_of(value: Any, *, layout: str | None = None, flatten: str | None = None,
            image_shape=None, tensor: str | None = None) -> FilterBank:
    """A FilterBank of a tensor, or of the first layer of a module or state dict (as files choose it)."""
    name, chosen_by = "array", "given in memory"
    if hasattr(value, "state_dict") and callable(value.state_dict):
        value = value.state_dict()
    if isinstance(value, Mapping):
        name, value, chosen_by = _first_layer(value, tensor)
    framework = framework_of(value)
    stored = to_numpy(value)
    if isinstance(image_shape, str):
        image_shape = parse_image_shape(image_shape)
    resolved = guess_layout(stored.shape, layout or framework.layout_for(stored.ndim))
    flatten = flatten or (TORCH.flatten if resolved == "OI" and framework is NUMPY else framework.flatten)
    image = (image_shape, "image shape given") if image_shape is not None else guessed_image(stored.shape, resolved)
    placed = place(stored, resolved, flatten=flatten, image_shape=image[0], image_why=image[1])
    provenance = Provenance("<memory>", framework.name, name, tuple(stored.shape), str(stored.dtype),
                            placed.layout, chosen_by, (f"flattened {flatten}", *placed.notes))
    return FilterBank(placed.array, provenance, placed.kind)


def _first_layer(state: Mapping, tensor: str | None) -> tuple[str, Any, str]:
    """The state dict's first layer weight, by the rules files use (module order, layer weights first)."""
    from .api import choose
    from .converters.base import prefer_layer_weights, tensor_info

    flat = dict(_flatten(state))
    infos = []
    for key, item in flat.items():
        shape = tuple(getattr(item, "shape", ()))
        framework = framework_of(item)
        infos.append(tensor_info(key, shape, str(getattr(item, "dtype", "")),
                                 framework.layout_for(len(shape)), framework.flatten, "first weight in the state dict's order"))
    info, why = choose(prefer_layer_weights(infos), tensor)
    return info.name, flat[info.name], why


def _flatten(tree: Mapping, prefix: str = "", depth: int = 0):
    """``{"conv1": {"kernel": x}}`` -> ``("conv1.kernel", x)`` (Flax params are nested dicts)."""
    if depth > 32:
        raise UsageError("the state dict nests deeper than 32 levels")
    for key, item in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(item, Mapping):
            yield from _flatten(item, name, depth + 1)
        elif hasattr(item, "shape"):
            yield name, item


def make_grid_options(options: dict[str, Any]) -> dict[str, Any]:
    """torchvision ``make_grid`` names (``nrow``, ``padding``, ``pad_value``, ``normalize``,
    ``value_range``, ``scale_each``) as filtergrid render options, with make_grid's meaning:
    ``normalize=False`` shows values as they are, ``True`` scales by one range for the whole grid
    (each image on its own with ``scale_each=True``)."""
    options = dict(options)
    for theirs, ours in MAKE_GRID_NAMES.items():
        if theirs in options:
            options[ours] = options.pop(theirs)
    if "pad_value" in options:
        value = float(options.pop("pad_value"))
        level = round(255 * value) if value <= 1 else round(value)
        options["background"] = "#{0:02x}{0:02x}{0:02x}".format(min(255, max(0, level)))
    scale_each = options.pop("scale_each", None)
    if isinstance(options.get("normalize"), bool):
        normalize = options.pop("normalize")
        options["normalize"] = ("per-filter" if scale_each else "global") if normalize else "none"
        if not normalize:
            options.pop("value_range", None)  # make_grid ignores value_range without normalize
    elif scale_each:
        options["normalize"] = "per-filter"
    if options.get("value_range") is not None:
        options["value_range"] = tuple(options["value_range"])
    return options
