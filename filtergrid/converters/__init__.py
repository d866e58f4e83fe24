"""The format table and detection: magic bytes first, a look inside second, the suffix last.

The table is data (like imageio v3's plugin table): a converter module is imported only when its
format is probed or used, and a format whose reader needs an optional package names its extra.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..errors import CompanionFileError, FiltergridError, UnknownFormatError
from ..remote import RemotePath
from ..safeio import model_path
from . import unsupported
from .base import Probe


@dataclass(frozen=True)
class Format:
    name: str
    module: str
    suffixes: tuple[str, ...]
    title: str
    extra: str | None = None
    #: Bytes one of which a file must start with for the module's ``sniff`` to accept it (empty: no
    #: such rule), so detection skips importing modules that would say no (the torch unpickler for
    #: an ONNX file): start-up. A test checks every fixture against each module's own ``sniff``.
    heads: tuple[bytes, ...] = ()
    #: Files that are only part of a model: (their suffix, suffixes of the model file beside them with
    #: the same stem). The audit counts the pair once, as the model file (OpenVINO model.bin -> model.xml).
    parts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: Whether the suffix may choose this format when no ``sniff`` claimed the file: only where the
    #: content check is a heuristic that can miss (ONNX, Caffe: protobuf) or the suffix is the
    #: format's alone and its reader explains a damaged header best (safetensors). A shared suffix
    #: (``.bin``, ``.pt``, ``.h5``) never sends a file to a reader whose content check says no.
    suffix_decides: bool = False

    @property
    def kind(self) -> str:
        """The format as a sentence names it: "this ONNX file is damaged" (see errors.CorruptFileError)."""
        return KINDS.get(self.name, f"{self.title} file")

    def load_module(self) -> ModuleType:
        return importlib.import_module(self.module)

    def could_be(self, probe: Probe) -> bool:
        return not self.heads or probe.head.startswith(self.heads)

    def model_file_of(self, path: Path) -> Path | None:
        """The model file ``path`` is a part of (its weights beside it), or None when ``path`` is the model."""
        stem = path.name[:len(path.name) - len(path.suffix)]
        for part, models in self.parts:
            if path.suffix.lower() == part:
                return next((path.parent / (stem + m) for m in models if (path.parent / (stem + m)).is_file()), None)
        return None


#: Every format, in sniffing order: specific magic first, the ONNX protobuf heuristic last.
FORMATS: tuple[Format, ...] = (
    Format("huggingface", "filtergrid.converters.hf", (), "Hugging Face model folder (config.json + weights)"),
    Format("safetensors", "filtergrid.converters.safetensors", (".safetensors",), "safetensors",
           suffix_decides=True),
    Format("numpy", "filtergrid.converters.numpy", (".npz", ".npy"), "NumPy .npz / .npy",
           heads=(b"\x93NUMPY", b"PK")),
    Format("keras", "filtergrid.converters.keras_zip", (".keras",), "Keras 3 .keras archive", heads=(b"PK",)),
    Format("keras-h5", "filtergrid.converters.keras_h5", (".h5", ".hdf5"),
           "Keras HDF5 (Keras 2 model/weights, Keras 3 .weights.h5)"),
    Format("tflite", "filtergrid.converters.tflite", (".tflite",), "TensorFlow Lite flatbuffer"),
    Format("gguf", "filtergrid.converters.gguf", (".gguf",), "GGUF (llama.cpp)", heads=(b"GGUF",)),
    Format("coreml", "filtergrid.converters.coreml", (".mlmodel", ".mlpackage"),
           "Core ML (.mlmodel NeuralNetwork / ML Program, .mlpackage)"),
    Format("openvino", "filtergrid.converters.openvino", (".xml",), "OpenVINO IR (.xml + .bin)",
           parts=((".bin", (".xml",)),)),
    Format("paddle", "filtergrid.converters.paddle", (".pdparams",), "PaddlePaddle .pdparams (paddle.save state dict)",
           heads=(b"\x80",)),
    Format("paddle-inference", "filtergrid.converters.paddle_inference", (".pdmodel", ".pdiparams"),
           "PaddlePaddle inference model (.pdmodel or PIR .json, with .pdiparams)",
           heads=(b"\x0a", b'{"base_code"', b"\0\0\0\0"),
           parts=((".pdiparams", (".pdmodel", ".json")),)),
    Format("torchscript", "filtergrid.converters.torchscript", (), "TorchScript (torch.jit.save)", heads=(b"PK",)),
    Format("pytorch", "filtergrid.converters.pytorch", (".pt", ".pth", ".bin", ".ckpt"),
           "PyTorch (torch.save zip or legacy pickle, Lightning .ckpt)", heads=(b"PK", b"\x80")),
    Format("sklearn", "filtergrid.converters.sklearn", (".pkl", ".pickle", ".joblib"),
           "scikit-learn estimator (pickle / joblib: MLP coefs_, linear coef_)", heads=(b"\x80",)),
    Format("flax", "filtergrid.converters.flax", (".msgpack",), "Flax/JAX msgpack checkpoint",
           heads=(*(bytes([b]) for b in range(0x80, 0x90)), b"\xde", b"\xdf")),
    Format("ncnn", "filtergrid.converters.ncnn", (".param",), "ncnn .param + .bin (ncnn, pnnx)"),
    Format("darknet", "filtergrid.converters.darknet", (".weights",), "Darknet .weights (+ its .cfg)"),
    Format("tensorflow", "filtergrid.converters.tensorflow", (".pb", ".index"),
           "TensorFlow SavedModel, checkpoint (.index + .data-*) or frozen GraphDef"),
    Format("tfjs", "filtergrid.converters.tfjs", (), "TensorFlow.js model.json + weight shards"),
    Format("caffe", "filtergrid.converters.caffe", (".caffemodel",), "Caffe .caffemodel", suffix_decides=True),
    Format("onnx", "filtergrid.converters.onnx", (".onnx",), "ONNX", suffix_decides=True),
)

BY_NAME = {f.name: f for f in FORMATS}

#: Short names for messages, where a title says more than a sentence needs.
KINDS = {
    "huggingface": "Hugging Face model folder", "safetensors": "safetensors file", "numpy": "NumPy file",
    "keras": "Keras file", "keras-h5": "Keras HDF5 file", "tflite": "TensorFlow Lite file", "gguf": "GGUF file",
    "coreml": "Core ML model", "openvino": "OpenVINO model", "paddle": "PaddlePaddle file",
    "paddle-inference": "PaddlePaddle model", "torchscript": "TorchScript file", "pytorch": "PyTorch file",
    "sklearn": "scikit-learn pickle", "flax": "Flax checkpoint", "ncnn": "ncnn model", "darknet": "Darknet model",
    "tensorflow": "TensorFlow model", "tfjs": "TensorFlow.js model", "caffe": "Caffe model", "onnx": "ONNX file",
}


def detect(path: str | os.PathLike | RemotePath) -> Format:
    """The format of ``path``; a wrong suffix still works because the bytes decide first."""
    source = model_path(path)
    probe = Probe.of(source)
    if not probe.is_dir and probe.size == 0:
        raise UnknownFormatError("empty file: not a model", path=str(source))
    known = unsupported.identify(probe)
    if known is not None:
        raise unsupported.refusal(*known, path=str(source))
    for fmt in FORMATS:
        if fmt.could_be(probe) and fmt.load_module().sniff(probe):
            return fmt
    if probe.part_of is not None:
        raise CompanionFileError(f"this file is part of the model {probe.part_of.name[:200]!r}: open that file",
                                 path=str(source))
    suffix = source.suffix.lower() if not probe.is_dir else ""  # a folder named x.npz is no .npz file
    for fmt in FORMATS:
        if suffix and suffix in fmt.suffixes and fmt.suffix_decides:
            return fmt
    head = probe.head[:8].hex(" ") if probe.head else "empty file" if not probe.is_dir else "a folder"
    notes = [*probe.notes, *(f"the {suffix} suffix says {f.name}, but the content is not {f.name}"
                             for f in FORMATS if suffix and suffix in f.suffixes)]
    extra = f"; {'; '.join(notes)}" if notes else ""
    raise UnknownFormatError(
        f"not a model file filtergrid knows (probed {', '.join(f.name for f in FORMATS)}; "
        f"starts with {head}){extra}",
        path=str(source),
    )


def resolve(path: str | os.PathLike | RemotePath, format: str | None = None) -> Format:
    """``format`` by name when given (``--format``), else :func:`detect`."""
    if format is None:
        return detect(path)
    try:
        return BY_NAME[format.lower()]
    except KeyError:
        choices = "; ".join(f"{f.name} ({f.title})" for f in FORMATS)
        raise FiltergridError(f"unknown format {format[:60]!r}; choose from {choices}") from None
