"""Caffe .caffemodel: layer order, legacy V1 nets, and damaged files."""

from __future__ import annotations

import pytest
from conftest import FIXTURES

import filtergrid
from filtergrid.converters import caffe, detect
from filtergrid.converters.base import Probe
from filtergrid.errors import CorruptFileError, TensorNotFoundError

CONV = FIXTURES / "caffe" / "tiny_conv.caffemodel"


def test_layers_are_listed_in_net_order_with_their_layouts():
    infos = filtergrid.tensors(CONV)
    assert [(t.name, t.layout, t.candidate) for t in infos] == [
        ("conv1/0", "OIHW", True), ("conv1/1", "auto", False), ("fc1/0", "OI", True), ("fc1/1", "auto", False)]
    assert "first Convolution layer 'conv1'" in infos[0].role


def test_legacy_inner_product_blob_is_read_as_a_matrix():
    (weights, *_) = filtergrid.tensors(FIXTURES / "caffe" / "v1_mlp.caffemodel")
    assert weights.shape == (16, 64) and weights.layout == "OI"


def test_sniff_tells_caffe_from_onnx():
    assert caffe.sniff(Probe.of(CONV))
    assert not caffe.sniff(Probe.of(FIXTURES / "onnx" / "cnn.onnx"))
    assert detect(FIXTURES / "onnx" / "cnn.onnx").name == "onnx"


def test_truncated_caffemodel_is_corrupt(tmp_path):
    path = tmp_path / "cut.caffemodel"
    path.write_bytes(CONV.read_bytes()[:5000])
    with pytest.raises(CorruptFileError, match=r"this Caffe model is damaged: it ends in the middle of the network \(a piece of [0-9,]+ bytes at byte"):
        filtergrid.load(path)


def test_blob_whose_shape_does_not_match_its_data_is_corrupt(tmp_path):
    data = bytearray(CONV.read_bytes())
    shape = bytes([0x3A, 0x06, 0x0A, 0x04, 6, 3, 5, 5])  # BlobShape dims packed: 6, 3, 5, 5
    at = data.index(shape)
    data[at + 4] = 7  # 7 filters declared, 6 stored
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"\[7, 3, 5, 5\]"):
        filtergrid.load(path)


def test_unknown_blob_name():
    with filtergrid.open_model(CONV) as (_, reader), pytest.raises(TensorNotFoundError, match="<layer>/<index>"):
        reader.read("conv9/0")
