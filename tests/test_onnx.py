"""The ONNX converter against models built with the onnx library itself.

Every expected array comes from onnx (``numpy_helper.to_array``, the reference evaluator's
DequantizeLinear) and a NumPy transpose written here, never from filtergrid's own layout code.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import filtergrid  # noqa: E402
from filtergrid import limits  # noqa: E402
from filtergrid.converters import onnx as onnx_converter  # noqa: E402
from filtergrid.converters.base import Probe  # noqa: E402
from filtergrid.errors import (  # noqa: E402
    CorruptFileError,
    FiltergridError,
    LimitError,
    TensorNotFoundError,
    UnreadableFeatureError,
    UnsafeFileError,
)

RNG = np.random.default_rng(7)
OIHW_TO_NHWC = (0, 2, 3, 1)


def save(path: Path, nodes, initializers=(), *, opset: int = 21, **kw) -> Path:
    """A model whose graph is ``nodes``; inputs/outputs are declared loosely (filtergrid ignores them)."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save_model(model, str(path), **kw)
    return path


def load(path, **kw):
    return filtergrid.load(path, format="onnx", **kw)


def listing(path):
    return filtergrid.tensors(path, format="onnx")


def first(path):
    """The tensor filtergrid picks with no options: the first candidate in the listing."""
    return next(i for i in listing(path) if i.candidate)


def stored(path, name, rows=None):
    with filtergrid.open_model(path, format="onnx") as (_, reader):
        return reader.read(name, rows)


def conv(weight: str, name: str = "conv1", x: str = "x", y: str = "y", **attrs):
    return helper.make_node("Conv", [x, weight], [y], name=name, **attrs)


def initializers(**arrays: np.ndarray) -> list[TensorProto]:
    return [numpy_helper.from_array(a, name) for name, a in arrays.items()]


def weights(shape=(8, 3, 5, 5), dtype=np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


def dequantize_with_onnx(q: TensorProto, scale: TensorProto, zero: TensorProto | None, axis: int) -> np.ndarray:
    """The onnx reference evaluator's DequantizeLinear of these tensors."""
    from onnx.reference import ReferenceEvaluator

    inputs = ["q", "s"] + (["z"] if zero is not None else [])
    inits = [q, scale] + ([zero] if zero is not None else [])
    for t, n in zip(inits, inputs, strict=True):
        t.name = n
    node = helper.make_node("DequantizeLinear", inputs, ["out"], axis=axis)
    graph = helper.make_graph([node], "dq", [], [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    return ReferenceEvaluator(model).run(None, {})[0]


# -- which tensor, in which layout ----------------------------------------------------------


def test_conv_initializer_is_first_and_read_exactly(tmp_path):
    w, fc = weights(), weights((10, 8))
    path = save(tmp_path / "m.onnx", [
        conv("w"), helper.make_node("Flatten", ["y"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "b"], ["z"], name="fc", transB=1),
    ], [numpy_helper.from_array(fc, "fc"), numpy_helper.from_array(np.zeros(10, np.float32), "b"),
        numpy_helper.from_array(w, "w")])
    infos = listing(path)
    assert [i.name for i in infos] == ["w", "fc", "b"]  # node-consumption order, not storage order
    assert infos[0].candidate and infos[0].layout == "OIHW" and infos[0].flatten == "CHW"
    assert infos[0].role == "weight of the first Conv node 'conv1'"
    assert infos[1].candidate and infos[1].layout == "OI"
    assert not infos[2].candidate
    bank = load(path)
    np.testing.assert_array_equal(bank.array, w.transpose(OIHW_TO_NHWC))
    assert bank.provenance.tensor == "w" and bank.provenance.chosen_by == infos[0].role
    np.testing.assert_array_equal(stored(path, "fc"), fc)


def test_constant_node_weight(tmp_path):
    w = weights()
    path = save(tmp_path / "m.onnx", [
        helper.make_node("Constant", [], ["wc"], value=numpy_helper.from_array(w, "")), conv("wc")])
    assert first(path).name == "wc"
    np.testing.assert_array_equal(load(path).array, w.transpose(OIHW_TO_NHWC))


def test_weight_inside_if_branch_comes_before_later_conv(tmp_path):
    inner, outer = weights((4, 3, 3, 3)), weights()
    then_graph = helper.make_graph([conv("w_inner", name="inner", y="t")], "then", [],
                                   [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
                                   [numpy_helper.from_array(inner, "w_inner")])
    else_graph = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                                   [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    path = save(tmp_path / "m.onnx", [
        helper.make_node("If", ["cond"], ["i"], then_branch=then_graph, else_branch=else_graph),
        conv("w", name="outer", x="i"),
    ], [numpy_helper.from_array(outer, "w"), numpy_helper.from_array(np.array(True), "cond")])
    info = first(path)
    assert info.name == "w_inner" and info.role == "weight of the first Conv node 'inner' in subgraph 'then'"
    np.testing.assert_array_equal(load(path).array, inner.transpose(OIHW_TO_NHWC))
    np.testing.assert_array_equal(load(path, tensor="w").array, outer.transpose(OIHW_TO_NHWC))


def test_then_branch_before_else_branch(tmp_path):
    """onnx.helper stores attributes sorted by name (else_branch first); then_branch is still searched first."""
    branches = {}
    for branch in ("then", "else"):
        w = weights((4, 3, 3, 3))
        branches[branch] = helper.make_graph(
            [conv(f"w_{branch}", name=branch, y="t")], branch, [],
            [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)], [numpy_helper.from_array(w, f"w_{branch}")])
        branches[f"{branch}_w"] = w
    path = save(tmp_path / "m.onnx", [helper.make_node("If", ["x"], ["i"], then_branch=branches["then"],
                                                       else_branch=branches["else"])])
    assert onnx.load(str(path)).graph.node[0].attribute[0].name == "else_branch"
    assert first(path).name == "w_then"
    np.testing.assert_array_equal(load(path).array, branches["then_w"].transpose(OIHW_TO_NHWC))


def test_untraceable_weight_falls_back_to_matrices_by_name(tmp_path):
    w = weights((8, 27))
    path = save(tmp_path / "m.onnx", [helper.make_node("Reshape", ["w2d", "shape"], ["w"]), conv("w")],
                [numpy_helper.from_array(w, "w2d"), numpy_helper.from_array(np.array([8, 3, 3, 3]), "shape")])
    info = first(path)
    assert info.name == "w2d" and "could be traced" in info.role


def test_subgraph_conv_uses_outer_scope_weight(tmp_path):
    w = weights()
    body = helper.make_graph([conv("w", name="in_loop", y="t")], "body", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    path = save(tmp_path / "m.onnx", [helper.make_node("If", ["cond"], ["i"], then_branch=body, else_branch=body)],
                [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(True), "cond")])
    np.testing.assert_array_equal(load(path).array, w.transpose(OIHW_TO_NHWC))


def test_nested_subgraph_traces_an_outer_weight_through_its_own_nodes(tmp_path):
    """The weight is two scopes out and reached through a Cast inside the innermost body (each name
    is looked up more than once: for the node that consumes it and for the trace)."""
    w = weights()
    out = [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)]
    inner = helper.make_graph([helper.make_node("Cast", ["w"], ["wc"], name="cast", to=TensorProto.FLOAT),
                               conv("wc", name="deep", y="t")], "inner", [], out)
    middle = helper.make_graph([helper.make_node("Identity", ["w"], ["unused"]),
                                helper.make_node("If", ["cond"], ["t"], then_branch=inner, else_branch=inner)],
                               "middle", [], out)
    path = save(tmp_path / "m.onnx", [helper.make_node("If", ["cond"], ["i"], then_branch=middle, else_branch=middle)],
                [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(True), "cond")])
    info = first(path)
    assert info.name == "w" and "Conv node 'deep' in subgraph 'inner', through Cast node 'cast'" in info.role
    np.testing.assert_array_equal(load(path).array, w.transpose(OIHW_TO_NHWC))


def test_outer_weight_seen_deep_inside_first_is_still_the_weight_further_out(tmp_path):
    """``w`` is first an Identity's input two bodies deep, then the weight of a Conv one body deep."""
    w = weights()
    out = [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)]
    inner = helper.make_graph([helper.make_node("Identity", ["w"], ["t"])], "inner", [], out)
    middle = helper.make_graph([helper.make_node("If", ["cond"], ["u"], then_branch=inner, else_branch=inner),
                                conv("w", name="mid", x="u", y="t")], "middle", [], out)
    path = save(tmp_path / "m.onnx", [helper.make_node("If", ["cond"], ["i"], then_branch=middle, else_branch=middle)],
                [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(True), "cond")])
    info = first(path)
    assert info.name == "w" and info.role == "weight of the first Conv node 'mid' in subgraph 'middle'"


def function_model(path: Path, w: np.ndarray, *, calls: int = 1, depth: int = 1) -> Path:
    """A graph whose Conv sits in a model-local function (nested ``depth`` deep, each called ``calls`` times)."""
    functions = [helper.make_function("local", "Block0", ["inp", "k"], ["out"],
                                      [conv("k", name="fconv", x="inp", y="out")], [helper.make_opsetid("", 21)])]
    for level in range(1, depth):
        chain = [helper.make_node(f"Block{level - 1}", ["inp" if i == 0 else f"h{i}", "k"],
                                  ["out" if i == calls - 1 else f"h{i + 1}"], domain="local") for i in range(calls)]
        functions.append(helper.make_function("local", f"Block{level}", ["inp", "k"], ["out"], chain,
                                              [helper.make_opsetid("", 21), helper.make_opsetid("local", 1)]))
    graph = helper.make_graph([helper.make_node(f"Block{depth - 1}", ["x", "w"], ["y"], domain="local")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, functions=functions,
                              opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("local", 1)])
    onnx.save_model(model, str(path))
    return path


def test_conv_inside_a_model_local_function(tmp_path):
    w = weights()
    path = function_model(tmp_path / "m.onnx", w, depth=2)
    assert first(path).role == "weight of the first Conv node 'fconv' in function 'Block0'"
    np.testing.assert_array_equal(load(path).array, w.transpose(OIHW_TO_NHWC))


def test_functions_calling_functions_are_walked_once_per_arguments(tmp_path, monkeypatch):
    """4**11 calls if walked naively; each body once (its arguments are the same every time)."""
    monkeypatch.setattr(limits, "MAX_TENSORS", 1000)
    w = weights()
    path = function_model(tmp_path / "m.onnx", w, calls=4, depth=12)
    assert first(path).role == "weight of the first Conv node 'fconv' in function 'Block0'"
    np.testing.assert_array_equal(load(path).array, w.transpose(OIHW_TO_NHWC))


def test_functions_called_with_ever_new_arguments_are_bounded(tmp_path, monkeypatch):
    """Each level calls the next with two different Transposes of its weight: 2**11 distinct calls."""
    monkeypatch.setattr(limits, "MAX_TENSORS", 1000)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("local", 1)]
    functions = [helper.make_function("local", "Block0", ["inp", "k"], ["out"],
                                      [conv("k", name="fconv", x="inp", y="out")], opsets)]
    for level in range(1, 12):
        body = [helper.make_node("Transpose", ["k"], ["ka"], perm=[0, 1, 2, 3]),
                helper.make_node("Transpose", ["k"], ["kb"], perm=[0, 1, 3, 2]),
                helper.make_node(f"Block{level - 1}", ["inp", "ka"], ["h"], domain="local"),
                helper.make_node(f"Block{level - 1}", ["h", "kb"], ["out"], domain="local")]
        functions.append(helper.make_function("local", f"Block{level}", ["inp", "k"], ["out"], body, opsets))
    graph = helper.make_graph([helper.make_node("Block11", ["x", "w"], ["y"], domain="local")], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(weights((8, 3, 5, 5)), "w")])
    onnx.save_model(helper.make_model(graph, functions=functions, opset_imports=opsets), str(tmp_path / "m.onnx"))
    with pytest.raises(LimitError, match="MAX_TENSORS"):
        load(tmp_path / "m.onnx")


def test_a_function_called_with_different_weights_lists_each(tmp_path):
    w1, w2 = weights(), weights((8, 8, 3, 3))
    block = helper.make_function("local", "Block", ["inp", "k"], ["out"], [conv("k", name="fconv", x="inp", y="out")],
                                 [helper.make_opsetid("", 21)])
    graph = helper.make_graph([helper.make_node("Block", ["x", "w1"], ["h"], domain="local"),
                               helper.make_node("Block", ["h", "w2"], ["y"], domain="local")], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers(w2=w2, w1=w1))
    model = helper.make_model(graph, functions=[block],
                              opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("local", 1)])
    onnx.save_model(model, str(tmp_path / "m.onnx"))
    assert [(i.name, i.layout) for i in listing(tmp_path / "m.onnx") if i.candidate] == [("w1", "OIHW"), ("w2", "OIHW")]
    np.testing.assert_array_equal(load(tmp_path / "m.onnx").array, w1.transpose(OIHW_TO_NHWC))


def test_identity_and_cast_are_followed(tmp_path):
    w = weights()
    path = save(tmp_path / "m.onnx", [
        helper.make_node("Identity", ["w0"], ["w1"], name="id"),
        helper.make_node("Cast", ["w1"], ["w2"], name="cast", to=TensorProto.FLOAT),
        conv("w2")], [numpy_helper.from_array(w, "w0")])
    info = first(path)
    assert info.name == "w0" and "Identity node 'id'" in info.role and "Cast node 'cast'" in info.role
    np.testing.assert_array_equal(load(path).array, w.transpose(OIHW_TO_NHWC))


def test_transpose_before_conv_gives_the_stored_layout(tmp_path):
    hwio = weights((5, 5, 3, 8))
    path = save(tmp_path / "m.onnx", [helper.make_node("Transpose", ["w_hwio"], ["w"], perm=[3, 2, 0, 1]), conv("w")],
                [numpy_helper.from_array(hwio, "w_hwio")])
    assert first(path).layout == "HWIO"
    np.testing.assert_array_equal(load(path).array, hwio.transpose(3, 0, 1, 2))


def test_dequantize_linear_per_tensor(tmp_path):
    q = RNG.integers(-128, 128, (8, 3, 5, 5)).astype(np.int8)
    scale, zero = np.array(0.05, np.float32), np.array(3, np.int8)
    inits = initializers(wq=q, ws=scale, wz=zero)
    path = save(tmp_path / "m.onnx", [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="dq"),
                                      conv("w")], inits)
    info = first(path)
    assert (info.name, info.dtype, info.candidate) == ("wq", "int8", True)
    assert "DequantizeLinear node 'dq'" in info.role
    expected = dequantize_with_onnx(*[numpy_helper.from_array(a) for a in (q, scale, zero)], axis=1)
    np.testing.assert_allclose(load(path).array, expected.transpose(OIHW_TO_NHWC), rtol=1e-6)


@pytest.mark.parametrize("axis", [0, -4, 1])
def test_dequantize_linear_per_axis(tmp_path, axis):
    q = RNG.integers(0, 256, (8, 3, 5, 5)).astype(np.uint8)
    scale = RNG.uniform(0.01, 0.1, q.shape[axis]).astype(np.float32)
    zero = RNG.integers(100, 150, q.shape[axis]).astype(np.uint8)
    inits = initializers(wq=q, ws=scale, wz=zero)
    path = save(tmp_path / "m.onnx", [
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="dq", axis=axis), conv("w")], inits)
    expected = dequantize_with_onnx(*[numpy_helper.from_array(a) for a in (q, scale, zero)], axis=axis)
    np.testing.assert_allclose(load(path).array, expected.transpose(OIHW_TO_NHWC), rtol=1e-6)
    np.testing.assert_allclose(stored(path, "wq", rows=3), expected[:3], rtol=1e-6)  # scales cut to the rows read


def test_per_tensor_scale_ignores_the_axis_as_onnxruntime_does(tmp_path):
    """DequantizeLinear's default axis is 1; a 1-D weight has no axis 1, and onnxruntime (and the
    reference evaluator) ignore the axis of a per-tensor scale: so does filtergrid."""
    q, scale = RNG.integers(-128, 128, 12).astype(np.int8), np.array(0.5, np.float32)
    path = save(tmp_path / "m.onnx", [helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"]),
                                      helper.make_node("MatMul", ["x", "w"], ["y"])], initializers(wq=q, ws=scale))
    expected = dequantize_with_onnx(*[numpy_helper.from_array(a) for a in (q, scale)], None, axis=1)
    np.testing.assert_array_equal(stored(path, "wq"), expected)


@pytest.mark.parametrize("axis", [4, -5])
def test_dequantize_axis_outside_the_weight_is_refused(tmp_path, axis):
    q = RNG.integers(-128, 128, (8, 3, 5, 5)).astype(np.int8)
    path = save(tmp_path / "m.onnx", [helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], axis=axis), conv("w")],
                initializers(wq=q, ws=np.full(8, 0.1, np.float32)))
    with pytest.raises(CorruptFileError, match=f"axis {axis} of 'wq' is outside its 4 axes"):
        load(path)


def test_a_scale_computed_at_run_time_is_refused(tmp_path):
    q = RNG.integers(-128, 128, (8, 3, 5, 5)).astype(np.int8)
    path = save(tmp_path / "m.onnx", [helper.make_node("Abs", ["x"], ["s"]),
                                      helper.make_node("DequantizeLinear", ["wq", "s"], ["w"]), conv("w")],
                initializers(wq=q))
    with pytest.raises(CorruptFileError, match="scale of quantized weight 'wq' is not a constant"):
        load(path)


@pytest.mark.parametrize("shape,blocks,consumer", [((8, 4, 3, 3), (8, 2, 3, 3), conv("w")),
                                                   ((12, 6), (3, 6), helper.make_node("MatMul", ["x", "w"], ["y"]))])
def test_blocked_dequantize_linear_is_named_not_skipped(tmp_path, shape, blocks, consumer):
    q = RNG.integers(-128, 128, shape).astype(np.int8)
    scale = RNG.uniform(0.01, 0.1, blocks).astype(np.float32)
    axis = 1 if len(shape) == 4 else 0
    path = save(tmp_path / "m.onnx", [
        helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], axis=axis, block_size=2 if axis else 4), consumer],
        initializers(wq=q, ws=scale))
    assert first(path).name == "wq"
    with pytest.raises(CorruptFileError, match="blocked quantization of 'wq'.* not supported"):
        load(path)


@pytest.mark.parametrize("zero_shape", [(8,), ()])
def test_qlinearconv_per_channel(tmp_path, zero_shape):
    """Per-channel scales with a zero point per channel, or one for all (QLinearConv allows both)."""
    q = RNG.integers(-128, 128, (8, 3, 3, 3)).astype(np.int8)
    scale = RNG.uniform(0.01, 0.1, 8).astype(np.float32)
    zero = np.full(zero_shape, 5, np.int8)
    scalar = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    inits = [*initializers(wq=q, ws=scale, wz=zero), scalar, numpy_helper.from_array(np.array(0, np.uint8), "z")]
    node = helper.make_node("QLinearConv", ["x", "s", "z", "wq", "ws", "wz", "s", "z"], ["y"], name="qconv")
    path = save(tmp_path / "m.onnx", [node], inits)
    info = first(path)
    assert info.name == "wq" and info.layout == "OIHW" and "QLinearConv node 'qconv'" in info.role
    zero = np.broadcast_to(zero, scale.shape)  # DequantizeLinear wants them the same shape
    expected = dequantize_with_onnx(*[numpy_helper.from_array(a) for a in (q, scale, zero)], axis=0)
    np.testing.assert_allclose(load(path).array, expected.transpose(OIHW_TO_NHWC), rtol=1e-6)


def test_convinteger_subtracts_zero_point(tmp_path):
    q = RNG.integers(0, 256, (8, 3, 3, 3)).astype(np.uint8)
    inits = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(np.array(128, np.uint8), "wz")]
    path = save(tmp_path / "m.onnx", [helper.make_node("ConvInteger", ["x", "wq", "", "wz"], ["y"])], inits)
    expected = q.astype(np.float32) - 128
    np.testing.assert_array_equal(load(path).array, expected.transpose(OIHW_TO_NHWC))


def integer_model(path: Path, op: str, q: np.ndarray, zero: np.ndarray, scale: np.ndarray, *,
                  scale_name: str = "w_scale", dynamic: bool = True, casts: int = 1) -> Path:
    """x -> DynamicQuantizeLinear -> op(x_q, w_quantized) -> Cast -> Mul(., x_scale * scale), as
    onnxruntime's dynamic quantizer writes it (``dynamic=False``: a constant input scale instead;
    ``casts``: how many Casts lie between the operator and the Mul)."""
    chain = [helper.make_node("Cast", [f"c{i}"], [f"c{i + 1}"], to=TensorProto.FLOAT) for i in range(casts)]
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]) if dynamic else
             helper.make_node("Identity", ["x"], ["xq"]),
             helper.make_node("Mul", ["xs" if dynamic else "x_scale", scale_name], ["s"], name="scales"),
             helper.make_node(op, ["xq", "w_quantized", "xz" if dynamic else "", "w_zero_point"], ["c0"], name="int"),
             *chain, helper.make_node("Mul", [f"c{casts}", "s"], ["y"], name="rescale")]
    inits = initializers(w_quantized=q, w_zero_point=zero, **{scale_name: scale})
    return save(path, nodes, [*inits, numpy_helper.from_array(np.array(0.02, np.float32), "x_scale")])


def test_convinteger_scale_applied_after_it_is_the_weights(tmp_path):
    q = RNG.integers(0, 256, (8, 3, 3, 3)).astype(np.uint8)
    path = integer_model(tmp_path / "m.onnx", "ConvInteger", q, np.array(120, np.uint8), np.array(0.05, np.float32))
    info = first(path)
    assert info.name == "w_quantized" and "the scale 'w_scale' that Mul node 'rescale' applies" in info.role
    expected = (q.astype(np.float32) - 120) * np.float32(0.05)
    np.testing.assert_array_equal(load(path).array, expected.transpose(OIHW_TO_NHWC))


def test_matmulinteger_per_column_scale_beside_the_dynamic_input_scale(tmp_path):
    """The scale is not named for the weight, but it is the only constant beside the input's scale."""
    q = RNG.integers(0, 256, (27, 6)).astype(np.uint8)
    zero, scale = RNG.integers(100, 150, 6).astype(np.uint8), RNG.uniform(0.01, 0.1, 6).astype(np.float32)
    path = integer_model(tmp_path / "m.onnx", "MatMulInteger", q, zero, scale, scale_name="per_column")
    assert "'per_column'" in first(path).role
    units = ((q.astype(np.float32) - zero) * scale).T  # (out, in), in = 3x3x3 flattened channels first
    np.testing.assert_allclose(load(path).array, units.reshape(6, 3, 3, 3).transpose(OIHW_TO_NHWC), rtol=1e-6)


def test_integer_op_scale_that_may_not_be_the_weights_is_not_claimed(tmp_path):
    """Two constants multiplied and neither named for the weight: the values stay unscaled, and say so."""
    q = RNG.integers(0, 256, (8, 3, 3, 3)).astype(np.uint8)
    path = integer_model(tmp_path / "m.onnx", "ConvInteger", q, np.array(128, np.uint8),
                         np.array(0.05, np.float32), scale_name="c", dynamic=False)
    info = first(path)
    assert "unscaled integers" in info.role and "dequantized" not in info.role
    np.testing.assert_array_equal(load(path).array, (q.astype(np.float32) - 128).transpose(OIHW_TO_NHWC))
    (tmp_path / "alone").mkdir()
    alone = save(tmp_path / "alone" / "m.onnx", [helper.make_node("ConvInteger", ["x", "wq"], ["y"])], initializers(wq=q))
    assert "unscaled integers" in first(alone).role
    np.testing.assert_array_equal(load(alone).array, q.astype(np.float32).transpose(OIHW_TO_NHWC))


def test_integer_op_scale_named_for_the_weight_is_claimed_without_a_dynamic_input_scale(tmp_path):
    """``w_scale`` beside ``w_quantized`` is the weight's even when the other factor is a constant."""
    q = RNG.integers(0, 256, (8, 3, 3, 3)).astype(np.uint8)
    path = integer_model(tmp_path / "m.onnx", "ConvInteger", q, np.array(128, np.uint8), np.array(0.05, np.float32),
                         dynamic=False)
    assert "the scale 'w_scale' that Mul node 'rescale' applies" in first(path).role
    expected = (q.astype(np.float32) - 128) * np.float32(0.05)
    np.testing.assert_array_equal(load(path).array, expected.transpose(OIHW_TO_NHWC))


@pytest.mark.parametrize("casts,claimed", [(4, True), (5, False)])
def test_integer_op_scale_is_followed_through_at_most_four_casts(tmp_path, casts, claimed):
    q = RNG.integers(0, 256, (8, 3, 3, 3)).astype(np.uint8)
    path = integer_model(tmp_path / "m.onnx", "ConvInteger", q, np.array(128, np.uint8), np.array(0.05, np.float32),
                         casts=casts)
    assert ("the scale 'w_scale'" in first(path).role) is claimed
    assert ("unscaled integers" in first(path).role) is not claimed


def test_integer_op_per_channel_zero_point_with_one_scale(tmp_path):
    """A per-channel zero point with a per-tensor scale (the scale is repeated per channel), and
    with no scale at all: each channel minus its own zero point."""
    q = RNG.integers(0, 256, (8, 3, 3, 3)).astype(np.uint8)
    zero = RNG.integers(100, 150, 8).astype(np.uint8)
    path = integer_model(tmp_path / "m.onnx", "ConvInteger", q, zero, np.array(0.05, np.float32))
    unscaled = q.astype(np.float32) - zero.astype(np.float32).reshape(8, 1, 1, 1)
    np.testing.assert_array_equal(load(path).array, (unscaled * np.float32(0.05)).transpose(OIHW_TO_NHWC))
    (tmp_path / "alone").mkdir()  # two channels: two zero points
    alone = save(tmp_path / "alone" / "m.onnx", [helper.make_node("ConvInteger", ["x", "wq", "", "wz"], ["y"])],
                 initializers(wq=q[:2], wz=zero[:2]))
    assert "unscaled integers" in first(alone).role
    np.testing.assert_array_equal(load(alone).array, unscaled[:2].transpose(OIHW_TO_NHWC))


def dynamic_conv_integer(path: Path, scale_nodes: list, *, rescale_domain: str = "", cast_output: str = "f",
                         scale: np.ndarray | None = None) -> Path:
    """ConvInteger -> Cast -> Mul(., s), where ``scale_nodes`` compute ``s`` from ``xs`` (the input's
    DynamicQuantizeLinear scale), ``x_raw`` (a graph input) and the constant ``w_scale``."""
    q = RNG.integers(0, 256, (8, 3, 3, 3)).astype(np.uint8)
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]), *scale_nodes,
             helper.make_node("ConvInteger", ["xq", "w_quantized", "xz"], ["i"], name="int"),
             helper.make_node("Cast", ["i"], [cast_output], to=TensorProto.FLOAT),
             helper.make_node("Mul", [cast_output, "s"], ["y"], name="rescale", domain=rescale_domain)]
    scale = np.array(0.05, np.float32) if scale is None else scale
    return save(path, nodes, initializers(w_quantized=q, w_scale=scale))


@pytest.mark.parametrize("case", ["input-scale-not-dynamic", "input-scale-a-graph-input", "scales-divided",
                                  "custom-domain-mul", "unnamed-cast-output", "scale-per-input-channel",
                                  "no-output"])
def test_integer_op_scale_not_shown_to_be_the_weights_is_not_claimed(tmp_path, case):
    """Wrong-but-plausible is the worst outcome: each of these is left as unscaled integers."""
    mul = helper.make_node("Mul", ["xs", "w_scale"], ["s"])
    made = {
        "input-scale-not-dynamic": lambda p: dynamic_conv_integer(p, [
            helper.make_node("Abs", ["x_raw"], ["xa"]), helper.make_node("Mul", ["xa", "c"], ["s"])]),
        "input-scale-a-graph-input": lambda p: dynamic_conv_integer(p, [
            helper.make_node("Mul", ["x_raw", "c"], ["s"])]),
        "scales-divided": lambda p: dynamic_conv_integer(p, [helper.make_node("Div", ["xs", "c"], ["s"])]),
        "custom-domain-mul": lambda p: dynamic_conv_integer(p, [mul], rescale_domain="com.example"),
        "unnamed-cast-output": lambda p: dynamic_conv_integer(p, [mul], cast_output=""),
        "scale-per-input-channel": lambda p: dynamic_conv_integer(p, [mul], scale=np.full(3, 0.05, np.float32)),
        "no-output": lambda p: save(p, [helper.make_node("ConvInteger", ["x", "wq"], []),
                                        helper.make_node("Relu", ["x"], ["y"])],
                                    initializers(wq=weights(dtype=np.uint8))),
    }
    path = made[case](tmp_path / "m.onnx")
    if case in ("input-scale-not-dynamic", "input-scale-a-graph-input", "scales-divided"):
        model = onnx.load(str(path))  # the constant factor is not named for the weight
        model.graph.initializer.append(numpy_helper.from_array(np.array(0.5, np.float32), "c"))
        onnx.save_model(model, str(path))
    assert "unscaled integers" in first(path).role


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_layout_follows_transB(tmp_path, trans_b):
    w = weights((48, 10) if not trans_b else (10, 48))
    path = save(tmp_path / "m.onnx", [helper.make_node("Gemm", ["x", "w"], ["y"], transB=trans_b)],
                [numpy_helper.from_array(w, "w")])
    assert first(path).layout == ("OI" if trans_b else "IO")
    units = w if trans_b else w.T  # (out, in), in = 3x4x4 flattened channels first
    np.testing.assert_array_equal(load(path).array, units.reshape(10, 3, 4, 4).transpose(OIHW_TO_NHWC))


def test_matmul_weight_is_in_out(tmp_path):
    w = weights((27, 6))
    path = save(tmp_path / "m.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], [numpy_helper.from_array(w, "w")])
    assert first(path).layout == "IO"
    np.testing.assert_array_equal(load(path).array, w.T.reshape(6, 3, 3, 3).transpose(OIHW_TO_NHWC))


def test_matmul_of_two_activations_is_skipped(tmp_path):
    w = weights()
    path = save(tmp_path / "m.onnx", [helper.make_node("MatMul", ["x", "x"], ["a"]), conv("w", x="a")],
                [numpy_helper.from_array(w, "w")])
    assert first(path).name == "w"


def test_conv_transpose_is_in_out(tmp_path):
    w = weights((3, 8, 4, 4))
    path = save(tmp_path / "m.onnx", [helper.make_node("ConvTranspose", ["x", "w"], ["y"])], initializers(w=w))
    assert first(path).layout == "IOHW"
    np.testing.assert_array_equal(load(path).array, w.transpose(1, 2, 3, 0))


@pytest.mark.parametrize("shape,layout", [((8, 3, 5), "OIK"), ((8, 3, 3, 5, 5), "OIDHW")])
def test_conv1d_and_conv3d_layouts(tmp_path, shape, layout):
    path = save(tmp_path / "m.onnx", [conv("w")], [numpy_helper.from_array(weights(shape), "w")])
    assert first(path).layout == layout
    load(path)


# -- element types and where values are kept --------------------------------------------------


def typed_tensor(name: str, data_type: int, values: np.ndarray) -> TensorProto:
    """Values in float_data/int32_data/... (helper.make_tensor without raw), as older exporters write."""
    return helper.make_tensor(name, data_type, values.shape, values.reshape(-1).tolist())


@pytest.mark.parametrize("make", [
    lambda w: numpy_helper.from_array(w.astype(np.float16), "w"),
    lambda w: typed_tensor("w", TensorProto.FLOAT16, w.astype(np.float16)),
    lambda w: numpy_helper.from_array(w.astype(np.float64), "w"),
    lambda w: typed_tensor("w", TensorProto.DOUBLE, w.astype(np.float64)),
    lambda w: typed_tensor("w", TensorProto.FLOAT, w),
    lambda w: numpy_helper.from_array((w * 40).astype(np.int8), "w"),
    lambda w: typed_tensor("w", TensorProto.INT8, (w * 40).astype(np.int8)),
    lambda w: typed_tensor("w", TensorProto.INT8, -1 - np.abs(w * 40).astype(np.int8)),  # 10 bytes per value
    lambda w: typed_tensor("w", TensorProto.UINT8, (w * 40 + 128).astype(np.uint8)),
    lambda w: numpy_helper.from_array((w * 900).astype(np.int16), "w"),
    lambda w: typed_tensor("w", TensorProto.INT32, (w * 9e5).astype(np.int32)),
    lambda w: typed_tensor("w", TensorProto.INT64, (w * 9e12).astype(np.int64)),
    lambda w: typed_tensor("w", TensorProto.UINT64, (np.abs(w) * 9e12).astype(np.uint64)),
    lambda w: typed_tensor("w", TensorProto.BFLOAT16, w),
    lambda w: helper.make_tensor("w", TensorProto.BFLOAT16, w.shape, w.reshape(-1).tolist(), raw=False),
    lambda w: typed_tensor("w", TensorProto.FLOAT8E4M3FN, w),
    lambda w: typed_tensor("w", TensorProto.FLOAT8E5M2, w),
], ids=["f16-raw", "f16-int32_data", "f64-raw", "f64-double_data", "f32-float_data", "i8-raw", "i8-int32_data",
        "i8-negative-int32_data",
        "u8-int32_data", "i16-raw", "i32", "i64", "u64", "bf16", "bf16-int32_data", "f8e4m3fn", "f8e5m2"])
def test_element_types_match_onnx(tmp_path, make):
    tensor = make(weights())
    path = save(tmp_path / "m.onnx", [conv("w")], [tensor])
    expected = numpy_helper.to_array(tensor)
    got = stored(path, "w")
    if expected.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):  # ml_dtypes: compare as float32
        expected = expected.astype(np.float32)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(load(path).array, expected.astype(np.float32).transpose(OIHW_TO_NHWC))


def test_bfloat16_raw_data(tmp_path):
    w = weights()
    tensor = numpy_helper.from_array(numpy_helper.to_array(typed_tensor("w", TensorProto.BFLOAT16, w)), "w")
    assert tensor.raw_data and tensor.data_type == TensorProto.BFLOAT16
    path = save(tmp_path / "m.onnx", [conv("w")], [tensor])
    np.testing.assert_array_equal(stored(path, "w"), numpy_helper.to_array(tensor).astype(np.float32))


def sparse_model(path: Path, values: np.ndarray, indices: np.ndarray, dims: list[int]) -> Path:
    """A MatMul whose weight is a sparse initializer ``sp`` (indices linear, or one row per value)."""
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(values, "sp"), numpy_helper.from_array(indices, ""),
                                       dims)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "sp"], ["y"])], "g", [], [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], sparse_initializer=[sparse])
    onnx.save_model(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize("indices,dims,where,values_shape", [
    ([0, 23], [4, 6], [(0, 0), (3, 5)], (2,)),
    ([[0, 2], [3, 0]], [4, 6], [(0, 2), (3, 0)], (2,)),  # per axis: (values, rank)
    ([[0], [5]], [6], [(0,), (5,)], (2,)),
    ([[0, 1, 2], [1, 0, 3]], [2, 3, 4], [(0, 1, 2), (1, 0, 3)], (2,)),
    ([0, 23], [4, 6], [(0, 0), (3, 5)], (2, 1)),  # off the spec (values are 1-D), read all the same
], ids=["linear", "per-axis", "per-axis-1d", "per-axis-3d", "values-2d"])
def test_sparse_initializer_is_listed_and_densified(tmp_path, indices, dims, where, values_shape):
    """The ONNX spec's two index forms: linear positions (NNZ,) or coordinates (NNZ, rank)."""
    dense = np.zeros(dims, np.float32)
    dense[where[0]], dense[where[1]] = 1.5, -2.0
    values = np.array([1.5, -2.0], np.float32).reshape(values_shape)
    path = sparse_model(tmp_path / "m.onnx", values, np.array(indices, np.int64), dims)
    got = stored(path, "sp")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, dense)


@pytest.mark.parametrize("indices,words", [
    ([[1, 2], [4, 0]], "indices outside its shape [4, 6]"), ([[1, 2], [3, 6]], "indices outside its shape [4, 6]"),
    ([[1, -1], [3, 0]], "indices outside its shape [4, 6]"), ([8, 24], "indices outside its shape [4, 6]"),
    ([-1, 8], "indices outside its shape [4, 6]"),
    ([0, 8, 9], "3 indices for 2 values"), ([8], "1 indices for 2 values"),
])
def test_sparse_indices_that_do_not_fit_are_refused(tmp_path, indices, words):
    path = sparse_model(tmp_path / "m.onnx", np.array([1.5, -2.0], np.float32), np.array(indices, np.int64), [4, 6])
    with pytest.raises(CorruptFileError, match=re.escape(f"sparse tensor 'sp' has {words}")):
        stored(path, "sp")


def test_sparse_expansion_is_limited_relative_to_the_file_size(tmp_path, monkeypatch):
    path = sparse_model(tmp_path / "m.onnx", np.array([1.0], np.float32), np.array([0], np.int64), [64, 64])
    dense_bytes, size = 64 * 64 * 4, path.stat().st_size
    assert dense_bytes % size, "the test needs a ratio that is not whole"
    monkeypatch.setattr(limits, "MAX_SPARSE_EXPANSION", dense_bytes // size)
    assert stored(path, "sp").shape == (64, 64)
    monkeypatch.setattr(limits, "MAX_SPARSE_EXPANSION", dense_bytes // size - 1)
    with pytest.raises(LimitError, match=r"sparse tensor 'sp' densifying to \[64, 64\] = 16,384 bytes.*"
                                         r"over the limit MAX_SPARSE_EXPANSION"):
        stored(path, "sp")


def test_read_first_rows_only(tmp_path):
    """Rows past the tensor's first axis read it whole; a scalar has no rows to cut."""
    w, v, s = weights((40, 6)), weights((12,)), np.array(2.5, np.float32)
    path = save(tmp_path / "m.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], initializers(w=w, v=v, s=s))
    with filtergrid.open_model(path, format="onnx") as (_, reader):
        np.testing.assert_array_equal(reader.read("w", rows=5), w[:5])
        np.testing.assert_array_equal(reader.read("w", rows=10), w[:10])
        np.testing.assert_array_equal(reader.read("w", rows=100), w)
        np.testing.assert_array_equal(reader.read("v", rows=2), v[:2])
        np.testing.assert_array_equal(reader.read("s", rows=3), s)


def test_an_element_type_filtergrid_cannot_decode_is_named(tmp_path):
    path = save(tmp_path / "m.onnx", [conv("w")], [numpy_helper.from_array(weights(), "w"),
                                                   helper.make_tensor("names", TensorProto.STRING, [2], [b"a", b"b"])])
    with pytest.raises(UnreadableFeatureError, match="'names' has element type string, which filtergrid cannot decode"):
        stored(path, "names")


def test_negative_dims_are_refused_by_name(tmp_path):
    w = numpy_helper.from_array(weights(), "w")
    w.dims[0] = -8
    path = save(tmp_path / "m.onnx", [helper.make_node("Relu", ["x"], ["y"])], [w])
    with pytest.raises(CorruptFileError, match=re.escape("'w' has negative dims [-8, 3, 5, 5]")):
        stored(path, "w")


@pytest.mark.parametrize("make", [
    lambda: numpy_helper.from_array(np.zeros((0, 3), np.float32), "e"),
    lambda: typed_tensor("e", TensorProto.FLOAT, np.zeros((0, 3), np.float32)),
    lambda: typed_tensor("e", TensorProto.DOUBLE, np.zeros((0, 3))),
    lambda: typed_tensor("e", TensorProto.INT8, np.zeros((0, 3), np.int8)),
    lambda: typed_tensor("e", TensorProto.INT64, np.zeros((0, 3), np.int64)),
], ids=["f32-raw", "f32-float_data", "f64-double_data", "i8-int32_data", "i64-int64_data"])
def test_empty_tensors_read_as_empty_arrays_of_their_type(tmp_path, make):
    """Exporters keep empty initializers (a Resize's unused roi); they hold no values and need none."""
    tensor = make()
    path = save(tmp_path / "m.onnx", [helper.make_node("Relu", ["x"], ["y"])], [tensor])
    got, expected = stored(path, "e"), numpy_helper.to_array(tensor)
    assert got.shape == expected.shape == (0, 3) and got.dtype == expected.dtype


def model_with(tmp_path: Path, tensor: TensorProto, data: bytes | None = None) -> Path:
    """A model holding ``tensor`` (consumed by nothing); ``data``: the tensor's own serialization, appended
    to the graph as protobuf merges repeated fields (how a writer that does not pack them stores it)."""
    if data is None:
        return save(tmp_path / "m.onnx", [helper.make_node("Relu", ["x"], ["y"])], [tensor])
    path = save(tmp_path / "m.onnx", [helper.make_node("Relu", ["x"], ["y"])])
    path.write_bytes(path.read_bytes() + tag_len(7, tag_len(5, data)))
    return path


def typed_weight(data_type: int, keep: int | None = None, dims: list[int] | None = None) -> TensorProto:
    """``w`` in its typed value field, cut to its first ``keep`` values or relabelled with ``dims``."""
    values = weights((4, 3, 3, 3))
    values = -1 - np.abs(values * 40).astype(np.int8) if data_type == TensorProto.INT8 else values
    tensor = typed_tensor("w", data_type, values)
    field = "float_data" if data_type == TensorProto.FLOAT else "int32_data"
    if keep is not None:
        del getattr(tensor, field)[keep:]
    if dims is not None:
        tensor.dims[:] = dims
    return tensor


def cut_last_varint(path: Path) -> Path:
    """The last of a tensor of int8 -1s (10 bytes each, ff .. ff 01) made to end in a continuation bit."""
    data = bytearray(path.read_bytes())
    data[data.rfind(b"\xff" * 9 + b"\x01") + 9] = 0x81
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case,words", [
    ("too-few-floats", ["the float_data of tensor 'w'", "holds 40 bytes", "108 values need 432"]),
    ("no-floats", ["tensor 'w' declares [4, 3, 3, 3] but holds no values"]),
    ("too-few-ints", ["the int32_data of tensor 'w'", "holds 10 values", "[4, 3, 3, 3] needs 108"]),
    ("too-many-int-bytes", ["the int32_data of tensor 'w'", "holds 1,080 bytes, too many for 2 values"]),
    ("cut-number", ["the int32_data of tensor 'w'", "ends in the middle of a number"]),
])
def test_typed_values_that_do_not_fit_the_dims_are_refused(tmp_path, case, words):
    path = {
        "too-few-floats": lambda: model_with(tmp_path, typed_weight(TensorProto.FLOAT, keep=10)),
        "no-floats": lambda: model_with(tmp_path, typed_weight(TensorProto.FLOAT, keep=0)),
        "too-few-ints": lambda: model_with(tmp_path, typed_weight(TensorProto.INT8, keep=10)),
        "too-many-int-bytes": lambda: model_with(tmp_path, typed_weight(TensorProto.INT8, dims=[2])),
        "cut-number": lambda: cut_last_varint(
            model_with(tmp_path, typed_tensor("w", TensorProto.INT8, -np.ones(9, np.int8)))),
    }[case]()
    with pytest.raises(CorruptFileError) as error:
        stored(path, "w")
    assert all(w in str(error.value) for w in words), str(error.value)


def unpacked(tensor: TensorProto) -> bytes:
    """``tensor`` serialized by protobuf with its repeated numbers unpacked (one tag per value): the
    TensorProto schema itself with ``packed=false``. Readers must accept both; onnx does."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    message = descriptor_pb2.DescriptorProto()
    TensorProto.DESCRIPTOR.CopyToProto(message)
    for f in [f for f in message.field if f.type_name and not f.type_name.startswith(".onnx.TensorProto.")]:
        message.field.remove(f)  # external_data, metadata_props: other messages, unused here
    for f in message.field:
        if f.label == f.LABEL_REPEATED and f.type not in (f.TYPE_STRING, f.TYPE_BYTES, f.TYPE_MESSAGE):
            f.options.packed = False
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto(name="unpacked.proto", package="onnx", message_type=[message]))
    unpacked_type = message_factory.GetMessageClass(pool.FindMessageTypeByName("onnx.TensorProto"))
    return unpacked_type.FromString(tensor.SerializeToString()).SerializeToString()


@pytest.mark.parametrize("data_type", [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT8, TensorProto.INT64,
                                       TensorProto.UINT64, TensorProto.FLOAT16])
def test_unpacked_value_fields_read_like_packed_ones(tmp_path, data_type):
    values = weights((4, 3))
    values = np.abs(values) if data_type == TensorProto.UINT64 else values
    tensor = typed_tensor("w", data_type, numpy_helper.to_array(typed_tensor("w", data_type, values * 40)))
    data = unpacked(tensor)
    assert data != tensor.SerializeToString()
    path = model_with(tmp_path, tensor, data)
    read_back = onnx.load(str(path)).graph.initializer[0]
    assert read_back == tensor  # onnx reads the unpacked fields as the same tensor
    np.testing.assert_array_equal(stored(path, "w"), numpy_helper.to_array(read_back))


def test_unconsumed_tensors_are_listed_last(tmp_path):
    w = weights()
    path = save(tmp_path / "m.onnx", [conv("w")], [numpy_helper.from_array(np.ones(3, np.float32), "spare"),
                                                   numpy_helper.from_array(w, "w")])
    infos = listing(path)
    assert [i.name for i in infos] == ["w", "spare"] and infos[1].role == "not consumed by any node"


# -- external data ------------------------------------------------------------------------------


def external_model(tmp_path: Path) -> tuple[Path, np.ndarray]:
    w = weights((16, 3, 7, 7))
    path = save(tmp_path / "m.onnx", [conv("w")], [numpy_helper.from_array(w, "w")], save_as_external_data=True,
                all_tensors_to_one_file=True, location="w.data", size_threshold=0)
    return path, w


def test_external_data(tmp_path):
    path, w = external_model(tmp_path)
    assert (tmp_path / "w.data").stat().st_size >= w.nbytes
    np.testing.assert_array_equal(load(path).array, w.transpose(OIHW_TO_NHWC))
    np.testing.assert_array_equal(stored(path, "w", rows=3), w[:3])


def rewrite_external(path: Path, **entries: str) -> None:
    model = onnx.load(str(path), load_external_data=False)
    tensor = model.graph.initializer[0]
    kv = {e.key: e.value for e in tensor.external_data}
    kv.update(entries)
    del tensor.external_data[:]
    for k, v in kv.items():
        tensor.external_data.add(key=k, value=v)
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("location", ["../w.data", "/etc/passwd", "sub/../../w.data", "C:\\w.data", "link.data"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    path, _ = external_model(folder)
    (folder / "link.data").symlink_to(tmp_path / "model" / ".." / "outside.data")
    (tmp_path / "outside.data").write_bytes(bytes(16 * 3 * 7 * 7 * 4))
    rewrite_external(path, location=location)
    with pytest.raises(UnsafeFileError):
        load(path)


def test_external_data_that_is_no_regular_file_is_refused(tmp_path):
    path, _ = external_model(tmp_path)
    (tmp_path / "w.data").unlink()
    os.mkfifo(tmp_path / "w.data")  # opening a FIFO for reading would wait for a writer forever
    with pytest.raises(UnsafeFileError, match="regular file"):
        load(path)


def test_many_unnamed_tensors_are_listed_quickly(tmp_path):
    nodes = [helper.make_node("Constant", [], [""], value=numpy_helper.from_array(np.ones(2, np.float32)))
             for _ in range(5_000)]
    path = save(tmp_path / "m.onnx", [*nodes, helper.make_node("Relu", ["x"], ["y"])],
                [numpy_helper.from_array(np.ones(2, np.float32), "") for _ in range(5_000)])
    infos = listing(path)
    assert len(infos) == 10_000 and infos[-1].name == "(unnamed)#10000"


@pytest.mark.parametrize("entries", [{"offset": "999999999"}, {"length": "12"}, {"length": "99999999"},
                                     {"offset": "-4"}, {"offset": "x"}, {"location": "missing.data"}])
def test_external_data_extent_is_checked(tmp_path, entries):
    path, _ = external_model(tmp_path)
    rewrite_external(path, **entries)
    with pytest.raises(CorruptFileError):
        load(path)


# -- hostile and broken files -----------------------------------------------------------------


def small_model(tmp_path: Path) -> Path:
    return save(tmp_path / "m.onnx", [conv("w"), helper.make_node("Relu", ["y"], ["r"])],
                [numpy_helper.from_array(weights((4, 3, 3, 3)), "w")])


def rich_model(tmp_path: Path) -> Path:
    """Quantized, typed, Constant and subgraph tensors in one small file, for mutation tests."""
    q = numpy_helper.from_array(RNG.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8), "wq")
    body = helper.make_graph([conv("w16", name="inner", y="t")], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
                             [typed_tensor("w16", TensorProto.FLOAT16, weights((2, 3, 3, 3)).astype(np.float16))])
    scales = numpy_helper.from_array(np.linspace(0.1, 0.4, 4, dtype=np.float32))
    return save(tmp_path / "rich.onnx", [
        helper.make_node("Constant", [], ["s"], value=scales),
        helper.make_node("DequantizeLinear", ["wq", "s"], ["w"], axis=0), conv("w"),
        helper.make_node("If", ["cond"], ["i"], then_branch=body, else_branch=body),
        helper.make_node("MatMul", ["i", "m"], ["o"])],
        [q, numpy_helper.from_array(np.array(True), "cond"), typed_tensor("m", TensorProto.BFLOAT16, weights((12, 5)))])


def read_everything(path: Path) -> None:
    """Open with the converter itself (no api safety net) and read every tensor it lists."""
    try:
        reader = onnx_converter.open(path)
    except FiltergridError:
        return
    try:
        for info in reader.tensors():
            with contextlib.suppress(FiltergridError):
                reader.read(info.name)
    finally:
        reader.close()


@pytest.mark.parametrize("make", [small_model, rich_model])
def test_truncated_files_raise_filtergrid_errors(tmp_path, make):
    data = make(tmp_path).read_bytes()
    cut = tmp_path / "cut.onnx"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        read_everything(cut)


@pytest.mark.parametrize("make", [small_model, rich_model])
def test_byte_changes_raise_only_filtergrid_errors(tmp_path, make):
    data = bytearray(make(tmp_path).read_bytes())
    rnd = random.Random(3)
    bad = tmp_path / "bad.onnx"
    for _ in range(400):
        mutated = bytearray(data)
        for _ in range(rnd.randint(1, 4)):
            mutated[rnd.randrange(len(mutated))] = rnd.choice([0, 1, 0x7F, 0x80, 0xFF, rnd.randrange(256)])
        bad.write_bytes(bytes(mutated))
        read_everything(bad)


def test_rich_model_reads(tmp_path):
    path = rich_model(tmp_path)
    # then and else branches each hold an initializer "w16": the second is listed as "w16#2"
    assert [i.name for i in listing(path) if i.candidate] == ["wq", "w16", "w16#2", "m"]
    load(path)
    load(path, tensor="m")


def test_dims_that_lie_about_raw_data(tmp_path):
    w = numpy_helper.from_array(weights((4, 3, 3, 3)), "w")
    w.dims[0] = 400
    path = save(tmp_path / "m.onnx", [conv("w")], [w])
    with pytest.raises(CorruptFileError, match="'w' declares .* = 43,200 bytes but its raw_data has 432"):
        load(path)


def test_huge_dims_hit_the_tensor_limit_before_allocating(tmp_path):
    w = numpy_helper.from_array(weights((4, 3, 3, 3)), "w")
    w.dims[:] = [2**40, 3, 3, 3]
    path = save(tmp_path / "m.onnx", [conv("w")], [w])
    with pytest.raises(LimitError):
        load(path)


def test_graph_structure_is_bounded_by_max_header_bytes(tmp_path, monkeypatch):
    """Names, nodes and attributes count against MAX_HEADER_BYTES; tensor values do not."""
    monkeypatch.setattr(limits, "MAX_HEADER_BYTES", 4000)
    big = weights((64, 64, 5, 5))  # 400 KB of values
    load(save(tmp_path / "values.onnx", [conv("w")], [numpy_helper.from_array(big, "w")]))
    relus = [helper.make_node("Relu", [f"h{i}"], [f"h{i + 1}"], name=f"relu{i}") for i in range(200)]
    path = save(tmp_path / "nodes.onnx", [conv("w", y="h0"), *relus], [numpy_helper.from_array(weights(), "w")])
    with pytest.raises(LimitError, match="MAX_HEADER_BYTES"):
        load(path)


def test_read_of_an_unknown_name_raises_tensor_not_found(tmp_path):
    with filtergrid.open_model(small_model(tmp_path), format="onnx") as (_, reader):
        with pytest.raises(TensorNotFoundError):
            reader.read("no such tensor")


def test_deep_subgraph_nesting_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_NESTING", 5)
    out = [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)]
    inner = helper.make_graph([conv("w", y="t")], "g0", [], out)
    for level in range(10):
        node = helper.make_node("If", ["cond"], ["t"], then_branch=inner, else_branch=inner)
        inner = helper.make_graph([node], f"g{level + 1}", [], out)
    path = save(tmp_path / "m.onnx", list(inner.node), [numpy_helper.from_array(weights(), "w")])
    with pytest.raises(LimitError):
        load(path)


def test_fields_in_declaration_order(tmp_path):
    """Some writers put opset_import (field 8) before the graph (field 7); sniff and walk still work."""
    w = weights((4, 3, 3, 3))
    model = onnx.load(str(save(tmp_path / "m.onnx", [conv("w")], [numpy_helper.from_array(w, "w")])))
    path = tmp_path / "ordered.onnx"
    path.write_bytes(b"\x08" + varint(model.ir_version) + tag_len(8, model.opset_import[0].SerializeToString())
                     + tag_len(7, model.graph.SerializeToString()))
    assert onnx.load(str(path)).graph.node[0].op_type == "Conv"
    assert sniffs(path)
    np.testing.assert_array_equal(load(path).array, w.transpose(OIHW_TO_NHWC))


def test_not_onnx_at_all(tmp_path):
    for content in (b"", b"\x08", b"hello world\n" * 100, os.urandom(5000)):
        bad = tmp_path / "x.onnx"
        bad.write_bytes(content)
        with pytest.raises(FiltergridError):
            load(bad)


def test_model_past_2_gib_is_walked_without_reading_the_payload(tmp_path):
    """An initializer of 3 GiB (a hole in a sparse file) before the conv: offsets past 2**31 work."""
    w = weights((4, 3, 3, 3))
    big = TensorProto(name="big", dims=[3 * 2**28], data_type=TensorProto.FLOAT)  # payload written below
    big_head = big.SerializeToString() + b"\x4a" + varint(3 * 2**30)  # raw_data tag + length
    big_size = len(big_head) + 3 * 2**30
    rest = b"".join(tag_len(1, n.SerializeToString()) for n in [conv("w")]) + tag_len(
        5, numpy_helper.from_array(w, "w").SerializeToString())
    graph_size = len(b"\x2a" + varint(big_size)) + big_size + len(rest)
    path = tmp_path / "big.onnx"
    with open(path, "wb") as f:
        f.write(b"\x08\x0a" + b"\x3a" + varint(graph_size) + b"\x2a" + varint(big_size) + big_head)
        f.seek(3 * 2**30, os.SEEK_CUR)
        f.write(rest)
    if path.stat().st_blocks * 512 > 2**30:
        pytest.skip("this filesystem has no sparse files")
    infos = listing(path)
    assert [(i.name, i.shape) for i in infos] == [("w", (4, 3, 3, 3)), ("big", (3 * 2**28,))]
    np.testing.assert_array_equal(load(path).array, w.transpose(OIHW_TO_NHWC))


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def tag_len(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


# -- sniffing ---------------------------------------------------------------------------------------


def sniffs(path: Path) -> bool:
    return onnx_converter.sniff(Probe.of(path))


def test_sniff_accepts_onnx_models(tmp_path):
    assert sniffs(small_model(tmp_path))
    (tmp_path / "ext").mkdir()
    assert sniffs(external_model(tmp_path / "ext")[0])
    model = onnx.load(str(small_model(tmp_path)))
    model.producer_name, model.producer_version, model.doc_string = "pytorch", "2.13.0", "x" * 5000
    (tmp_path / "p.onnx").write_bytes(model.SerializeToString())
    assert sniffs(tmp_path / "p.onnx")


@pytest.mark.parametrize("head", [
    b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
    b"PK\x03\x04" + bytes(40), b"\x89HDF\r\n\x1a\n" + bytes(40), b"\x80\x02}q\x00.",
    b"GGUF\x03\x00\x00\x00" + bytes(40),
    b"\x1c\x00\x00\x00TFL3" + bytes(40), b"\x08\x01\x00\x00\x00\x00\x00\x00{\"w\": {}}" + b" " * 256,
    b"\x08\x00\x00\x00\x00\x00\x00\x00{\"__metadata__\":{}}", b"# a text file\n" * 20, b"\x08\x08\x08\x08" * 100,
])
def test_sniff_refuses_other_formats(tmp_path, head):
    path = tmp_path / "f.bin"
    path.write_bytes(head)
    assert not sniffs(path)


def test_sniff_false_positive_rate_on_random_heads():
    rnd = random.Random(11)
    claims = 0
    for i in range(10_000):
        head = bytes([0x08]) + rnd.randbytes(4095) if i % 2 else rnd.randbytes(4096)
        claims += onnx_converter.sniff(Probe(Path("r"), head, 1 << 20))
    assert claims <= 2
