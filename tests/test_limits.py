"""Every named limit ends as one LimitError naming the limit and its FILTERGRID_ variable.

Each case does something that works with the default limits, then again with one limit lowered:
the second time it must fail with :class:`LimitError` (never CorruptFileError), saying which limit
and how to raise it (``limits.exceeded``/``limits.check``).
"""

from __future__ import annotations

import pickle
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

import filtergrid
from filtergrid import dtypes, limits, safepickle
from filtergrid.bank import FilterBank, Provenance
from filtergrid.converters import gguf, numpy as npz, pytorch, safetensors
from filtergrid.converters.torch_objects import model_tensors
from filtergrid.errors import LimitError


def _read_first(reader) -> None:
    try:
        for info in reader.tensors():
            reader.read(info.name)
    finally:
        reader.close()


def _deflated_torch_file(tmp_path: Path) -> Path:
    """``state_dict.pt`` rewritten with deflated members (torch writes them stored)."""
    target = tmp_path / "deflated.pt"
    with zipfile.ZipFile(FIXTURES / "pytorch/state_dict.pt") as source, \
            zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info))
    return target


def _nested_gguf_array(_: Path) -> None:
    """An array of one array of no bytes: two levels of GGUF array nesting."""
    buf = struct.pack("<IQ", gguf.ARRAY, 1) + struct.pack("<IQ", 0, 0)
    gguf._Header(buf, len(buf)).skip_value(gguf.ARRAY, "metadata 'x'")


def _orbax_load(_: Path) -> None:
    pytest.importorskip("tensorstore")
    filtergrid.load(FIXTURES / "orbax/named_zarr")


def _bank() -> FilterBank:
    provenance = Provenance("test", "numpy", "w", (64, 3, 3, 3), "float32", "OHWI", "test")
    return FilterBank(np.ones((64, 3, 3, 3), np.float32), provenance)


#: id -> (limit, lowered value, an action that succeeds under the default limits).
CASES: dict[str, tuple[str, int, Callable[[Path], object]]] = {
    "tensor-bytes-shape": ("MAX_TENSOR_BYTES", 100, lambda _: dtypes.check_shape((10, 10))),
    "tensor-bytes-torch-view": ("MAX_TENSOR_BYTES", 1000,
                                lambda _: _read_first(pytorch.open(FIXTURES / "pytorch/state_dict.pt"))),
    "pickle-bytes-loads": ("MAX_PICKLE_BYTES", 10, lambda _: safepickle.loads(pickle.dumps(list(range(50))))),
    "pickle-bytes-stream": ("MAX_PICKLE_BYTES", 100,
                            lambda _: _read_first(pytorch.open(FIXTURES / "pytorch/state_dict_legacy.pth"))),
    "pickle-bytes-data-pkl": ("MAX_PICKLE_BYTES", 100,
                              lambda _: _read_first(pytorch.open(FIXTURES / "pytorch/state_dict.pt"))),
    "nesting-pickle-tuples": ("MAX_NESTING", 3, lambda _: safepickle.loads(pickle.dumps(((((((1,),),),),),)))),
    "nesting-torch-containers": ("MAX_NESTING", 1, lambda _: model_tensors({"a": {"b": {"c": [1]}}})),
    "nesting-gguf-arrays": ("MAX_NESTING", 0, _nested_gguf_array),
    "tensors-torch": ("MAX_TENSORS", 2, lambda _: pytorch.open(FIXTURES / "pytorch/state_dict.pt").close()),
    "tensors-safetensors": ("MAX_TENSORS", 2,
                            lambda _: safetensors.open(FIXTURES / "safetensors/cnn.safetensors").close()),
    "tensors-npz": ("MAX_TENSORS", 2, lambda _: npz.open(FIXTURES / "numpy/cs231n_digits.npz").close()),
    "tensors-gguf": ("MAX_TENSORS", 2, lambda _: gguf.open(FIXTURES / "gguf/tiny_llm_f32.gguf").close()),
    "header-safetensors": ("MAX_HEADER_BYTES", 10,
                           lambda _: safetensors.open(FIXTURES / "safetensors/cnn.safetensors").close()),
    "header-gguf": ("MAX_HEADER_BYTES", 100, lambda _: gguf.open(FIXTURES / "gguf/tiny_llm_f32.gguf").close()),
    "header-hf-index": ("MAX_HEADER_BYTES", 600,
                        lambda _: filtergrid.tensors(FIXTURES / "huggingface/vit_sharded")),
    "zip-member-npz": ("MAX_ZIP_MEMBER_BYTES", 100, lambda _: npz.open(FIXTURES / "numpy/cs231n_digits.npz").close()),
    "zip-member-torch-storage": ("MAX_ZIP_MEMBER_BYTES", 100,
                                 lambda tmp: _read_first(pytorch.open(_deflated_torch_file(tmp)))),
    "output-pixels": ("MAX_OUTPUT_PIXELS", 100, lambda _: filtergrid.render(_bank())),
    "compression-ratio-orbax": ("MAX_COMPRESSION_RATIO", 0, _orbax_load),
}


@pytest.mark.parametrize("case", CASES)
def test_limit_is_a_limit_error_naming_it(case, tmp_path, monkeypatch):
    limit, lowered, action = CASES[case]
    action(tmp_path)  # fine under the default limits
    monkeypatch.setattr(limits, limit, lowered)
    with pytest.raises(LimitError) as caught:
        action(tmp_path)
    message = str(caught.value)
    assert f"{limit}={lowered:,}" in message and f"FILTERGRID_{limit}" in message, message


def test_hf_index_limit_is_the_index_not_a_shard(tmp_path, monkeypatch):
    """The index (~1 KB) trips the lowered limit before any shard header does."""
    shutil.copytree(FIXTURES / "huggingface/vit_sharded", tmp_path / "m")
    monkeypatch.setattr(limits, "MAX_HEADER_BYTES", 600)
    with pytest.raises(LimitError, match=r"index\.json"):
        filtergrid.tensors(tmp_path / "m")
