"""PyTorch checkpoints read without torch, compared with what torch itself read back.

Fixtures come from ``fixtures/make_pytorch.py`` (torch 2.13); hostile files reuse them with their
pickles replaced (see ``hostile.py``). No test here needs torch.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hostile import (
    CANARY,
    LEGACY_PAYLOADS,
    NESTED_PICKLE,
    PAYLOADS,
    assemble,
    legacy_file,
    nested_pickle_payload,
    tensor,
    torch_zip,
)

import filtergrid
from filtergrid import converters, limits
from filtergrid.api import open_model
from filtergrid.converters import pytorch, torchscript
from filtergrid.converters.base import Probe
from filtergrid.errors import CorruptFileError, FiltergridError, LimitError, TensorNotFoundError, UnsafeFileError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
MANIFEST = json.loads((FIXTURES / "pytorch" / "manifest.json").read_text())
REAL_ZIP = FIXTURES / "pytorch" / "state_dict.pt"
REAL_LEGACY = FIXTURES / "pytorch" / "state_dict_legacy.pth"


def entry_id(entry: dict) -> str:
    return entry["file"].split("/")[-1] + ("[" + entry["options"]["tensor"] + "]" if "options" in entry else "")


@pytest.mark.parametrize("entry", MANIFEST, ids=entry_id)
def test_load_matches_torch(entry: dict) -> None:
    path, options = FIXTURES / entry["file"], entry.get("options", {})
    expected = np.load(FIXTURES / entry["expected"])
    bank = filtergrid.load(path, format=entry["format"], **options)
    assert bank.provenance.tensor == options.get("tensor", entry["first"])
    assert bank.provenance.layout == entry["layout"]
    assert list(bank.shape) == entry["canonical_shape"]
    np.testing.assert_array_equal(bank.array, expected["canonical"])
    with open_model(path, entry["format"]) as (_, reader):
        stored = reader.read(bank.provenance.tensor)
    assert stored.dtype == expected["stored"].dtype
    np.testing.assert_array_equal(stored, expected["stored"])


@pytest.mark.parametrize("entry", MANIFEST, ids=entry_id)
def test_listing_is_state_dict_order(entry: dict) -> None:
    infos = filtergrid.tensors(FIXTURES / entry["file"], format=entry["format"])
    assert [i.name for i in infos] == entry["tensors"]
    first = next(i for i in infos if i.candidate)
    assert first.name == entry["first"] and "in module order" in first.role
    assert all(i.flatten == "CHW" for i in infos)


@pytest.mark.parametrize("entry", MANIFEST, ids=entry_id)
def test_sniffed_without_suffix(entry: dict, tmp_path: Path) -> None:
    copy = tmp_path / "model.weights"
    copy.write_bytes((FIXTURES / entry["file"]).read_bytes())
    probe = Probe.of(copy)
    assert torchscript.sniff(probe) == (entry["format"] == "torchscript")
    assert pytorch.sniff(probe)


def test_detect_picks_torch_formats() -> None:
    for fmt in converters.FORMATS:  # other converters live on other branches until merged
        if importlib.util.find_spec(fmt.module) is None:
            pytest.skip(f"{fmt.module} is not in this tree")
    for entry in MANIFEST:
        assert converters.detect(FIXTURES / entry["file"]).name == entry["format"]


def test_checkpoint_roles_name_their_source() -> None:
    roles = {e["file"]: next(i.role for i in filtergrid.tensors(FIXTURES / e["file"], format=e["format"]) if i.candidate)
             for e in MANIFEST}
    assert "'model_state_dict'" in roles["pytorch/checkpoint.pth"]
    assert "'state_dict'" in roles["pytorch/lightning.ckpt"]
    assert "TinyCNN" in roles["pytorch/whole_module.pt"]
    assert "TorchScript module" in roles["pytorch/torchscript.pt"]


def test_rows_reads_only_leading_rows() -> None:
    expected = np.load(FIXTURES / "pytorch" / "embedding.expected.npz")["stored"]
    with open_model(FIXTURES / "pytorch" / "embedding.pt", "pytorch") as (_, reader):
        np.testing.assert_array_equal(reader.read("model.embed_tokens.weight", rows=5), expected[:5])
    per_channel = np.load(FIXTURES / "pytorch" / "quantized.conv1_per_channel_weight.expected.npz")["stored"]
    with open_model(FIXTURES / "pytorch" / "quantized.pt", "pytorch") as (_, reader):
        np.testing.assert_array_equal(reader.read("conv1_per_channel.weight", rows=3), per_channel[:3])


def test_big_endian_archive(tmp_path: Path) -> None:
    """torch on a big-endian machine writes byteorder 'big' and swapped storages; emulate one."""
    out = tmp_path / "big.pt"
    with zipfile.ZipFile(REAL_ZIP) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename and "num_batches" not in info.filename:
                data = np.frombuffer(data, "<f4").astype(">f4").tobytes() if len(data) % 4 == 0 else data
            dst.writestr(info, data)
    listing = {i.name: i.dtype for i in filtergrid.tensors(out, format="pytorch")}
    assert listing["conv1.weight"] == "float32"
    expected = np.load(FIXTURES / "pytorch" / "state_dict.expected.npz")
    np.testing.assert_array_equal(filtergrid.load(out, format="pytorch").array, expected["canonical"])


def test_recompressed_archive(tmp_path: Path) -> None:
    """A torch zip someone re-zipped with deflate still reads, through the member stream."""
    out = tmp_path / "deflated.pt"
    with zipfile.ZipFile(REAL_ZIP) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    expected = np.load(FIXTURES / "pytorch" / "state_dict.expected.npz")
    np.testing.assert_array_equal(filtergrid.load(out, format="pytorch").array, expected["canonical"])


@pytest.mark.parametrize("cut", [10, 200, 2000, -100])
def test_truncated_files_fail_cleanly(cut: int, tmp_path: Path) -> None:
    for real in (REAL_ZIP, REAL_LEGACY):
        out = tmp_path / real.name
        out.write_bytes(real.read_bytes()[:cut])
        with pytest.raises(FiltergridError):
            filtergrid.load(out, format="pytorch")


def test_missing_storage_member(tmp_path: Path) -> None:
    out = tmp_path / "missing.pt"
    with zipfile.ZipFile(REAL_ZIP) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("/data/0"):
                dst.writestr(info, src.read(info))
    with pytest.raises(CorruptFileError, match="storage 0 is missing"):
        filtergrid.load(out, format="pytorch")


def test_pickle_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_PICKLE_BYTES", 100)
    for real in (REAL_ZIP, REAL_LEGACY):
        with pytest.raises(LimitError, match="MAX_PICKLE_BYTES"):
            filtergrid.load(real, format="pytorch")


def test_tensor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_TENSOR_BYTES", 1000)
    with pytest.raises(LimitError, match="MAX_TENSOR_BYTES"):
        filtergrid.load(REAL_ZIP, format="pytorch")


# Hostile files: real torch containers carrying the payloads of hostile.py.

def _containers(name: str, tmp_path: Path) -> list[Path]:
    made = [legacy_file(REAL_LEGACY, tmp_path / f"{name}.pth", LEGACY_PAYLOADS[name])]
    if name in PAYLOADS:
        made.append(torch_zip(REAL_ZIP, tmp_path / f"{name}.pt", PAYLOADS[name]))
    return made


@pytest.mark.parametrize("name", sorted(LEGACY_PAYLOADS))
def test_hostile_payloads_are_refused(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for path in _containers(name, tmp_path):
        with pytest.raises(FiltergridError) as caught:
            filtergrid.load(path, format="pytorch")
        assert "\n" not in str(caught.value)
        if name.startswith(("os_", "stack_global", "posix", "builtins_", "subprocess", "getattr", "functools",
                            "operator", "runpy", "torch_", "numpy", "inst_", "obj_")):
            assert isinstance(caught.value, UnsafeFileError)
            assert "refused to load global" in str(caught.value)
    assert not (tmp_path / CANARY).exists()


@pytest.mark.parametrize("payload, qualname", [("os_system_reduce", "posix.system"), ("builtins_eval", "builtins.eval"),
                                               ("subprocess_popen", "subprocess.Popen"),
                                               ("functools_partial", "functools.partial"),
                                               ("stack_global_protocol4", "posix.system")])
def test_refusal_names_the_global(payload: str, qualname: str, tmp_path: Path) -> None:
    pattern = f"refused to load global {qualname.replace('.', '[.]')}( [(]written [\\w.]+[)])?: it can run code"
    with pytest.raises(UnsafeFileError, match=pattern):
        filtergrid.load(torch_zip(REAL_ZIP, tmp_path / "x.pt", PAYLOADS[payload]), format="pytorch")


def test_nested_pickle_stays_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = torch_zip(REAL_ZIP, tmp_path / f"{NESTED_PICKLE}.pt", nested_pickle_payload())
    bank = filtergrid.load(path, format="pytorch")
    assert bank.provenance.tensor == "conv.weight"
    assert not (tmp_path / CANARY).exists()


def test_traversal_member_name_is_refused(tmp_path: Path) -> None:
    data_pkl = zipfile.ZipFile(REAL_ZIP).read("state_dict/data.pkl")
    path = torch_zip(REAL_ZIP, tmp_path / "traversal.pt", data_pkl, {"state_dict/../../evil": b"x"})
    with pytest.raises(UnsafeFileError, match="outside the archive"):
        filtergrid.load(path, format="pytorch")


def test_legacy_file_reads_its_storage(tmp_path: Path) -> None:
    path = legacy_file(REAL_LEGACY, tmp_path / "ok.pth", assemble({"conv.weight": tensor(legacy=True)}))
    np.testing.assert_array_equal(filtergrid.load(path, format="pytorch", layout="matrix").array[0, :, :, 0],
                                  [[1, 2], [3, 4]])


def test_legacy_storage_size_past_end(tmp_path: Path) -> None:
    huge = (10**15).to_bytes(8, "little")
    path = legacy_file(REAL_LEGACY, tmp_path / "huge.pth", assemble({"conv.weight": tensor(legacy=True)}),
                       huge + b"\0" * 16)
    with pytest.raises(CorruptFileError, match="storage 0 spans"):
        filtergrid.load(path, format="pytorch")


def test_no_tensor_is_a_clear_error(tmp_path: Path) -> None:
    path = torch_zip(REAL_ZIP, tmp_path / "empty.pt", PAYLOADS["memo_cycle"])
    with pytest.raises(TensorNotFoundError):
        filtergrid.load(path, format="pytorch")


@pytest.mark.skipif(importlib.util.find_spec("filtergrid.cli") is None, reason="the CLI is not in this tree yet")
@pytest.mark.parametrize("name", ["os_system_reduce", "stack_global_protocol4", "functools_partial", "getattr_chain"])
def test_cli_refuses_hostile_files(name: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for path in _containers(name, tmp_path):
        run = subprocess.run([sys.executable, "-m", "filtergrid", "inspect", str(path), "--format", "pytorch"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode != 0
        assert "Traceback" not in run.stderr
    assert not (tmp_path / CANARY).exists()


def test_training_state_is_skipped_but_similar_names_are_not() -> None:
    from filtergrid.converters.torch_objects import StorageRef, TensorRef, model_tensors

    t = TensorRef(StorageRef("0", "float32", 4), 0, (2, 2), (2, 1), "float32")
    checkpoint = {"optimizer": {"state": {0: {"momentum_buffer": t}}, "param_groups": []},
                  "optim_proj.weight": t, "lr_schedulers": [t], "encoder": {"w": t}}
    found, where = model_tensors(checkpoint)
    assert [f.name for f in found] == ["optim_proj.weight", "encoder.w"] and where == "the state dict"
