"""PyTorch checkpoints read without torch, compared with what torch itself read back.

Fixtures come from ``fixtures/make_pytorch.py`` (torch 2.13); hostile files reuse them with their
pickles replaced (see ``hostile.py``). No test here needs torch.
"""

from __future__ import annotations

import importlib
import json
import os
import struct
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
from filtergrid.errors import (
    CorruptFileError,
    FiltergridError,
    LimitError,
    TensorNotFoundError,
    UnreadableFeatureError,
    UnsafeFileError,
)

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


def test_archive_without_byteorder_record_is_little_endian(tmp_path: Path) -> None:
    """torch before 1.12 wrote no byteorder record; its files are little-endian."""
    out = tmp_path / "old.pt"
    with zipfile.ZipFile(REAL_ZIP) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("/byteorder"):
                dst.writestr(info, src.read(info))
    expected = np.load(FIXTURES / "pytorch" / "state_dict.expected.npz")
    np.testing.assert_array_equal(filtergrid.load(out, format="pytorch").array, expected["canonical"])


def _deflated(out: Path, members: dict[str, bytes] | None = None) -> Path:
    """REAL_ZIP re-zipped with deflate (as someone's zip tool would), data.pkl and members replaced."""
    with zipfile.ZipFile(REAL_ZIP) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, (members or {}).get(info.filename, src.read(info)))
        for name, data in (members or {}).items():
            if name not in src.namelist():
                dst.writestr(name, data)
    return out


def test_recompressed_archive(tmp_path: Path) -> None:
    """A torch zip someone re-zipped with deflate still reads, through the member stream."""
    expected = np.load(FIXTURES / "pytorch" / "state_dict.expected.npz")
    np.testing.assert_array_equal(filtergrid.load(_deflated(tmp_path / "deflated.pt"), format="pytorch").array,
                                  expected["canonical"])


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


# Views torch saves as they are (fixtures/make_pytorch.py odd_tensors): every tensor as torch read it back.

ODD = [FIXTURES / "pytorch" / "odd_tensors.pt", FIXTURES / "pytorch" / "odd_tensors_legacy.pth"]


@pytest.mark.parametrize("path", ODD, ids=lambda p: p.name)
def test_broadcast_overlapping_offset_empty_and_0d_tensors_read_as_torch_reads_them(path: Path) -> None:
    """Stride 0, overlapping rows, storage offsets, zero, one and 0-d elements, a quantized scalar."""
    expected = np.load(path.with_name(path.name.split(".")[0] + ".readback.npz"))
    with open_model(path, "pytorch") as (_, reader):
        for name in expected.files:
            if name == "spectrum":
                with pytest.raises(UnreadableFeatureError, match="element type complex64 is not supported"):
                    reader.read(name)
                continue
            got = reader.read(name)
            assert isinstance(got, np.ndarray), name
            assert (got.dtype, got.shape) == (expected[name].dtype, expected[name].shape), name
            np.testing.assert_array_equal(got, expected[name], err_msg=name)


def test_work_per_byte_limit_counts_float32_bytes_per_stored_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    """conv.weight is 4x3x3x3 floats broadcast from 9 stored ones: 12 float32 bytes per stored byte."""
    expected = np.load(FIXTURES / "pytorch" / "odd_tensors.expected.npz")["canonical"]
    monkeypatch.setattr(limits, "MAX_WORK_PER_BYTE", 12)
    np.testing.assert_array_equal(filtergrid.load(ODD[0]).array, expected)
    monkeypatch.setattr(limits, "MAX_WORK_PER_BYTE", 11)
    with pytest.raises(LimitError, match="MAX_WORK_PER_BYTE") as caught:
        filtergrid.load(ODD[0])
    assert "float32 bytes decoded per stored byte of a tensor view (12)" in str(caught.value)


def test_tensor_bytes_limit_counts_a_views_bytes_in_its_element_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """An int64 scalar decodes to 4 float32 bytes but its view spans 8 stored bytes."""
    monkeypatch.setattr(limits, "MAX_TENSOR_BYTES", 4)
    with open_model(REAL_ZIP, "pytorch") as (_, reader):
        with pytest.raises(LimitError, match="MAX_TENSOR_BYTES") as caught:
            reader.read("bn1.num_batches_tracked")
    assert "bytes a tensor view spans (8)" in str(caught.value)


def _with_tensor(tmp_path: Path, extra: dict[str, bytes] | None = None, **view) -> Path:
    """state_dict.pt whose data.pkl is one tensor ``conv.weight`` described by ``view`` (hostile.tensor)."""
    return torch_zip(REAL_ZIP, tmp_path / "view.pt", assemble({"conv.weight": tensor(**view)}), extra)


@pytest.mark.parametrize("view, words", [
    ({"offset": -1}, "negative offset or stride (-1, [2, 1])"),
    ({"stride": (-2, 1), "offset": 2}, "negative offset or stride (2, [-2, 1])"),
    ({"numel": 4, "size": (3, 3), "stride": (3, 1)}, "tensor view into storage 0 declares [9] float32"),
    ({"key": "11", "numel": 8}, "storage 11 declares [32] uint8 = 32 bytes but only 16 bytes exist"),
])
def test_a_view_outside_its_storage_is_refused_with_its_numbers(view: dict, words: str, tmp_path: Path) -> None:
    """No writer makes these: a negative offset or stride, a view past its storage's declared
    elements, a storage declaring more elements (8 floats) than its member holds (16 bytes)."""
    path = _with_tensor(tmp_path, {"state_dict/data/11": bytes(16)} if view.get("key") == "11" else None, **view)
    with pytest.raises(CorruptFileError) as caught:
        filtergrid.load(path, format="pytorch", layout="matrix")
    assert words in str(caught.value)


def test_byteorder_other_than_little_or_big_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "middle.pt"
    with zipfile.ZipFile(REAL_ZIP) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, b"middle" if info.filename.endswith("/byteorder") else src.read(info))
    with pytest.raises(CorruptFileError, match="byteorder record says 'middle', not little or big"):
        filtergrid.load(out, format="pytorch")


def _patched(out: Path, member: str, central: dict[int, int] | None = None, local: dict[int, int] | None = None,
             source: Path = REAL_ZIP) -> Path:
    """``source`` with fields of ``member``'s zip records rewritten: {offset in the record: value},
    4-byte fields in the central directory, 2-byte ones in the local header (hostile: no writer does it)."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as z:
        header = z.getinfo(member).header_offset
        record = data.index(member.encode(), z.start_dir) - 46  # the name follows a 46-byte record
    for offset, value in (central or {}).items():
        struct.pack_into("<I", data, record + offset, value)
    for offset, value in (local or {}).items():
        struct.pack_into("<H", data, header + offset, value)
    out.write_bytes(bytes(data))
    return out


#: Central-directory and local-header field offsets (APPNOTE 4.3.7, 4.3.12).
SIZE, HEADER_OFFSET, EXTRA_LENGTH = 24, 42, 28


@pytest.mark.parametrize("central, local, words", [
    ({HEADER_OFFSET: 20_000}, None, "zip header of state_dict/data/0 spans bytes 20,000..20,030"),
    ({HEADER_OFFSET: 1495}, None, "zip member state_dict/data/0 has no local header"),
    (None, {EXTRA_LENGTH: 0xFFFF}, "zip member state_dict/data/0 spans bytes"),
])
def test_a_storage_member_whose_zip_records_point_outside_is_refused(central, local, words, tmp_path: Path) -> None:
    path = _patched(tmp_path / "moved.pt", "state_dict/data/0", central, local)
    with pytest.raises(CorruptFileError) as caught:
        filtergrid.load(path, format="pytorch")
    assert words in str(caught.value)


@pytest.mark.parametrize("cut, words", [(1500, "file ends inside zip header (6 of 30 bytes)"),
                                        (2000, "file ends inside storage 0")])
def test_a_checkpoint_cut_short_while_open_fails_naming_what_was_short(cut: int, words: str, tmp_path: Path) -> None:
    """Training overwrote the checkpoint after it was opened: reading its storage then comes up short."""
    for real in (REAL_ZIP, REAL_LEGACY):
        path = tmp_path / real.name
        path.write_bytes(real.read_bytes())
        with open_model(path, "pytorch") as (_, reader):
            os.truncate(path, cut if real is REAL_ZIP else 600)
            with pytest.raises(CorruptFileError) as caught:
                reader.read("conv1.weight")
        assert (words if real is REAL_ZIP else "file ends inside storage") in str(caught.value)


def test_deflated_storage_is_bounded_by_max_zip_member_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_ZIP_MEMBER_BYTES", 2399)  # data/0 (conv1.weight) holds 2,400 bytes
    with pytest.raises(LimitError, match="MAX_ZIP_MEMBER_BYTES") as caught:
        filtergrid.load(_deflated(tmp_path / "deflated.pt"), format="pytorch")
    assert "inflated bytes of compressed storage 0 (2,400)" in str(caught.value)


def test_damaged_deflated_storage_names_the_storage(tmp_path: Path) -> None:
    path = _deflated(tmp_path / "deflated.pt")
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("state_dict/data/0")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename)
    data[start:start + 40] = bytes(range(200, 240))  # not a deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="storage 0: damaged zip archive"):
        filtergrid.load(path, format="pytorch")


def test_deflated_storage_shorter_than_its_directory_says_names_the_storage(tmp_path: Path) -> None:
    """The central directory says 32 bytes; the member inflates to 16 (with their right CRC)."""
    pickled = assemble({"w": tensor(key="11", numel=8, size=(2, 4), stride=(4, 1))})
    path = _deflated(tmp_path / "short.pt", {"state_dict/data.pkl": pickled, "state_dict/data/11": bytes(16)})
    path = _patched(tmp_path / "short2.pt", "state_dict/data/11", {SIZE: 32}, source=path)
    with pytest.raises(CorruptFileError, match="file ends inside storage 11 [(]16 of 32 bytes[)]"):
        filtergrid.load(path, format="pytorch", layout="matrix", tensor="w")
