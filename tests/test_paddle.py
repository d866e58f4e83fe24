"""PaddlePaddle .pdparams: fixtures saved by paddle.save, read back by paddle.load."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, assert_one_line_error, entry_id, group_entries

import filtergrid
from filtergrid import converters
from filtergrid.errors import CorruptFileError, FiltergridError, UnsafeFileError

ENTRIES = group_entries("paddle")
CONV = FIXTURES / "paddle" / "conv.pdparams"


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
