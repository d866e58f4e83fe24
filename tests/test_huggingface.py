"""Hugging Face folders: one model per folder, shards kept inside it."""

import json
import shutil

import pytest
from conftest import FIXTURES

import filtergrid
from filtergrid import converters
from filtergrid.errors import UnknownFormatError, UnsafeFileError

VIT = FIXTURES / "huggingface" / "vit_sharded"


def test_folder_and_its_config_json_are_the_same_model():
    assert filtergrid.load(VIT).provenance.tensor == filtergrid.load(VIT / "config.json").provenance.tensor


def test_a_folder_without_config_json_is_not_a_model(tmp_path):
    shutil.copy(FIXTURES / "pytorch" / "pytorch_model.bin", tmp_path / "pytorch_model.bin")
    with pytest.raises(UnknownFormatError):
        converters.detect(tmp_path)
    assert converters.detect(tmp_path / "pytorch_model.bin").name == "pytorch"


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors"])
def test_shard_names_cannot_leave_the_folder(tmp_path, shard):
    folder = tmp_path / "model"
    shutil.copytree(VIT, folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"] = {name: shard for name in index["weight_map"]}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(UnsafeFileError):
        filtergrid.load(folder)


def test_a_missing_shard_is_named(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(VIT, folder)
    next(folder.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(filtergrid.FiltergridError, match="model-00002"):
        filtergrid.load(folder)
