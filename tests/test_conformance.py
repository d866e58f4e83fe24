"""The Reader contract, checked for every format in ``FORMATS`` on a committed fixture of each.

Like imageio v3's plugin suite: one set of checks every converter must pass (see
``filtergrid.converters.base.Reader``). A format added to ``FORMATS`` is picked up here on its own
and fails until the fixtures hold a file of it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, manifest_entries

from filtergrid.converters import FORMATS
from filtergrid.errors import FiltergridError, TensorNotFoundError

#: One fixture file per (format, file), in manifest order (a file listed twice is checked once).
FIXTURE_FILES = list(dict.fromkeys((e["format"], e["file"]) for e in manifest_entries()))
FORMATS_WITH_FIXTURES = {fmt for fmt, _ in FIXTURE_FILES}


def _open(fmt: str, file: str | Path):
    """The reader of ``file`` (relative to the fixtures, or a path); skipped when its extra is missing."""
    found = next(f for f in FORMATS if f.name == fmt)
    if not found.installed():
        pytest.skip(f"needs pip install 'filtergrid[{found.extra}]'")
    return found.load_module().open(FIXTURES / file)


def _ids(case: tuple[str, str]) -> str:
    return f"{case[0]}:{Path(case[1]).name}"


@pytest.mark.parametrize("fmt", [f.name for f in FORMATS])
def test_every_format_has_a_fixture(fmt):
    assert fmt in FORMATS_WITH_FIXTURES, (
        f"format {fmt!r} is in FORMATS but no fixture has \"format\": \"{fmt}\": write one with the real "
        f"framework from a seeded fixtures/make_<group>.py and add its manifest.json entry through "
        f"fixtures/fixturelib.py (see fixtures/README.md); tests/test_conformance.py then checks its Reader")


@pytest.mark.parametrize("case", FIXTURE_FILES, ids=_ids)
def test_listing_is_stable_across_opens(case):
    first, second = _open(*case), _open(*case)
    try:
        assert first.tensors(), "a fixture lists at least one tensor"
        assert first.tensors() == second.tensors()
        assert first.tensors() == first.tensors()
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("case", FIXTURE_FILES, ids=_ids)
@pytest.mark.parametrize("unknown", ["no such tensor", "", "\x1b[2J" + "x" * 5000])
def test_unknown_name_is_tensor_not_found(case, unknown):
    reader = _open(*case)
    try:
        with pytest.raises(TensorNotFoundError) as caught:
            reader.read(unknown)
        assert len(str(caught.value)) < 400 and "\x1b" not in str(caught.value)
    finally:
        reader.close()


def _rows_case(reader) -> tuple[str, int] | None:
    """A readable tensor with more than one row, or None."""
    for info in reader.tensors():
        if info.candidate and len(info.shape) >= 2 and info.shape[0] > 1:
            return info.name, info.shape[0]
    return None


@pytest.mark.parametrize("case", FIXTURE_FILES, ids=_ids)
def test_rows_is_honoured_or_ignored(case):
    """``read(name, rows=k)`` returns the first k rows, or every row (a reader may ignore ``rows``)."""
    reader = _open(*case)
    try:
        found = _rows_case(reader)
        if found is None:
            pytest.skip("no tensor with more than one row")
        name, length = found
        whole = reader.read(name)
        assert whole.shape[0] == length
        part = reader.read(name, rows=1)
        assert part.shape[0] in (1, length) and part.shape[1:] == whole.shape[1:]
        np.testing.assert_array_equal(part[:1], whole[:1])
        assert part.dtype == whole.dtype
    finally:
        reader.close()


@pytest.mark.parametrize("case", FIXTURE_FILES, ids=_ids)
def test_every_listed_tensor_reads_or_fails_typed(case):
    """Reading each listed tensor gives an array of its listed shape, or a FiltergridError."""
    reader = _open(*case)
    try:
        for info in reader.tensors():
            try:
                values = reader.read(info.name)
            except FiltergridError:
                continue
            assert isinstance(values, np.ndarray) and values.shape == tuple(info.shape), info.name
    finally:
        reader.close()


@pytest.mark.parametrize("case", FIXTURE_FILES, ids=_ids)
def test_close_is_idempotent(case):
    reader = _open(*case)
    reader.tensors()
    reader.close()
    reader.close()


def _damaged_copy(source: Path, target: Path) -> Path:
    """``source`` cut in half (for a folder: its largest file cut in half)."""
    if source.is_dir():
        shutil.copytree(source, target)
        victim = max((p for p in target.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    else:
        shutil.copyfile(source, target)
        victim = target
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    return target


@pytest.mark.parametrize("case", FIXTURE_FILES, ids=_ids)
def test_damaged_file_fails_typed(case, tmp_path):
    """A file cut in half opens, lists and reads, or fails with a FiltergridError: nothing else."""
    fmt, file = case
    damaged = _damaged_copy(FIXTURES / file, tmp_path / Path(file).name)
    try:
        reader = _open(fmt, damaged)
    except FiltergridError:
        return
    try:
        for info in reader.tensors():
            try:
                reader.read(info.name)
            except FiltergridError:
                pass
    except FiltergridError:
        pass
    finally:
        reader.close()


def test_unknown_format_name_lists_every_format_with_its_title():
    from filtergrid.converters import resolve

    with pytest.raises(FiltergridError) as caught:
        resolve(FIXTURES / "numpy/conv_bank.npy", "nope")
    for f in FORMATS:
        assert f"{f.name} ({f.title})" in str(caught.value)
