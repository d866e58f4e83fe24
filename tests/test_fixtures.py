"""Every framework-made fixture (fixtures/*/manifest.json) against what its own framework read back.

The files under fixtures/ were written by torch, keras, tensorflow, onnx, gguf, numpy (see
fixtures/README.md); beside each, ``*.expected.npz`` holds the framework's own read of the first-layer
tensor (``stored``) and its (filters, H, W, C) arrangement computed with the framework's own ops
(``canonical``). filtergrid must agree exactly, with no framework installed.
"""

from __future__ import annotations


import numpy as np
import pytest
from conftest import FIXTURES, manifest_entries

import filtergrid
from filtergrid import converters

ENTRIES = manifest_entries()


def _needs_extra(entry: dict) -> None:
    fmt = converters.BY_NAME.get(entry["format"])
    assert fmt is not None, f"format {entry['format']!r} of {entry['file']} is not registered"
    if not fmt.installed():
        pytest.skip(f"needs pip install 'filtergrid[{fmt.extra}]'")


def _id(entry: dict) -> str:
    return entry["file"] + (f"[{entry['options'].get('tensor')}]" if entry.get("options") else "")


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_fixture_matches_its_framework(entry):
    _needs_extra(entry)
    path = FIXTURES / entry["file"]
    expected = np.load(FIXTURES / entry["expected"], allow_pickle=False)
    tolerance = entry.get("rtol", 0)
    bank = filtergrid.load(path, **entry.get("options", {}))
    p = bank.provenance
    assert p.format == entry["format"]
    wanted = entry.get("options", {}).get("tensor", entry["first"])
    assert p.tensor == wanted, f"picked {p.tensor!r}, the framework's first layer is {wanted!r}"
    assert p.layout.split()[0] == entry["layout"]
    assert list(bank.shape) == entry["canonical_shape"]
    with filtergrid.open_model(path) as (_, reader):
        stored = reader.read(p.tensor)
    if tolerance:
        np.testing.assert_allclose(np.asarray(stored, np.float32), expected["stored"].astype(np.float32), rtol=tolerance, atol=tolerance)
        np.testing.assert_allclose(bank.array, expected["canonical"], rtol=tolerance, atol=tolerance)
    else:
        np.testing.assert_array_equal(np.asarray(stored).astype(np.float32), expected["stored"].astype(np.float32))
        np.testing.assert_array_equal(bank.array, expected["canonical"])


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.get("tensors")], ids=_id)
def test_fixture_lists_tensors_in_model_order(entry):
    """Every tensor the framework reports is listed, and layer weights come in the framework's order."""
    _needs_extra(entry)
    infos = filtergrid.tensors(FIXTURES / entry["file"])
    listed = [t.name for t in infos]
    assert set(entry["tensors"]) <= set(listed), set(entry["tensors"]) - set(listed)
    weights = [t.name for t in infos if t.candidate and t.name in entry["tensors"]]
    assert weights == [n for n in entry["tensors"] if n in weights]


def test_every_registered_format_has_a_fixture():
    covered = {e["format"] for e in ENTRIES}
    missing = [f.name for f in converters.FORMATS if f.name not in covered]
    assert not missing, f"formats without a framework-made fixture: {missing}"
