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


def test_a_weight_const_without_its_shape_is_refused_not_read_as_a_scalar(tmp_path: Path) -> None:
    """Read as a scalar, the first conv's weight would stop being a candidate and the next layer would
    be drawn as the first: an honest refusal instead."""
    xml = (IR / "conv.xml").read_text()
    assert 'element_type="f32" shape="6, 1, 3, 3" offset="0"' in xml
    (tmp_path / "conv.xml").write_text(xml.replace('element_type="f32" shape="6, 1, 3, 3" offset="0"',
                                                   'element_type="f32" offset="0"'))
    shutil.copy(IR / "conv.bin", tmp_path / "conv.bin")
    with pytest.raises(CorruptFileError, match="'self.0.weight' has no shape"):
        filtergrid.load(tmp_path / "conv.xml")


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


# -- Reshape in a decompression chain, as OpenVINO 2026.4.1's shape inference reshapes -------------


@pytest.mark.parametrize(("target", "special_zero", "shape"), [  # the shapes OpenVINO infers for a (32, 4, 16) input
    ([0, -1], True, (32, 64)), ([0, 64], True, (32, 64)), ([0, 0, -1], True, (32, 4, 16)),
    ([2, 0, -1], True, (2, 4, 256)), ([-1, 64], False, (32, 64)), ([32, -1], False, (32, 64)),
    ([-1], False, (2048,)), ([1, -1, 1], False, (1, 2048, 1)),
])
def test_reshape_copies_zeros_with_special_zero_and_infers_minus_one(target, special_zero, shape) -> None:
    from filtergrid.converters.openvino import _reshape

    value = np.arange(2048, dtype=np.float32).reshape(32, 4, 16)
    reshaped = _reshape(value, np.array(target, np.int64), special_zero)
    assert reshaped.shape == shape
    np.testing.assert_array_equal(reshaped.reshape(-1), value.reshape(-1))


@pytest.mark.parametrize(("target", "special_zero", "needle"), [  # each refused by OpenVINO too
    ([-1, -1], False, "to [-1, -1]"), ([-2, 64], False, "to [-2, 64]"), ([0, -1], False, "to [0, -1]"),
    ([5, -1], False, "to [5, -1]"), ([32, 65], False, "to [32, 65]"),
    ([0, 0, 0, 0], True, "to [0, 0, 0, 0] with special_zero"),  # a zero past the input's rank
    (2048, False, "target of rank 0"), ([[32, 64]], False, "target of rank 2"),
])
def test_reshape_refuses_what_openvino_refuses_naming_the_target(target, special_zero, needle) -> None:
    from filtergrid.converters.openvino import _reshape

    value = np.zeros((32, 4, 16), np.float32)
    with pytest.raises(CorruptFileError, match=re.escape(needle)):
        _reshape(value, np.array(target, np.int64), special_zero)


# -- Constant subgraphs: bounded depth, shared layers computed once ---------------------------------


def _ir_of_doublings(folder: Path, doublings: int, unconnected: bool = False) -> Path:
    """A hostile IR no converter writes: MatMul weight = w * s_n, s_k = Add(s_k-1, s_k-1), s_0 = 1.

    Every Add uses one layer twice, so evaluating it without sharing takes 2^n steps; the scale's
    Const lies n + 1 layers below the weight."""
    w = np.arange(16, dtype=np.float32).reshape(4, 4)
    (folder / "model.bin").write_bytes(w.tobytes() + np.float32(1).tobytes())
    dims = "<dim>4</dim><dim>4</dim>"

    def layer(i: int, name: str, kind: str, data: str, inputs: int, out: str = dims) -> str:
        ports = "".join(f'<port id="{p}">{dims}</port>' for p in range(inputs))
        return (f'<layer id="{i}" name="{name}" type="{kind}" version="opset1"><data {data}/>'
                f'<input>{ports}</input><output><port id="{inputs}">{out}</port></output></layer>')

    layers = [layer(0, "x", "Parameter", 'shape="1,4" element_type="f32"', 0, "<dim>1</dim><dim>4</dim>"),
              layer(1, "w", "Const", 'element_type="f32" shape="4, 4" offset="0" size="64"', 0),
              layer(2, "s0", "Const", 'element_type="f32" shape="1" offset="64" size="4"', 0, "<dim>1</dim>")]
    edges = []
    for k in range(1, doublings + 1):
        layers.append(layer(2 + k, f"s{k}", "Add", 'auto_broadcast="numpy"', 2, "<dim>1</dim>"))
        edges += [(1 + k, 2 + k, 0), (1 + k, 2 + k, 1)]
    scale, weight, matmul = 2 + doublings, 3 + doublings, 4 + doublings
    layers += [layer(weight, "weight", "Multiply", 'auto_broadcast="numpy"', 2),
               layer(matmul, "matmul", "MatMul", 'transpose_a="false" transpose_b="false"', 2, "<dim>1</dim><dim>4</dim>")]
    edges += [(1, weight, 0), (scale, weight, 1), (0, matmul, 0), (weight, matmul, 1)]
    if unconnected:
        edges.remove((2, 3, 1))
    text = "".join(f'<edge from-layer="{a}" from-port="{0 if a < 3 else 2}" to-layer="{b}" '
                   f'to-port="{p}" />' for a, b, p in edges)
    xml = folder / "model.xml"
    xml.write_text(f'<?xml version="1.0"?>\n<net name="doublings" version="11"><layers>{"".join(layers)}</layers>'
                   f'<edges>{text}</edges></net>\n')
    return xml


def _read_first(xml: Path) -> np.ndarray:
    with filtergrid.open_model(xml) as (_, reader):
        return reader.read(next(i for i in reader.tensors() if i.candidate).name)


def test_a_layer_used_twice_is_evaluated_once(tmp_path: Path, monkeypatch) -> None:
    from filtergrid.converters import openvino

    calls = []
    apply = openvino._apply
    monkeypatch.setattr(openvino, "_apply", lambda layer, args: calls.append(layer.name) or apply(layer, args))
    stored = _read_first(_ir_of_doublings(tmp_path, 12))
    np.testing.assert_array_equal(stored, np.arange(16, dtype=np.float32).reshape(4, 4) * 2.0**12)
    assert len(calls) == 13  # each Add once and the Multiply, not 2^12 Adds


def test_a_constant_subgraph_deeper_than_max_nesting_is_refused_by_that_limit(tmp_path: Path, monkeypatch) -> None:
    from filtergrid import limits
    from filtergrid.errors import LimitError

    monkeypatch.setattr(limits, "MAX_NESTING", 6)
    assert _read_first(_ir_of_doublings(tmp_path, 5)).max() == 15 * 2**5  # the Const at depth 6
    with pytest.raises(LimitError, match=r"constant subgraph deeper than .*\b6\b.*FILTERGRID_MAX_NESTING"):
        filtergrid.load(_ir_of_doublings(tmp_path, 6))  # at depth 7


def test_an_unconnected_input_of_a_constant_subgraph_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError, match=re.escape("Add layer 's1' has an unconnected input")):
        filtergrid.load(_ir_of_doublings(tmp_path, 3, unconnected=True))


def test_a_missing_bin_file_is_named_with_where_it_must_be(tmp_path: Path) -> None:
    xml, binary = _copy(tmp_path, "conv")
    binary.unlink()
    with pytest.raises(FiltergridError, match=r"^.*\.bin file \(its constants\) is missing: it must lie beside the \.xml"):
        filtergrid.load(xml)


LONG_SHAPE = "1, " * 20 + "x"


@pytest.mark.parametrize(("old", "new", "needle"), [
    ('offset="0" size="216"', 'size="216"', "Const 'self.0.weight' has no valid offset/size"),
    ('offset="0" size="216"', 'offset="x" size="216"', "Const 'self.0.weight' has no valid offset/size"),
    ('offset="0" size="216"', 'offset="100000" size="216"', "Const 'self.0.weight'"),
    ('element_type="f32" shape="6, 1, 3, 3"', 'shape="6, 1, 3, 3"', "Const 'self.0.weight' has element type '', not"),
    ('element_type="f32" shape="6, 1, 3, 3"', 'element_type="abcdefghijklmnopqrstuvwxyz" shape="6, 1, 3, 3"',
     "type 'abcdefghijklmnopqrst', not supported"),
    ('shape="6, 1, 3, 3" offset="0"', 'offset="0"', "Const 'self.0.weight' has no shape"),
    ('shape="6, 1, 3, 3" offset="0"', 'shape="6, x" offset="0"', "Const 'self.0.weight' has shape '6, x'"),
    ('shape="6, 1, 3, 3" offset="0"', f'shape="{LONG_SHAPE}" offset="0"', f"has shape {LONG_SHAPE[:40]!r}"),
])
def test_a_const_with_a_damaged_attribute_is_refused_by_name(tmp_path: Path, old: str, new: str, needle: str) -> None:
    xml, _ = _copy(tmp_path, "conv")
    text = xml.read_text()
    assert old in text
    xml.write_text(text.replace(old, new, 1))
    with filtergrid.open_model(xml) as (_, reader), pytest.raises(CorruptFileError, match=re.escape(needle)):
        reader.read("self.0.weight")  # the first layer's weight, whatever the listing made of it
