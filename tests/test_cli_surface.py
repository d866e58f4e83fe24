"""What the CLI shows and touches: names from files escaped, inputs never overwritten, forgiving options."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
from conftest import FIXTURES, assert_one_line_error
from safetensors.numpy import save_file

from filtergrid import untrusted

CNN = FIXTURES / "safetensors" / "cnn.safetensors"
NPZ = FIXTURES / "numpy" / "cs231n_digits.npz"


def _conv(name: str, path):
    save_file({name: np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)}, str(path))
    return path


def _raw_safetensors(path, name: str):
    """A header written by hand: a name with a lone surrogate, which no writer would produce."""
    data = np.zeros((4, 3, 3, 3), np.float32).tobytes()
    header = json.dumps({name: {"dtype": "F32", "shape": [4, 3, 3, 3], "data_offsets": [0, len(data)]}})
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + data)
    return path


def test_escape_sequences_in_tensor_names_never_reach_the_terminal(cli, tmp_path):
    model = _conv("\x1b]0;pwned\x07\x1b[2Jconv.weight", tmp_path / "m.safetensors")
    result = cli("render", model, "-o", tmp_path / "out.png")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b]0;pwned\\x07\\x1b[2Jconv.weight" in result.stdout
    error = cli("render", model, "--tensor", "\x1b[31mnope")
    assert_one_line_error(error, "\\x1b[31mnope")
    assert "\x1b" not in error.stderr


def test_a_lone_surrogate_in_a_name_is_shown_escaped(cli, tmp_path):
    model = _raw_safetensors(tmp_path / "m.safetensors", "conv\udc80.weight")
    result = cli("render", model, "-o", tmp_path / "out.png")
    assert result.returncode == 0, result.stderr
    assert "conv\\udc80.weight" in result.stdout


def test_long_names_are_bounded_in_messages():
    line = untrusted.terminal("x" * 10_000)
    assert len(line) < untrusted.MAX_LINE_CHARS + 40 and line.endswith("(8,000 more characters)")


@pytest.mark.parametrize("text, cell", [("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
                                        ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
                                        ("conv1.weight", "conv1.weight")])
def test_csv_cells_never_start_a_formula(text, cell):
    assert untrusted.csv_cell(text) == cell


def test_markup_in_names_is_not_interpreted():
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(untrusted.markup("[/bold][blink]x[/blink]"))
    assert console.export_text().strip() == "[/bold][blink]x[/blink]"


@pytest.mark.parametrize("command", ["convert", "render"])
def test_an_output_that_is_the_input_is_refused(cli, tmp_path, command):
    model = tmp_path / "in.npz"
    shutil.copy(NPZ, model)
    before = model.read_bytes()
    link = tmp_path / "link.npz"
    link.symlink_to(model)
    assert_one_line_error(cli(command, model, "-o", link), "is the input model")
    assert model.read_bytes() == before


def test_diff_refuses_to_overwrite_either_input(cli, tmp_path):
    model = tmp_path / "a.safetensors"
    shutil.copy(CNN, model)
    assert_one_line_error(cli("diff", CNN, model, "-o", model), "is the input model")


def test_option_values_ignore_case(cli, tmp_path):
    result = cli("render", CNN, "-n", "Symmetric", "--channels", "SPLIT", "--format", "SafeTensors",
                 "-o", tmp_path / "x.png")
    assert result.returncode == 0, result.stderr


def test_timeout_may_follow_the_subcommand(cli, tmp_path):
    result = cli("render", CNN, "-o", tmp_path / "x.png", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.png").exists()
    result = cli("convert", CNN, "--timeout=60", "-o", tmp_path / "x.npy")
    assert result.returncode == 0, result.stderr


def test_render_titles_labels_and_caps_from_the_command_line(cli, tmp_path):
    from PIL import Image

    out = tmp_path / "x.png"
    plain = cli("render", CNN, "-o", out, "--no-title", "--no-colorbar")
    size = Image.open(out).size
    dressed = cli("render", CNN, "-o", out, "--labels", "--title", "my \x1b[2J model", "--max-filters", "4")
    assert plain.returncode == dressed.returncode == 0, dressed.stderr
    assert "showing the first 4 of 8 (--max-filters)" in dressed.stdout
    assert Image.open(out).size != size


def test_inspect_shows_markup_and_escapes_in_names_as_text(cli, tmp_path):
    model = _conv("[/bold][blink]x\x1b[2J.weight", tmp_path / "m.safetensors")
    result = cli("inspect", model)
    assert result.returncode == 0, result.stderr
    assert "[/bold][blink]x\\x1b[2J.weight" in result.stdout and "\x1b" not in result.stdout


def test_inspect_reports_size_parameters_and_the_values_of_the_chosen_tensor(cli):
    import json

    data = json.loads(cli("inspect", CNN, "--json").stdout)
    weights = np.load(FIXTURES / "safetensors" / "cnn.expected.npz")["stored"]
    assert data["file_bytes"] == CNN.stat().st_size
    assert data["parameters"] == sum(int(np.prod(t["shape"])) for t in data["tensors"])
    assert data["stats"]["min"] == pytest.approx(float(weights.min()))
    assert data["stats"]["std"] == pytest.approx(float(weights.std()), rel=1e-5)
    table = cli("inspect", CNN).stdout
    assert f"{data['parameters']:,} parameters" in table and "shown as 8 filters of 5x5x3" in table
