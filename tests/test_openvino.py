"""OpenVINO IR converter: fixtures saved by OpenVINO, read back by OpenVINO's own CPU plugin."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

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
