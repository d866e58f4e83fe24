"""GGUF converter: fixtures made by gguf-py's writer and quantizer, compared with its reader's values."""

from __future__ import annotations

import contextlib
import re
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, entry_id, group_entries

import filtergrid
from filtergrid import converters, limits
from filtergrid.errors import CorruptFileError, FiltergridError, LimitError, MissingExtraError

gguf = pytest.importorskip("gguf")

ENTRIES = group_entries("gguf")
LLM = FIXTURES / "gguf" / "tiny_llm_q8_0.gguf"


@pytest.mark.parametrize("entry", ENTRIES, ids=entry_id)
def test_every_tensor_matches_gguf_reader(entry: dict) -> None:
    """Each quantization type the writer can make (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, BF16, F16, F32)."""
    expected = np.load(FIXTURES / entry["expected"])
    with filtergrid.open_model(FIXTURES / entry["file"], format="gguf") as (_, reader):
        infos = reader.tensors()
        assert [i.name for i in infos] == entry["tensors"]
        assert [i.name for i in infos if i.candidate] == [entry["first"]]
        for info in infos:
            stored = reader.read(info.name)
            assert stored.shape == info.shape
            np.testing.assert_array_equal(stored, expected[f"tensor:{info.name}"])


def test_only_the_first_rows_are_dequantized(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = gguf.quants.dequantize

    def spy(data: np.ndarray, qtype):
        seen.append(data.shape)
        return real(data, qtype)

    monkeypatch.setattr(gguf.quants, "dequantize", spy)
    monkeypatch.setattr(limits, "MAX_HEATMAP_ROWS", 8)
    expected = np.load(FIXTURES / "gguf" / "tiny_llm_q8_0.expected.npz")
    bank = filtergrid.load(LLM, format="gguf")
    assert seen == [(8, 34)]  # 8 rows of one Q8_0 block (34 bytes) each
    np.testing.assert_array_equal(bank.array, expected["canonical"][:, :8])
    assert bank.kind == "matrix"


def test_sniffed_by_magic_not_suffix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(LLM.read_bytes())
    monkeypatch.setattr(converters, "FORMATS", (converters.BY_NAME["tflite"], converters.BY_NAME["gguf"]))
    assert converters.detect(renamed).name == "gguf"


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(MissingExtraError, match=r"filtergrid\[gguf\]"):
        filtergrid.load(LLM, format="gguf")


@pytest.mark.parametrize(("limit", "value"), [("MAX_TENSORS", 3), ("MAX_HEADER_BYTES", 100)])
def test_limits_apply(monkeypatch: pytest.MonkeyPatch, limit: str, value: int) -> None:
    monkeypatch.setattr(limits, limit, value)
    with pytest.raises(LimitError, match=limit):
        filtergrid.tensors(LLM, format="gguf")


# -- hostile files made by mutating the real ones --------------------------------------------


def _mutated(tmp_path: Path, at: int, fmt: str, value: int, source: Path = LLM) -> Path:
    data = bytearray(source.read_bytes())
    struct.pack_into(fmt, data, at, value)
    out = tmp_path / "bad.gguf"
    out.write_bytes(bytes(data))
    return out


def _after(needle: bytes, source: Path = LLM) -> int:
    """Position just after the first occurrence of ``needle`` (a key or tensor name) in the header."""
    return source.read_bytes().index(needle) + len(needle)


def test_truncated_files_are_refused(tmp_path: Path) -> None:
    data = LLM.read_bytes()
    cut = tmp_path / "cut.gguf"
    for n in sorted({*range(40), *range(40, len(data) - 32, 41)}):
        cut.write_bytes(data[:n])
        with pytest.raises(FiltergridError):
            filtergrid.load(cut, format="gguf")


@pytest.mark.parametrize(("where", "fmt", "value", "message"), [
    (4, "<I", 99, "version 99"),                  # after the magic: version, tensor count, kv count
    (4, "<I", 3 << 24, "big-endian"),
    (8, "<Q", 10**12, "tensors"),
    (8, "<Q", 2**64 - 1, "MAX_TENSORS"),
    (16, "<Q", 10**12, "metadata entries"),
    (24, "<Q", 2**60, "metadata key 0"),          # the first key's length
])
def test_lying_header_fields_are_refused(tmp_path: Path, where: int, fmt: str, value: int, message: str) -> None:
    with pytest.raises(FiltergridError, match=message):
        filtergrid.tensors(_mutated(tmp_path, where, fmt, value), format="gguf")


def test_huge_metadata_array_is_refused_quickly(tmp_path: Path) -> None:
    """gguf.GGUFReader loops without end on this file (items past the end take no bytes)."""
    at = _after(b"tokenizer.ggml.scores") + 4 + 4  # value type ARRAY, item type FLOAT32, then the count
    with pytest.raises(CorruptFileError, match="tokenizer.ggml.scores"):
        filtergrid.tensors(_mutated(tmp_path, at, "<Q", 2**40), format="gguf")
    at = _after(b"tokenizer.ggml.tokens") + 4 + 4  # an array of strings
    with pytest.raises(CorruptFileError, match="tokenizer.ggml.tokens"):
        filtergrid.tensors(_mutated(tmp_path, at, "<Q", 2**40), format="gguf")


@pytest.mark.parametrize(("skip", "fmt", "value", "message"), [
    (0, "<I", 9, "rank"),                    # n_dims
    (4 + 8, "<Q", 2**40, "spans"),           # ne[1] (vocab) lies
    (4 + 16, "<I", 999, "GGML type 999"),    # unknown type
    (4 + 20, "<Q", 2**50, "spans"),          # data offset past the end
    (4, "<Q", 33, "blocks"),                 # ne[0] not a whole number of Q8_0 blocks
])
def test_lying_tensor_info_is_refused(tmp_path: Path, skip: int, fmt: str, value: int, message: str) -> None:
    at = _after(b"token_embd.weight") + skip
    bad = _mutated(tmp_path, at, fmt, value)
    with pytest.raises(FiltergridError, match=message):
        filtergrid.load(bad, format="gguf")


def test_type_gguf_cannot_dequantize_is_named(tmp_path: Path) -> None:
    q8_1 = int(gguf.GGMLQuantizationType.Q8_1)  # no dequantizer in gguf-py; 36-byte blocks fit the file
    bad = _mutated(tmp_path, _after(b"token_embd.weight") + 4 + 16, "<I", q8_1)
    with pytest.raises(CorruptFileError, match="Q8_1"):
        filtergrid.load(bad, format="gguf")


@pytest.mark.parametrize("word", [0xFFFFFFFF, 0x7FFFFFF0, 0x00000003])
def test_every_overwritten_header_word_is_handled(tmp_path: Path, word: int) -> None:
    data = LLM.read_bytes()
    header_end = _after(b"output.weight") + 4 + 16 + 4 + 8
    bad = tmp_path / "bad.gguf"
    for pos in range(0, header_end - 4, 2):
        bad.write_bytes(data[:pos] + struct.pack("<I", word) + data[pos + 4:])
        with contextlib.suppress(FiltergridError):
            filtergrid.load(bad, format="gguf")


def test_unsupported_version_says_what_the_file_is(tmp_path: Path) -> None:
    path = tmp_path / "v7.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 7, 0, 0) + bytes(64))
    with pytest.raises(CorruptFileError, match=r"filtergrid cannot read this GGUF file: its version 7 is not supported"):
        filtergrid.tensors(path)


# -- mutation triage: read dtypes, rank-3/4 quantized tensors, scalars, refusal words ------------


def _written(tmp_path: Path, tensors: dict, name: str = "m.gguf") -> Path:
    """A GGUF file made by gguf-py's writer, each tensor (array, type) quantized by gguf-py."""
    path = tmp_path / name
    writer = gguf.GGUFWriter(path, "llama")
    for tensor_name, (data, qtype) in tensors.items():
        writer.add_tensor(tensor_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_plain_types_read_in_their_listed_dtype_and_block_types_as_float32() -> None:
    """F16 stays float16 (what the file stores); Q8_0 and BF16 are decoded to float32."""
    for path in (FIXTURES / "gguf" / "mmproj.gguf", LLM):
        with filtergrid.open_model(path, format="gguf") as (_, reader):
            for info in reader.tensors():
                stored = reader.read(info.name)
                plain = info.dtype in ("float32", "float16")
                assert stored.dtype == (np.dtype(info.dtype) if plain else np.float32), info


def test_quantized_tensors_of_rank_3_and_4_keep_their_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {"v.patch_embd.weight": (rng.normal(0, 1, (4, 3, 2, 64)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0),
               "cube": (rng.normal(0, 1, (2, 5, 32)).astype(np.float32), gguf.GGMLQuantizationType.Q4_0)}
    path = _written(tmp_path, tensors)
    framework = {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in gguf.GGUFReader(path).tensors}
    with filtergrid.open_model(path, format="gguf") as (_, reader):
        for name, (data, _) in tensors.items():
            stored = reader.read(name)
            assert stored.shape == data.shape
            np.testing.assert_array_equal(stored, framework[name].reshape(data.shape))


def test_a_scalar_tensor_is_listed_and_read(tmp_path: Path) -> None:
    path = _written(tmp_path, {"scale": (np.array(3.5, np.float32), gguf.GGMLQuantizationType.F32),
                               "token_embd.weight": (np.ones((4, 32), np.float32), gguf.GGMLQuantizationType.Q8_0)})
    with filtergrid.open_model(path, format="gguf") as (_, reader):
        assert [(i.name, i.shape) for i in reader.tensors()] == [("scale", ()), ("token_embd.weight", (4, 32))]
        assert reader.read("scale") == 3.5


def test_infinite_block_scales_decode_to_inf_and_nan_without_warnings(tmp_path: Path) -> None:
    block = np.zeros((1, 32), np.float32)
    block[0, 0] = 1.0
    path = _written(tmp_path, {"token_embd.weight": (block, gguf.GGMLQuantizationType.Q8_0)})
    data = bytearray(path.read_bytes())
    struct.pack_into("<e", data, gguf.GGUFReader(path).tensors[0].data_offset, np.inf)  # its one block's scale
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with filtergrid.open_model(path, format="gguf") as (_, reader):
            stored = reader.read("token_embd.weight")
    assert np.isinf(stored[0, 0]) and np.isnan(stored[0, 1])  # inf * 127 and inf * 0


def test_a_name_that_is_not_utf8_is_shown_cut_to_80_bytes(tmp_path: Path) -> None:
    name = "a" * 79 + "Z" + "b" * 40
    path = _written(tmp_path, {name: (np.ones((2, 32), np.float32), gguf.GGMLQuantizationType.F32)})
    data = path.read_bytes().replace(b"Z" + b"b" * 40, b"\xff" + b"b" * 40)
    path.write_bytes(data)
    with pytest.raises(CorruptFileError, match=re.escape(f"tensor name {(b'a' * 79 + bytes([255]))!r} is not UTF-8")):
        filtergrid.tensors(path, format="gguf")


def test_a_tensor_past_the_end_names_itself_and_whole_byte_counts(tmp_path: Path) -> None:
    bad = _mutated(tmp_path, _after(b"token_embd.weight") + 4 + 8, "<Q", 2**40)  # ne[1] (vocab) lies
    with pytest.raises(CorruptFileError, match=r"tensor 'token_embd.weight' spans bytes [\d,]+\.\.[\d,]+ but the file"):
        filtergrid.load(bad, format="gguf")
