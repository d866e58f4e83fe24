"""OpenVINO IR converter: fixtures saved by OpenVINO, read back by OpenVINO's own CPU plugin."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, assert_one_line_error, entry_id, group_entries

import filtergrid
from filtergrid import converters
from filtergrid.errors import CorruptFileError, FiltergridError, UnsafeFileError

ENTRIES = group_entries("openvino")
IR = FIXTURES / "openvino"


@pytest.mark.parametrize("entry", ENTRIES, ids=entry_id)
def test_listing_offers_the_first_layer_first(entry: dict) -> None:
    infos = filtergrid.tensors(FIXTURES / entry["file"])
    first = next(i for i in infos if i.candidate)
    assert (first.name, first.layout) == (entry["first"], entry["layout"])
    assert "first" in first.role and "fed by the input" in first.role
    assert len(infos) == 2  # the first layer and the head, nothing else


def test_compressed_weights_name_their_stored_type_and_chain() -> None:
    fp16 = next(i for i in filtergrid.tensors(IR / "conv_fp16.xml") if i.candidate)
    assert fp16.dtype == "float16" and "Convert" in fp16.role
    int8 = next(i for i in filtergrid.tensors(IR / "conv_int8.xml") if i.candidate)
    assert int8.dtype == "uint8" and "Subtract" in int8.role and "Multiply" in int8.role


@pytest.mark.parametrize(("stem", "dtype", "ops"), [
    ("dense_int4_sym", "int4", {"Convert", "Multiply", "Reshape"}),
    ("dense_int4_asym", "uint4", {"Subtract", "Multiply", "Reshape"}),
    ("dense_nf4", "nf4", {"Multiply"}),
    ("dense_mxfp4", "float4_e2m1", {"Multiply"}),
    ("dense_codebook", "float8_e4m3fn", {"Gather", "Multiply"}),
    ("dense_int2", "uint2", {"Subtract", "Multiply"}),
    ("dense_int3", "uint3", {"Subtract", "Multiply"}),
])
def test_sub_byte_weights_name_their_packed_type_and_chain(stem: str, dtype: str, ops: set[str]) -> None:
    first = next(i for i in filtergrid.tensors(IR / f"{stem}.xml") if i.candidate)
    assert first.dtype == dtype and first.shape == (32, 64)
    assert all(op in first.role for op in ops), first.role


def test_packed_weights_are_group_wise() -> None:
    """Each group of 16 inputs has its own scale: one group's codes times its scale, not the row's."""
    weight = filtergrid.load(IR / "dense_int4_sym.xml").array.reshape(32, 64)
    groups = weight.reshape(32, 4, 16)
    steps = [np.unique(np.abs(g[g != 0])).min() for g in groups[0]]  # the smallest code (1) x the group's scale
    assert len(set(np.round(steps, 6))) > 1  # four groups, four different scales


def _copy(tmp_path: Path, stem: str = "conv_int8") -> tuple[Path, Path]:
    xml, binary = tmp_path / "model.xml", tmp_path / "model.bin"
    shutil.copy(IR / f"{stem}.xml", xml)
    shutil.copy(IR / f"{stem}.bin", binary)
    return xml, binary


def test_the_bin_file_opens_its_model(tmp_path: Path) -> None:
    xml, binary = _copy(tmp_path)
    assert converters.detect(binary).name == "openvino"  # not the PyTorch reader that .bin suggests
    assert filtergrid.load(binary).provenance.tensor == filtergrid.load(xml).provenance.tensor


def test_truncated_bin_and_xml_give_one_line_errors(tmp_path: Path, cli) -> None:
    xml, binary = _copy(tmp_path)
    data = binary.read_bytes()
    binary.write_bytes(data[:20])
    assert_one_line_error(cli("render", xml, "-o", tmp_path / "out.png"), "spans bytes")
    binary.write_bytes(data)
    text = xml.read_bytes()
    for n in (10, 100, len(text) // 2, len(text) - 3):
        xml.write_bytes(text[:n])
        with pytest.raises(FiltergridError):
            filtergrid.load(xml, format="openvino")
    binary.unlink()
    xml.write_bytes(text)
    assert_one_line_error(cli("render", xml, "-o", tmp_path / "out.png"), ".bin")


def test_lying_const_size_is_refused(tmp_path: Path) -> None:
    xml, _ = _copy(tmp_path, "conv")
    text = xml.read_text()
    first = re.search(r'shape="6, 1, 3, 3" offset="(\d+)" size="216"', text)
    xml.write_text(text.replace(first.group(0), first.group(0).replace('"6, 1, 3, 3"', '"600, 1, 3, 3"')))
    with pytest.raises(CorruptFileError, match="needs"):
        filtergrid.load(xml)


def test_entities_are_refused(tmp_path: Path) -> None:
    xml, _ = _copy(tmp_path, "conv")
    text = xml.read_text()
    bomb = '<!DOCTYPE net [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
    xml.write_text(text.replace('<?xml version="1.0"?>\n', '<?xml version="1.0"?>\n' + bomb, 1))
    with pytest.raises(UnsafeFileError, match="DTD"):
        filtergrid.load(xml)


def test_cycle_is_refused(tmp_path: Path) -> None:
    xml, _ = _copy(tmp_path, "conv")
    text = xml.read_text()
    # feed the Convolution's output back into its own data input
    edges = re.findall(r'<edge from-layer="(\d+)" from-port="(\d+)" to-layer="(\d+)" to-port="(\d+)" />', text)
    src, _, dst, port = edges[0]
    loop = f'<edge from-layer="{dst}" from-port="3" to-layer="{dst}" to-port="{port}" />'
    xml.write_text(text.replace(f'<edge from-layer="{src}" from-port="0" to-layer="{dst}" to-port="{port}" />', loop))
    with pytest.raises(CorruptFileError, match="cycle"):
        filtergrid.load(xml)


def test_a_weight_it_cannot_compute_is_refused_not_skipped(tmp_path: Path) -> None:
    xml, _ = _copy(tmp_path, "conv_fp16")
    text = xml.read_text()
    xml.write_text(text.replace('name="self.0.weight" type="Convert"', 'name="self.0.weight" type="Sqrt"', 1))
    first = next(i for i in filtergrid.tensors(xml) if i.candidate)
    assert first.name == "self.0.weight" and "Sqrt" in first.role  # still the first layer, not the head
    with pytest.raises(CorruptFileError, match="Sqrt"):
        filtergrid.load(xml)


@pytest.mark.parametrize(("old", "new", "needle"), [
    ('element_type="u4" shape="32, 4, 16" offset="16" size="1024"',  # packed codes shorter than declared
     'element_type="u4" shape="32, 4, 17" offset="16" size="1024"', "needs 1,088 bytes"),
    ('element_type="f16" shape="32, 4, 1" offset="1104" size="256"',  # one scale per two groups
     'element_type="f16" shape="32, 2, 1" offset="1104" size="128"', "cannot be computed"),
    ('element_type="u4" shape="32, 4, 16"', 'element_type="string" shape="32, 4, 16"', "'string', not supported"),
])
def test_hostile_sub_byte_weights_give_one_line_errors(tmp_path: Path, cli, old: str, new: str, needle: str) -> None:
    xml, _ = _copy(tmp_path, "dense_int4_asym")
    text = xml.read_text()
    assert old in text
    xml.write_text(text.replace(old, new, 1))
    with pytest.raises(CorruptFileError, match=re.escape(needle)):
        filtergrid.load(xml)
    assert_one_line_error(cli("render", xml, "-o", tmp_path / "out.png"), needle)


def test_decompression_chain_that_loops_is_refused(tmp_path: Path) -> None:
    xml, _ = _copy(tmp_path, "dense_int4_asym")
    text = xml.read_text()
    # the weight's Convert takes the group-wise Multiply's output instead of the packed Const
    multiply = re.search(r'<layer id="(\d+)" name="self.1.weight/fq_weights_1" type="Multiply"', text).group(1)
    feed = re.search(r'<edge from-layer="3" from-port="0" to-layer="(\d+)" to-port="0" />', text)
    xml.write_text(text.replace(feed.group(0), f'<edge from-layer="{multiply}" from-port="2" '
                                               f'to-layer="{feed.group(1)}" to-port="0" />'))
    with pytest.raises(CorruptFileError, match="cycle"):
        filtergrid.load(xml)
