"""The command line as a user meets it: real processes, exit codes, one-line errors, files written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from PIL import Image
from safetensors.numpy import save_file

rng = np.random.default_rng(3)


@pytest.fixture
def cnn(tmp_path):
    path = tmp_path / "cnn.safetensors"
    save_file({"conv1.weight": rng.standard_normal((16, 3, 5, 5)).astype(np.float32),
               "conv1.bias": np.zeros(16, np.float32),
               "fc.weight": rng.standard_normal((10, 64)).astype(np.float32)}, path)
    return path


def test_render_writes_png_with_provenance(cnn, tmp_path):
    out = tmp_path / "grid.png"
    result = run_cli("render", cnn, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "16 filters of 5x5x3" in result.stdout and "conv1.weight" in result.stdout
    image = Image.open(out)
    assert image.mode == "RGB" and image.text["tensor"] == "conv1.weight"
    assert not list(tmp_path.glob(".*.tmp"))


def test_render_default_output_name_and_options(cnn, tmp_path):
    result = run_cli("render", cnn, "--tensor", "fc.weight", "--image-shape", "8x8x1", "--cmap", "viridis", "--cols", "5",
                     "--normalize", "symmetric", "--scale", "3", "--pad", "1", "--no-title", "--no-colorbar",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    image = Image.open(tmp_path / "cnn-filters.png")
    assert image.size == (5 * (8 * 3 + 1) + 1, 2 * (8 * 3 + 1) + 1)


def test_inspect_json_lists_candidates_and_choice(cnn):
    result = run_cli("inspect", cnn, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["format"] == "safetensors" and data["chosen"] == "conv1.weight"
    assert data["canonical_shape"] == [16, 5, 5, 3]
    assert [t["name"] for t in data["tensors"]] == ["conv1.bias", "conv1.weight", "fc.weight"]
    table = run_cli("inspect", cnn)
    assert table.returncode == 0 and "conv1.weight" in table.stdout


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".safetensors"])
def test_convert_writes_the_canonical_array(cnn, tmp_path, suffix):
    out = tmp_path / f"bank{suffix}"
    result = run_cli("convert", cnn, "-o", out)
    assert result.returncode == 0, result.stderr
    from safetensors.numpy import load_file

    array = (np.load(out) if suffix == ".npy" else np.load(out)["filters"] if suffix == ".npz"
             else load_file(out)["filters"])
    assert array.dtype == np.float32 and array.shape == (16, 5, 5, 3)
    if suffix == ".npz":
        assert json.loads(np.load(out)["filtergrid.bank"].tobytes())["provenance"]["tensor"] == "conv1.weight"


@pytest.mark.parametrize("args,needles", [
    (["render", "missing.onnx"], ["no such file"]),
    (["render", "{cnn}", "--tensor", "nope"], ["no tensor named 'nope'", "conv1.weight"]),
    (["render", "{text}"], ["not a model file", "probed"]),
    (["render", "{empty}"], ["empty file"]),
    (["render", "{cnn}", "--image-shape", "3x3"], ["image shape"]),
    (["render", "{cnn}", "--cmap", "no-such-map"], ["colormap"]),
    (["render", "{cnn}", "-o", "{tmp}/x.unknownext"], []),
    (["convert", "{cnn}", "-o", "{tmp}/x.txt"], [".npy"]),
    (["render", "{cnn}", "--layout", "HWIO", "--tensor", "fc.weight"], ["rank-4"]),
    (["render", "{cnn}", "--bogus"], ["--bogus"]),
    (["frobnicate"], ["frobnicate"]),
])
def test_every_error_is_one_line_and_exit_2(cnn, tmp_path, args, needles):
    (tmp_path / "notes.txt").write_text("hello, I am not a model\n")
    (tmp_path / "empty.onnx").write_bytes(b"")
    subst = {"{cnn}": str(cnn), "{text}": str(tmp_path / "notes.txt"), "{empty}": str(tmp_path / "empty.onnx"),
             "{tmp}": str(tmp_path)}
    argv = []
    for a in args:
        for k, v in subst.items():
            a = a.replace(k, v)
        argv.append(a)
    assert_one_line_error(run_cli(*argv, cwd=tmp_path), *needles)


def test_version_and_help():
    assert run_cli("--version").stdout.startswith("filtergrid ")
    helptext = run_cli("--help").stdout
    for command in ("render", "inspect", "convert", "demo"):
        assert command in helptext


def test_inspect_of_huge_weights_prints_no_numpy_warning(tmp_path):
    """Found by fuzzing: float32 statistics of weights near 3e38 overflowed and numpy's warning reached
    stderr; they are computed in float64 now (shared with the audit's health record)."""
    path = tmp_path / "huge.npy"
    np.save(path, np.full((4, 3, 3, 3), 3e38, dtype=np.float32))
    result = run_cli("inspect", path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "std 0" in result.stdout and "mean 3e+38" in result.stdout, result.stdout
