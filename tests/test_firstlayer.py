"""The first layer of stores that keep no model order, dense layers as images only with evidence,
files with no layer, and the round trips of ``convert`` (fixtures/make_firstlayer.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES, assert_one_line_error

import filtergrid
from filtergrid.converters.safetensors import ordered_listing
from filtergrid.firstlayer import order_by_evidence

GROUP = FIXTURES / "firstlayer"
ARCHITECTURES = json.loads((GROUP / "architectures.json").read_text())["architectures"]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_inferred_first_layer_is_the_one_the_forward_pass_applies_first(arch):
    """Listing + config.json as the model's own writer stored them; truth from forward hooks."""
    entry = ARCHITECTURES[arch]
    infos = ordered_listing([(n, tuple(s), d) for n, s, d in entry["tensors"]], entry["config"])
    chosen = next(i for i in infos if i.candidate)
    assert chosen.name == entry["first"], chosen.role
    assert chosen.role.startswith("inferred input layer: ") and "runner-up " in chosen.role


def test_a_plain_name_sort_would_be_wrong_for_most_architectures():
    """The table is no easy one: natural name order picks another tensor in most of them."""
    wrong = [arch for arch, e in ARCHITECTURES.items()
             if sorted((n for n, s, _ in e["tensors"] if n.endswith("weight")), key=filtergrid.converters.base.natural_key)[0] != e["first"]]
    assert len(wrong) >= 8, wrong


def test_without_evidence_the_listing_says_so():
    infos = ordered_listing([("a.weight", (16, 16), "F32"), ("b.weight", (16, 16), "F32")])
    assert infos[0].name == "a.weight"
    assert infos[0].role.startswith("no evidence of the input layer: first weight in natural name order")


def test_evidence_names_the_runner_up_and_inspect_shows_it(cli):
    result = cli("inspect", GROUP / "wav2vec2_tiny")
    assert result.returncode == 0, result.stderr
    assert "feature_extractor.conv_layers.0.conv.weight" in result.stdout
    assert "runner-up" in " ".join(result.stdout.split())


def test_whisper_picks_the_encoder_conv_over_the_decoder_embedding():
    entry = ARCHITECTURES["transformers/whisper"]
    entries = [(n, tuple(s), d) for n, s, d in entry["tensors"]]
    with_config = next(i for i in ordered_listing(entries, entry["config"]) if i.candidate)
    assert with_config.name == "encoder.conv1.weight"
    assert "config.json num_mel_bins=8" in with_config.role and "decoder.embed_tokens.weight" in with_config.role


# ---- dense layers: images only with evidence ----------------------------------------------------

def test_torch_linear_over_chw_images_is_drawn_as_those_images():
    """A conv-less model's input layer over 3072 inputs: 32x32x3 images unflattened C,H,W (torch's order)."""
    bank = filtergrid.load(GROUP / "mlp_chw.safetensors")
    expected = np.load(GROUP / "mlp_chw.expected.npz")["canonical"]
    assert bank.kind == "filters" and bank.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(bank.array, expected)
    assert any("input layer of a model with no conv" in n and "CHW" in n for n in bank.provenance.notes)


def test_inner_dense_layer_is_a_heatmap_and_inspect_says_why(cli):
    result = cli("inspect", "--json", GROUP / "gpt2_tiny", "--tensor", "h.0.attn.c_attn.weight")
    data = json.loads(result.stdout)
    assert data["kind"] == "matrix"
    assert any("not the input layer" in n for n in data["notes"]), data["notes"]


def test_dense_layer_of_a_conv_model_is_a_heatmap():
    bank = filtergrid.load(FIXTURES / "safetensors" / "cnn.safetensors", tensor="fc.weight")
    assert bank.kind == "matrix"
    assert any("not the input layer" in n for n in bank.provenance.notes), bank.provenance.notes


def test_image_shape_option_still_draws_any_dense_layer():
    bank = filtergrid.load(GROUP / "gpt2_tiny", tensor="h.0.mlp.c_proj.weight", image_shape="4x4x1")
    assert bank.kind == "filters" and bank.shape[1:] == (4, 4, 1)


# ---- no layer, no picture ------------------------------------------------------------------------

def test_a_file_with_no_layer_weight_is_refused_naming_its_tensors(cli, tmp_path):
    result = cli("render", GROUP / "metric_no_layer.safetensors", "-o", tmp_path / "x.png")
    assert_one_line_error(result, "no first-layer weight", "alpha", "beta")
    assert not (tmp_path / "x.png").exists()


def test_a_named_broadcast_parameter_is_wrapped_not_a_one_pixel_strip(cli, tmp_path):
    result = cli("render", GROUP / "metric_no_layer.safetensors", "--tensor", "alpha", "-o", tmp_path / "a.png")
    assert result.returncode == 0, result.stderr
    from PIL import Image

    width, height = Image.open(tmp_path / "a.png").size
    assert max(width, height) <= 4 * min(width, height), (width, height)
    bank = filtergrid.load(GROUP / "metric_no_layer.safetensors", tensor="alpha")
    assert bank.kind == "matrix" and bank.shape == (1, 25, 59, 1)
    assert any("wrapped" in n for n in bank.provenance.notes)


# ---- round trips ----------------------------------------------------------------------------------

SOURCES = [FIXTURES / "safetensors" / "cnn.safetensors", GROUP / "gpt2_tiny", GROUP / "mlp_chw.safetensors"]


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".safetensors"])
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_convert_output_reads_back_as_the_same_bank(cli, tmp_path, source, suffix):
    original = filtergrid.load(source)
    out = tmp_path / f"bank{suffix}"
    assert cli("convert", source, "-o", out).returncode == 0
    again = filtergrid.load(out)
    np.testing.assert_array_equal(again.array, original.array)
    assert again.kind == original.kind
    assert again.provenance == original.provenance
    second = tmp_path / f"again{suffix}"
    assert cli("convert", out, "-o", second).returncode == 0
    assert filtergrid.load(second).provenance == original.provenance
    assert cli("render", out, "-o", tmp_path / "x.png").returncode == 0
    inspected = json.loads(cli("inspect", "--json", out).stdout)
    assert inspected["chosen"] == original.provenance.tensor and inspected["canonical_shape"] == list(original.shape)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".safetensors"])
def test_convert_writes_the_frameworks_values(cli, tmp_path, suffix):
    """The written array is torch's own (O, H, W, I) arrangement, read without filtergrid."""
    out = tmp_path / f"bank{suffix}"
    assert cli("convert", FIXTURES / "safetensors" / "cnn.safetensors", "-o", out).returncode == 0
    if suffix == ".safetensors":
        from safetensors.numpy import load_file

        written = load_file(out)["filters"]
    else:
        loaded = np.load(out, allow_pickle=False)
        written = loaded if suffix == ".npy" else loaded["filters"]
    np.testing.assert_array_equal(written, np.load(FIXTURES / "safetensors" / "cnn.expected.npz")["canonical"])


def test_a_plain_array_file_is_no_bank(tmp_path):
    """Without the marker a (N, 3, 5, 5) safetensors array is still read as OIHW, as before."""
    from safetensors.numpy import save_file

    save_file({"filters": np.zeros((4, 3, 5, 5), np.float32)}, tmp_path / "plain.safetensors")
    assert filtergrid.load(tmp_path / "plain.safetensors").provenance.layout == "OIHW"


# ---- multi-shard folders ---------------------------------------------------------------------------

def test_inference_sees_every_shard(tmp_path):
    """The config.json and the tensors of later shards count: a folder is one model."""
    folder = tmp_path / "whisper"
    shutil.copytree(FIXTURES / "huggingface" / "whisper_sharded", folder)
    bank = filtergrid.load(folder)
    assert bank.provenance.tensor == "encoder.conv1.weight"
    assert "config.json" in bank.provenance.chosen_by


def test_order_by_evidence_keeps_every_tensor():
    infos = ordered_listing([("decoder.embed_tokens.weight", (60, 16), "F32"), ("encoder.conv1.weight", (16, 8, 3), "F32")])
    assert [i.name for i in order_by_evidence(infos)][0] == "encoder.conv1.weight"
    assert sorted(i.name for i in infos) == ["decoder.embed_tokens.weight", "encoder.conv1.weight"]
