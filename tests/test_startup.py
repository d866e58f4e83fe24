"""Start-up stays cheap: each command imports only what it uses (issue 5, item 3)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest
from conftest import FIXTURES, manifest_entries

import filtergrid
from filtergrid.cli import COMMANDS

#: Modules a command may import only when it needs them.
HEAVY = ("numpy", "PIL", "cmap", "h5py", "onnx", "rich", "safetensors", "importlib.metadata",
         "filtergrid.safepickle")


def imported_by(*argv: str, cwd) -> list[str]:
    """Which HEAVY modules a fresh ``filtergrid ARGV`` process has imported when it exits."""
    code = (
        "import json, sys\n"
        "from filtergrid.cli import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stderr.strip().splitlines()[-1])


def test_help_and_version_import_no_numpy(tmp_path):
    assert imported_by("--help", cwd=tmp_path) == []
    assert imported_by("--version", cwd=tmp_path) == []


@pytest.mark.parametrize("model", ["onnx/cnn.onnx", "safetensors/cnn.safetensors", "numpy/conv_bank.npy"])
def test_convert_imports_numpy_only(model, tmp_path):
    assert imported_by("convert", str(FIXTURES / model), "-o", "bank.npy", "-q", cwd=tmp_path) == ["numpy"]


def test_render_with_default_colours_imports_numpy_and_pillow_only(tmp_path):
    used = imported_by("render", str(FIXTURES / "onnx/cnn.onnx"), "-o", "grid.png", "-q", cwd=tmp_path)
    assert used == ["numpy", "PIL"]


def test_short_help_matches_each_command():
    """``--help`` lists commands from COMMANDS without importing them; it must say what they say."""
    for name, (module, short_help) in COMMANDS.items():
        command = importlib.import_module(f"filtergrid.cli.{module}").command
        assert short_help == command.get_short_help_str(10**6)


def test_version_is_the_packaged_one():
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("filtergrid")
    except PackageNotFoundError:
        pytest.skip("filtergrid is not installed")
    assert filtergrid.__version__ == installed


def test_basic_colors_are_cmaps():
    """The default colours skip the cmap import; they must be the colours cmap would give."""
    import cmap

    from filtergrid.renderer.colormaps import BASIC_COLORS

    for name, rgb in BASIC_COLORS.items():
        assert tuple(int(v) for v in cmap.Color(name).rgba8[:3]) == rgb


@pytest.mark.parametrize("preset", [None, "4"])
def test_command_asks_numpy_for_one_blas_thread(monkeypatch, preset):
    """filtergrid multiplies no matrices; OpenBLAS's thread pool only slows start-up. A user's setting wins."""
    from filtergrid.cli import main

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", preset or "unset")  # so that teardown restores the variable
    if preset is None:
        monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ["OPENBLAS_NUM_THREADS"] == (preset or "1")


def test_format_heads_only_skip_modules_whose_sniff_says_no():
    """Detection skips importing a converter when the file's first bytes rule it out; that shortcut
    must never hide a format its own ``sniff`` would have claimed."""
    from filtergrid.converters import FORMATS, detect
    from filtergrid.converters.base import Probe

    paths = [FIXTURES / e["file"] for e in manifest_entries()] + sorted(FIXTURES.glob("*/*.*"))
    for path in dict.fromkeys(paths):
        probe = Probe.of(path)
        claimed = next((f for f in FORMATS if f.load_module().sniff(probe)), None)
        for fmt in FORMATS:
            if not fmt.could_be(probe):
                assert not fmt.load_module().sniff(probe), (path, fmt.name)
        if claimed is not None:
            assert detect(path) == claimed, path
