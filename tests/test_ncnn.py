"""ncnn .param + .bin: tagged weights in layer order, companions, damaged pairs."""

from __future__ import annotations

import shutil

import pytest
from conftest import FIXTURES

import filtergrid
from filtergrid.errors import CorruptFileError, TensorNotFoundError, UnknownFormatError

FP16 = FIXTURES / "ncnn" / "conv_fp16.ncnn.param"


def _copy(tmp_path, source=FP16):
    for part in (source, source.with_suffix(".bin")):
        shutil.copy(part, tmp_path / part.name)
    return tmp_path / source.name, tmp_path / source.with_suffix(".bin").name


def test_offsets_follow_tags_and_untagged_biases():
    infos = filtergrid.tensors(FIXTURES / "ncnn" / "conv_fp32.ncnn.param")
    assert [(t.name, t.dtype) for t in infos] == [
        ("convrelu_0/weight", "float32"), ("linear_2/weight", "float32"), ("linear_2/bias", "float32")]


def test_the_bin_points_to_its_param():
    with pytest.raises(UnknownFormatError, match="part of the model 'conv_fp16.ncnn.param'"):
        filtergrid.load(FP16.with_suffix(".bin"))


def test_a_bin_of_another_model_is_refused(tmp_path):
    param, _ = _copy(tmp_path)
    shutil.copy(FIXTURES / "ncnn" / "dense_fp32.ncnn.bin", tmp_path / "conv_fp16.ncnn.bin")
    with pytest.raises(CorruptFileError, match="do not belong together"):
        filtergrid.load(param)


def test_weight_count_that_does_not_split_into_outputs_is_corrupt(tmp_path):
    param, _ = _copy(tmp_path)
    param.write_text(param.read_text().replace("6=162", "6=161"))
    with pytest.raises(CorruptFileError, match="161 weights"):
        filtergrid.load(param)


def test_unknown_weighted_layer_stops_the_listing(tmp_path):
    param, _ = _copy(tmp_path)
    param.write_text(param.read_text().replace("Flatten ", "PReLU   "))
    names = [t.name for t in filtergrid.tensors(param)]
    assert names == ["convrelu_0/weight"]
    with filtergrid.open_model(param) as (_, reader), pytest.raises(TensorNotFoundError, match="PReLU"):
        reader.read("linear_2/weight")
