"""Orbax checkpoints: the newest step of a manager root, the sorted-key rule, and hostile folders.

The hostile folders are copies of the orbax-written fixtures with one thing changed by hand
(a lying ``.zarray`` or ``_METADATA``, a link, a missing array, a bomb chunk).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, run_cli

import filtergrid
from filtergrid import converters, limits
from filtergrid.audit import walk, worker
from filtergrid.converters import orbax
from filtergrid.errors import CorruptFileError, LimitError, UnsafeFileError, UnsupportedFormatError

ts = pytest.importorskip("tensorstore")

GROUP = FIXTURES / "orbax"


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(GROUP / name, tmp_path / name))


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _leaf(metadata: dict, name: str) -> dict:
    return metadata["tree_metadata"][str(tuple(name.split("/")))]


def test_a_manager_root_reads_its_newest_step_and_says_so():
    bank = filtergrid.load(GROUP / "manager")
    expected = np.load(GROUP / "manager.expected.npz")["canonical"]
    np.testing.assert_array_equal(bank.array, expected)
    assert "step 20, the newest of 2 steps" in bank.provenance.chosen_by
    older = filtergrid.load(GROUP / "manager" / "10")
    assert not np.array_equal(older.array, expected), "step 10 holds other weights than step 20"
    assert "item 'default' of the step folder" in older.provenance.chosen_by


def test_sorted_keys_are_said_and_the_unfed_convolution_is_first():
    infos = filtergrid.tensors(GROUP / "named_zarr")
    assert [i.name for i in infos if i.candidate] == ["params/stem/kernel", "params/head/kernel"]
    assert "JAX's sorted keys" in infos[0].role


def test_optimizer_moments_are_not_candidates():
    infos = filtergrid.tensors(GROUP / "cnn_trainstate")
    moments = [i for i in infos if i.name.startswith("opt_state/")]
    assert len([i for i in moments if "kernel" in i.name]) == 4 and not any(i.candidate for i in moments)


def test_rows_need_only_the_chunks_that_hold_them():
    zarray = orbax.parse_zarray(json.dumps({"zarr_format": 2, "shape": [100, 10], "chunks": [10, 5], "dtype": "<f4",
                                            "compressor": {"id": "zstd", "level": 1}, "filters": None,
                                            "order": "C", "fill_value": None}).encode(), "w")
    assert zarray.chunk_keys(15) == ["0.0", "0.1", "1.0", "1.1"]
    assert len(zarray.chunk_keys(None)) == 20


def test_rows_read_only_the_chunks_that_hold_them(tmp_path):
    """The dense kernel rewritten by tensorstore in 4 row chunks, the last one then deleted: the first
    rows still read (only chunk 0.0 is fetched), the whole array does not."""
    folder = _copy("named_zarr", tmp_path)
    array_folder = folder / "params.head.kernel"
    whole = ts.open({"driver": "zarr", "kvstore": f"file://{array_folder}/"}).result().read().result()
    shutil.rmtree(array_folder)
    metadata = {"shape": [36, 10], "chunks": [9, 10], "dtype": "<f4", "compressor": {"id": "zstd", "level": 1}}
    spec = {"driver": "zarr", "kvstore": f"file://{array_folder}/", "metadata": metadata}
    ts.open(spec, create=True).result().write(whole).result()
    (array_folder / "3.0").unlink()
    reader = orbax.open(folder)
    np.testing.assert_array_equal(reader.read("params/head/kernel", rows=5), whole[:5])
    with pytest.raises(CorruptFileError, match="chunk '3.0' is missing"):
        reader.read("params/head/kernel")


def test_a_zarray_that_claims_more_than_its_chunk_holds_is_refused(tmp_path):
    folder = _copy("named_zarr", tmp_path)
    big = [300, 300, 3, 4]

    def lie(meta: dict) -> None:
        meta["shape"] = meta["chunks"] = big
    _edit_json(folder / "params.stem.kernel" / ".zarray", lie)
    with pytest.raises(CorruptFileError, match="_METADATA says shape"):
        filtergrid.load(folder)
    _edit_json(folder / "_METADATA", lambda m: _leaf(m, "params/stem/kernel")["value_metadata"].update(write_shape=big))
    with pytest.raises(LimitError, match="MAX_COMPRESSION_RATIO"):
        filtergrid.load(folder)


def test_a_chunk_the_zarray_needs_but_the_folder_lacks_is_refused(tmp_path):
    folder = _copy("named_zarr", tmp_path)
    _edit_json(folder / "params.stem.kernel" / ".zarray", lambda m: m.update(shape=[6, 3, 3, 4]))
    _edit_json(folder / "_METADATA",
               lambda m: _leaf(m, "params/stem/kernel")["value_metadata"].update(write_shape=[6, 3, 3, 4]))
    with pytest.raises(CorruptFileError, match="chunk '1.0.0.0' is missing"):
        filtergrid.load(folder)


@pytest.mark.parametrize("group", ["named_zarr", "cnn_trainstate"])
def test_an_array_listed_in_the_metadata_but_missing_is_refused(group, tmp_path):
    folder = _copy(group, tmp_path)

    def add_ghost(meta: dict) -> None:
        first = "params/stem/kernel" if group == "named_zarr" else "params/Conv_0/kernel"
        leaf = json.loads(json.dumps(_leaf(meta, first)))
        leaf["key_metadata"][1]["key"] = "ghost"
        meta["tree_metadata"]["('params', 'ghost', 'kernel')"] = leaf
    _edit_json(folder / "_METADATA", add_ghost)
    with pytest.raises(CorruptFileError, match="'params/ghost/kernel' listed in _METADATA is missing"):
        filtergrid.tensors(folder)


@pytest.mark.parametrize("key", ["/etc/passwd", "x/../../../outside", "..", "C:/x"])
def test_metadata_keys_that_leave_the_folder_are_refused(key, tmp_path):
    folder = _copy("named_zarr", tmp_path)
    _edit_json(folder / "_METADATA", lambda m: _leaf(m, "params/stem/kernel").update(key_metadata=[{"key": key}]))
    with pytest.raises(UnsafeFileError):
        filtergrid.tensors(folder)


@pytest.mark.parametrize("group, victim", [("named_zarr", "params.stem.kernel"),
                                           ("cnn_trainstate", "ocdbt.process_0/manifest.ocdbt")])
def test_a_link_inside_the_checkpoint_is_refused(group, victim, tmp_path):
    folder = _copy(group, tmp_path)
    outside = tmp_path / "outside"
    (folder / victim).rename(outside)
    (folder / victim).symlink_to(outside)
    with pytest.raises(UnsafeFileError, match="is a symlink"):
        filtergrid.tensors(folder)


def test_a_fifo_inside_the_checkpoint_is_refused_before_tensorstore_blocks_on_it(tmp_path):
    folder = _copy("cnn_trainstate", tmp_path)
    os.mkfifo(folder / "d" / "0123456789abcdef0123456789abcdef")
    with pytest.raises(UnsafeFileError, match="is not a regular file"):
        filtergrid.tensors(folder)


def test_a_newest_step_that_links_out_of_the_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(GROUP / "manager" / "10", root / "10")
    shutil.copytree(GROUP / "manager" / "20", tmp_path / "elsewhere")
    (root / "20").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeFileError, match="outside the model's folder"):
        filtergrid.tensors(root)


def _zstd_bomb(count: int) -> bytes:
    """A zstd chunk (as tensorstore writes them) that inflates to ``count`` float32 zeros."""
    spec = {"driver": "zarr", "kvstore": {"driver": "memory"},
            "metadata": {"shape": [count], "chunks": [count], "dtype": "<f4", "compressor": {"id": "zstd", "level": 1}}}
    context = ts.Context()
    array = ts.open(spec, create=True, context=context).result()
    array.write(np.full(count, 0.0, np.float32)).result()
    return ts.KvStore.open({"driver": "memory"}, context=context).result().read("0").result().value


def test_a_chunk_that_inflates_beyond_its_declared_size_stops_at_it(tmp_path):
    folder = _copy("named_zarr", tmp_path)
    bomb = _zstd_bomb(16 * 1024**2)  # 64 MiB of zeros behind a 432-byte kernel
    assert len(bomb) < 64 * 1024
    (folder / "params.stem.kernel" / "0.0.0.0").write_bytes(bomb)
    with pytest.raises(CorruptFileError, match="tensorstore failed decoding"):
        filtergrid.load(folder)


def test_damaged_ocdbt_manifest_is_corrupt(tmp_path):
    folder = _copy("cnn_trainstate", tmp_path)
    (folder / "manifest.ocdbt").write_bytes(b"\x0c\xdb\x3a\x2a" + b"\xff" * 60)
    with pytest.raises(CorruptFileError, match="tensorstore failed .*manifest"):
        filtergrid.tensors(folder)


@pytest.mark.parametrize("text", ["not json", "[" * 100_000, '{"tree_metadata": 3}', "[]"])
def test_hostile_metadata_json_is_corrupt(text, tmp_path):
    folder = _copy("named_zarr", tmp_path)
    (folder / "_METADATA").write_text(text)
    with pytest.raises(CorruptFileError):
        filtergrid.tensors(folder)


def test_a_native_call_that_never_returns_is_abandoned(monkeypatch):
    monkeypatch.setattr(limits, "NATIVE_READ_SECONDS", 0.05)
    _, never = ts.Promise.new()
    with pytest.raises(LimitError, match="NATIVE_READ_SECONDS"):
        orbax._result(never, "waiting")


def test_without_tensorstore_the_folder_is_refused_with_the_install_line(tmp_path):
    code = ("import sys; sys.modules['tensorstore'] = None; from filtergrid.cli import main; "
            f"sys.argv = ['filtergrid', 'inspect', {str(GROUP / 'manager')!r}]; main()")
    import subprocess

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "this is an Orbax checkpoint folder; filtergrid cannot read it because" in result.stderr
    assert "pip install 'filtergrid[orbax]'" in result.stderr


def test_without_tensorstore_the_audit_says_unsupported(monkeypatch, tmp_path):
    monkeypatch.setattr(converters.Format, "installed", lambda self: self.package is None)
    record = worker.audit_file({"path": str(GROUP / "cnn_trainstate"), "is_folder": True, "out": str(tmp_path),
                                "grid": "grids/x.png"})
    assert record["status"] == "unsupported"
    assert "pip install 'filtergrid[orbax]'" in record["error"]


def test_the_cli_renders_inspects_and_audits_a_checkpoint_folder_as_one_model(tmp_path):
    rendered = run_cli("render", GROUP / "manager", "-o", tmp_path / "grid.png")
    assert rendered.returncode == 0, rendered.stderr
    assert "4 filters of 3x3x3" in rendered.stdout
    inspected = run_cli("inspect", GROUP / "cnn_trainstate", "--json")
    assert json.loads(inspected.stdout)["chosen"] == "params/Conv_0/kernel"
    found = walk.find_models([GROUP])
    folders = sorted(Path(f.path).name for f in found.models if f.is_folder)
    assert folders == ["cnn_trainstate", "manager", "named_zarr"], "each checkpoint is one model, no step or item"
    assert all(Path(f.path).parent == GROUP for f in found.models)


def test_the_unsupported_title_names_a_folder():
    with pytest.raises(UnsupportedFormatError, match="local folders only"):
        orbax.open("https://example.com/ckpt/")
