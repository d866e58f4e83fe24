"""Formats filtergrid recognises but does not read: a clear refusal, exit 2, never a wrong reader."""

from __future__ import annotations

import struct

import h5py
import numpy as np
import pytest
from conftest import FIXTURES, run_cli

import filtergrid
from filtergrid import converters
from filtergrid.errors import UnknownFormatError, UnsupportedFormatError

#: The first bytes each format's own writer puts down (see filtergrid/converters/unsupported.py).
HEADS = {
    "TensorRT engine": b"ftrt" + b"\0" * 60,
    "ExecuTorch .pte": b"\x1c\0\0\0ET12" + b"\0" * 56,
    "MXNet .params": struct.pack("<QQQ", 0x112, 0, 1) + b"\0" * 40,
    "dlib .dat": b"\x01\x01\x01\x0dloss_metric_2" + b"\0" * 40,
    "Lua Torch7 .t7": struct.pack("<iii", 4, 1, 3) + b"V 1" + struct.pack("<i", 13) + b"nn.Sequential",
}


@pytest.mark.parametrize("name", HEADS)
def test_recognised_formats_are_refused_by_name(tmp_path, name):
    path = tmp_path / "model.bin"
    path.write_bytes(HEADS[name])
    with pytest.raises(UnsupportedFormatError, match=f"this is an? {name} file; filtergrid cannot read it because"):
        filtergrid.load(path)


def test_dlib_shape_predictor_signature(tmp_path):
    path = tmp_path / "shape_predictor_68_face_landmarks.dat"
    path.write_bytes(b"\x01\x01\x81\x88\x81\x01" + b"\x01" * 40)  # version 1, a -136 x -1 matrix
    with pytest.raises(UnsupportedFormatError, match="dlib"):
        filtergrid.load(path)


@pytest.mark.parametrize("version", [None, "1.2.2"])
def test_keras1_hdf5_is_refused(tmp_path, version):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"convolution2d_1"]
        group = f.create_group("convolution2d_1")
        group.attrs["weight_names"] = [b"convolution2d_1_W" if version is None else b"kernel:0"]
        group["convolution2d_1_W" if version is None else "kernel:0"] = np.ones((4, 1, 3, 3), np.float32)
        if version:
            f.attrs["keras_version"] = version
    with pytest.raises(UnsupportedFormatError, match="this is a Keras 1 HDF5 file"):
        filtergrid.load(path)


def test_keras2_fixtures_are_not_taken_for_keras1():
    for path in sorted((FIXTURES / "keras").glob("*.h5")):
        assert filtergrid.load(path).provenance.format == "keras-h5", path


def test_cli_exit_code_and_message(tmp_path):
    path = tmp_path / "engine.plan"
    path.write_bytes(HEADS["TensorRT engine"])
    result = run_cli("inspect", path)
    assert result.returncode == 2
    assert "this is a TensorRT engine file" in result.stderr


def test_a_suffix_never_sends_a_file_to_a_reader_that_says_no(tmp_path):
    path = tmp_path / "weights.pt"  # e.g. a Core ML weight blob renamed, or any unrelated data
    path.write_bytes(b"\x00\x11 not a pickle " * 20)
    with pytest.raises(UnknownFormatError, match="the .pt suffix says pytorch, but the content is not pytorch"):
        filtergrid.load(path)


def test_orbax_checkpoint_folder_without_its_extra_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(converters.Format, "installed", lambda self: self.package is None)  # no tensorstore
    folder = tmp_path / "checkpoint_100"
    (folder / "default").mkdir(parents=True)
    (folder / "_CHECKPOINT_METADATA").write_text("{}")
    with pytest.raises(UnsupportedFormatError, match="this is an Orbax checkpoint folder; filtergrid cannot read "
                       r"it because it needs the optional package tensorstore: pip install 'filtergrid\[orbax\]'"):
        filtergrid.load(folder)
