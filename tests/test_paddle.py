"""PaddlePaddle .pdparams (paddle.save) and inference models (paddle.jit.save: .pdmodel or PIR .json, with
.pdiparams), compared with Paddle's own read-back (paddle.load, paddle.static.load_inference_model)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, assert_one_line_error, entry_id, group_entries

import filtergrid
from filtergrid import converters
from filtergrid.errors import (
    CorruptFileError,
    FiltergridError,
    LimitError,
    UnsafeFileError,
)

ENTRIES = [e for e in group_entries("paddle") if e["format"] == "paddle"]
INFERENCE = [e for e in group_entries("paddle") if e["format"] == "paddle-inference"]
CONV = FIXTURES / "paddle" / "conv.pdparams"
PROGRAM = FIXTURES / "paddle" / "conv_program.pdmodel"


@pytest.mark.parametrize("entry", ENTRIES, ids=entry_id)
def test_first_weight_in_state_dict_order(entry: dict) -> None:
    infos = filtergrid.tensors(FIXTURES / entry["file"])
    assert [i.name for i in infos] == entry["tensors"]  # the dict's own order, not sorted
    first = next(i for i in infos if i.candidate)
    assert (first.name, first.layout, first.flatten) == (entry["first"], entry["layout"], "CHW")


def test_detected_by_content_before_pytorch() -> None:
    assert converters.detect(CONV).name == "paddle"


def test_truncated_and_lying_files_give_one_line_errors(tmp_path: Path, cli) -> None:
    data = CONV.read_bytes()
    cut = tmp_path / "cut.pdparams"
    for n in (1, 16, 100, len(data) // 2, len(data) - 1):
        cut.write_bytes(data[:n])
        with pytest.raises(FiltergridError):
            filtergrid.load(cut)
    assert_one_line_error(cli("render", cut, "-o", tmp_path / "out.png"))
    # the first weight's shape (4 BININT1 dims 6, 1, 3, 3) claims 60 filters
    lying = tmp_path / "lying.pdparams"
    lying.write_bytes(data.replace(b"K\x06K\x01K\x03K\x03t", b"K\x3cK\x01K\x03K\x03t", 1))
    with pytest.raises(CorruptFileError, match="declares"):
        filtergrid.load(lying)


def test_code_in_the_pickle_is_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (eval, ("1",))

    bad = tmp_path / "evil.pdparams"
    bad.write_bytes(pickle.dumps({"0.weight": np.zeros((2, 2), np.float32), "x": Payload()}, protocol=4))
    with pytest.raises(UnsafeFileError):
        filtergrid.load(bad)


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "objects.pdparams"
    bad.write_bytes(pickle.dumps({"0.weight": np.array([[1, "a"]], dtype=object)}, protocol=4))
    with pytest.raises(FiltergridError):
        filtergrid.load(bad)


def test_both_program_formats_are_fixtures() -> None:
    assert {Path(e["file"]).suffix for e in INFERENCE} == {".pdmodel", ".json"}


@pytest.mark.parametrize("entry", INFERENCE, ids=entry_id)
def test_inference_model_matches_paddle(entry: dict) -> None:
    """The first op on the feed picks the weight; every parameter Paddle loads is listed, first one first."""
    path = FIXTURES / entry["file"]
    infos = filtergrid.tensors(path)
    assert sorted(i.name for i in infos) == entry["tensors"]
    assert [i.name for i in infos if i.candidate] == [entry["first"]]
    assert (infos[0].name, infos[0].layout) == (entry["first"], entry["layout"])
    expected = np.load(FIXTURES / entry["expected"])
    bank = filtergrid.load(path)
    np.testing.assert_array_equal(bank.array, expected["canonical"])
    with filtergrid.open_model(path) as (_, reader):
        np.testing.assert_array_equal(reader.read(entry["first"]), expected["stored"])


@pytest.mark.parametrize("entry", INFERENCE, ids=entry_id)
def test_pdiparams_opens_its_program(entry: dict) -> None:
    params = (FIXTURES / entry["file"]).with_suffix(".pdiparams")
    assert converters.detect(params).name == "paddle-inference"
    assert filtergrid.load(params).provenance.tensor == entry["first"]


def _copy(tmp_path: Path, params: bytes, program: Path = PROGRAM) -> Path:
    (tmp_path / ("model" + program.suffix)).write_bytes(program.read_bytes())
    (tmp_path / "model.pdiparams").write_bytes(params)
    return tmp_path / ("model" + program.suffix)


def test_pdiparams_alone_asks_for_its_program(tmp_path: Path, cli) -> None:
    alone = tmp_path / "model.pdiparams"
    alone.write_bytes(PROGRAM.with_suffix(".pdiparams").read_bytes())
    assert_one_line_error(cli("render", alone, "-o", tmp_path / "out.png"), "model.pdmodel or model.json")


@pytest.mark.parametrize("program", [PROGRAM, FIXTURES / "paddle" / "conv_pir.json"], ids=lambda p: p.suffix)
def test_truncated_pdiparams_give_one_line_errors(tmp_path: Path, cli, program: Path) -> None:
    data = program.with_suffix(".pdiparams").read_bytes()
    for n in (0, 3, 20, 40, len(data) // 2, len(data) - 1):
        model = _copy(tmp_path, data[:n], program)
        with pytest.raises(FiltergridError):
            filtergrid.load(model)
    assert_one_line_error(cli("render", model, "-o", tmp_path / "out.png"), "bytes")


def test_lying_dims_give_one_line_errors(tmp_path: Path, cli) -> None:
    data = PROGRAM.with_suffix(".pdiparams").read_bytes()
    # the first record is conv2d_0.b_0: desc size 4, TensorDesc data_type FP32 (08 05), dims [6] (10 06)
    assert data[16:24] == b"\x04\0\0\0\x08\x05\x10\x06"
    model = _copy(tmp_path, data[:22] + b"\x10\x3c" + data[24:])  # claims 60 values
    with pytest.raises(CorruptFileError, match="stored as \\[60\\]|declares"):
        filtergrid.load(model)
    assert_one_line_error(cli("render", model, "-o", tmp_path / "out.png"))
    huge = data[:22] + b"\x10\x80\x80\x40" + data[24:]  # 2**20 values, in a 9 KB file
    model = _copy(tmp_path, huge[:16] + (6).to_bytes(4, "little") + huge[20:])
    with pytest.raises(CorruptFileError, match="declares"):
        filtergrid.load(model)


def test_desc_size_is_a_named_limit(tmp_path: Path) -> None:
    data = bytearray(PROGRAM.with_suffix(".pdiparams").read_bytes())
    data[16:20] = (2**31 - 1).to_bytes(4, "little")
    with pytest.raises(LimitError, match="MAX_HEADER_BYTES"):
        filtergrid.load(_copy(tmp_path, bytes(data)))


def test_program_without_its_pdiparams_says_so(tmp_path: Path) -> None:
    (tmp_path / "model.pdmodel").write_bytes(PROGRAM.read_bytes())
    with pytest.raises(FiltergridError, match="model.pdiparams"):
        filtergrid.load(tmp_path / "model.pdmodel")


def test_bytes_after_the_last_record_are_refused(tmp_path: Path) -> None:
    """Records that do not add up to the file mean the program and the values disagree."""
    data = PROGRAM.with_suffix(".pdiparams").read_bytes()
    with pytest.raises(CorruptFileError, match="bytes after its 4 parameters"):
        filtergrid.load(_copy(tmp_path, data + b"\0" * 8))


def test_array_bytes_are_read_in_place_not_counted_as_pickle(tmp_path, monkeypatch) -> None:
    """A .pdparams holds its arrays inline: their bytes are views of the mapped file, so a state dict
    far larger than MAX_PICKLE_BYTES opens, and only the shown array is copied."""
    from filtergrid import limits

    weight = np.arange(64 * 3 * 7 * 7 * 40, dtype=np.float32).reshape(64 * 40, 3, 7, 7)  # 2.4 MB
    path = tmp_path / "big.pdparams"
    with path.open("wb") as f:
        pickle.dump({"conv.weight": weight, "fc.weight": np.ones((1024, 1024), np.float32)}, f, protocol=4)
    monkeypatch.setattr(limits, "MAX_PICKLE_BYTES", 64 * 1024)
    with filtergrid.open_model(path) as (_, reader):
        np.testing.assert_array_equal(reader.read("conv.weight"), weight)
