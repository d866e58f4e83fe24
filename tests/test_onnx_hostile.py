"""Hostile ONNX files that amplify work: each ends in exit 0 or 2 (one line), under 30 s and 2 GiB.

Made with the onnx helper library (hostile files are the one place where a file is built by hand):
model-local functions fanning out 2^21 calls, a function calling itself from deep inside If
bodies, If bodies nested past any sane depth, and a sparse initializer of a few bytes that
densifies to 512 Mi elements. Each runs through the CLI in a child process with its address space
capped at 2 GiB and a 30 s wall clock.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import filtergrid  # noqa: E402
from filtergrid.errors import CorruptFileError, LimitError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ADDRESS_SPACE = 2 * 1024**3
SECONDS = 30
OPSETS = [helper.make_opsetid("", 21), helper.make_opsetid("local", 1)]
FLOAT = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]


def save(path: Path, nodes, initializers=(), functions=(), sparse=()) -> Path:
    graph = helper.make_graph(nodes, "g", [], FLOAT, list(initializers), sparse_initializer=list(sparse))
    model = helper.make_model(graph, functions=list(functions), opset_imports=OPSETS)
    path.write_bytes(model.SerializeToString())  # onnx.save_model would check nothing more
    return path


def conv_weight() -> TensorProto:
    return numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")


def call(function: str, inputs: list[str], outputs: list[str]):
    return helper.make_node(function, inputs, outputs, domain="local")


def block0():
    return helper.make_function("local", "Block0", ["inp", "k"], ["out"],
                                [helper.make_node("Conv", ["inp", "k"], ["out"], name="fconv")], OPSETS)


def fan_out(path: Path, levels: int = 21, transposed: bool = False, padding: int = 0) -> Path:
    """Block<n> calls Block<n-1> twice: 2^21 calls of Block0 if each call were walked.

    ``transposed``: the two calls get two different Transposes of the weight, so no two calls
    share their arguments and remembering walked calls does not help. ``padding``: Relu nodes in
    every body, so that even a bounded number of calls per function visits millions of nodes.
    """
    functions = [block0()]
    for level in range(1, levels + 1):
        a, b = ("ka", "kb") if transposed else ("k", "k")
        body = [call(f"Block{level - 1}", ["inp", a], ["h"]), call(f"Block{level - 1}", ["h", b], ["out"])]
        body[:0] = [helper.make_node("Relu", ["inp"], [f"pad{i}"]) for i in range(padding)]
        if transposed:
            body[:0] = [helper.make_node("Transpose", ["k"], ["ka"], perm=[0, 1, 2, 3]),
                        helper.make_node("Transpose", ["k"], ["kb"], perm=[0, 1, 3, 2])]
        functions.append(helper.make_function("local", f"Block{level}", ["inp", "k"], ["out"], body, OPSETS))
    return save(path, [call(f"Block{levels}", ["x", "w"], ["y"])], [conv_weight()], functions)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def tag_len(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def nested_ifs(inner: list, depth: int) -> bytes:
    """The NodeProto of an If whose then_branch holds an If ... ``depth`` deep around ``inner`` nodes.

    Built by concatenating serialized messages: onnx.helper copies every level again (quadratic)
    and protobuf refuses to parse messages nested over 100 deep.
    """
    graph = b"".join(tag_len(1, n.SerializeToString()) for n in inner)
    head = helper.make_node("If", ["c"], ["out"]).SerializeToString()
    for level in range(depth):
        attribute = tag_len(1, b"then_branch") + b"\xa0\x01\x05" + tag_len(6, graph)  # type (field 20) = GRAPH
        node = head + tag_len(5, attribute)
        graph = tag_len(1, node) + tag_len(2, f"if{level}".encode())
    return node


def model_bytes(nodes: list[bytes], initializers: list, functions: list[bytes] = ()) -> bytes:
    """A ModelProto of serialized nodes and functions, assembled field by field."""
    model = helper.make_model(helper.make_graph([], "g", [], []), opset_imports=OPSETS)
    model.ClearField("graph")
    graph = b"".join(tag_len(1, n) for n in nodes) + tag_len(2, b"g")
    graph += b"".join(tag_len(5, t.SerializeToString()) for t in initializers)
    return model.SerializeToString() + tag_len(7, graph) + b"".join(tag_len(25, f) for f in functions)


def self_call_in_deep_ifs(path: Path, depth: int = 60) -> Path:
    """Function F calls F from inside ``depth`` nested If bodies (expanding it never ends)."""
    body = nested_ifs([helper.make_node("Conv", ["inp", "k"], ["t"]), call("F", ["t", "k"], ["out"])], depth)
    f = helper.make_function("local", "F", ["inp", "k"], ["out"], [], OPSETS).SerializeToString() + tag_len(7, body)
    inits = [conv_weight(), numpy_helper.from_array(np.array(True), "c")]
    path.write_bytes(model_bytes([call("F", ["x", "w"], ["y"]).SerializeToString()], inits, [f]))
    return path


def mutual_recursion(path: Path) -> Path:
    """A calls B, B calls A."""
    a = helper.make_function("local", "A", ["inp", "k"], ["out"], [call("B", ["inp", "k"], ["out"])], OPSETS)
    b = helper.make_function("local", "B", ["inp", "k"], ["out"],
                             [helper.make_node("Conv", ["inp", "k"], ["t"]), call("A", ["t", "k"], ["out"])], OPSETS)
    return save(path, [call("A", ["x", "w"], ["y"])], [conv_weight()], [a, b])


def deep_ifs(path: Path, depth: int = 2000) -> Path:
    """If bodies nested 2000 deep around a Conv: deeper than Python's stack if followed by recursion."""
    node = nested_ifs([helper.make_node("Conv", ["x", "w"], ["out"])], depth)
    path.write_bytes(model_bytes([node], [conv_weight(), numpy_helper.from_array(np.array(True), "c")]))
    return path


def sparse_bomb(path: Path) -> Path:
    """A sparse initializer of one value that densifies to 2^15 x 2^14 = 512 Mi float32 (2 GiB)."""
    values = helper.make_tensor("s", TensorProto.FLOAT, [1], [1.0])
    indices = helper.make_tensor("", TensorProto.INT64, [1], [0])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "s"], ["y"])], "", [], [],
                              sparse_initializer=[helper.make_sparse_tensor(values, indices, [2**15, 2**14])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    path.write_bytes(model.SerializeToString())
    return path


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def render(path: Path, **limits: str) -> tuple[subprocess.CompletedProcess, float]:
    """``filtergrid render`` in a child process under 2 GiB of address space; its wall time."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "OPENBLAS_NUM_THREADS": "1", **limits}
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "filtergrid", "render", str(path), "-o", str(path) + ".png"],
                            capture_output=True, text=True, timeout=SECONDS + 30, preexec_fn=_limited, env=env,
                            check=False)
    return result, time.monotonic() - start


def wide_fan_out(path: Path) -> Path:
    """2^21 calls with distinct arguments through bodies of 100 nodes: ~400,000 node visits."""
    return fan_out(path, transposed=True, padding=100)


#: Each hostile file, the exit code it must end with, what its one error line must name, and the
#: limits set for the run (FILTERGRID_* variables).
CASES: dict[str, tuple[Callable[[Path], Path], int, str, dict[str, str]]] = {
    "function-fan-out-2^21": (fan_out, 0, "", {}),
    "function-fan-out-2^21-distinct-arguments": (lambda p: fan_out(p, transposed=True), 0, "", {}),
    "function-fan-out-2^21-distinct-arguments-wide-bodies": (wide_fan_out, 0, "", {}),
    "function-fan-out-over-the-visit-budget": (wide_fan_out, 2, "MAX_TENSORS", {"FILTERGRID_MAX_TENSORS": "50000"}),
    "self-calling-function-in-60-deep-ifs": (self_call_in_deep_ifs, 2, "calls itself", {}),
    "mutually-recursive-functions": (mutual_recursion, 2, "calls itself", {}),
    "ifs-nested-2000-deep": (deep_ifs, 2, "MAX_NESTING", {}),
    "ifs-nested-2000-deep-when-allowed": (deep_ifs, 0, "", {"FILTERGRID_MAX_NESTING": "100000"}),
    "sparse-initializer-densifying-to-512Mi": (sparse_bomb, 2, "MAX_SPARSE_EXPANSION", {}),
}


@pytest.mark.parametrize("name", CASES)
def test_cli_ends_in_bounded_time_and_memory(name, tmp_path):
    make, code, named, limits = CASES[name]
    path = make(tmp_path / "model.onnx")
    result, seconds = render(path, **limits)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    if code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("filtergrid: error: "), result.stderr
        assert named in lines[0], lines[0]
    else:
        assert Path(str(path) + ".png").is_file()
    assert seconds < SECONDS, f"{name}: {seconds:.1f} s"


def test_sparse_bomb_is_tiny(tmp_path):
    assert sparse_bomb(tmp_path / "m.onnx").stat().st_size < 128


def test_fan_out_picks_the_weight_of_the_function_conv(tmp_path):
    path = fan_out(tmp_path / "m.onnx")
    bank = filtergrid.load(path)
    assert bank.provenance.tensor == "w" and "function 'Block0'" in bank.provenance.chosen_by
    np.testing.assert_array_equal(bank.array, numpy_helper.to_array(conv_weight()).transpose(0, 2, 3, 1))


@pytest.mark.parametrize("make,error", [(self_call_in_deep_ifs, CorruptFileError), (deep_ifs, LimitError),
                                        (mutual_recursion, CorruptFileError), (sparse_bomb, LimitError)])
def test_typed_errors_in_process(tmp_path, make, error):
    """In process too (no API safety net, no RecursionError): the converter's own typed error."""
    with pytest.raises(error):
        filtergrid.load(make(tmp_path / "m.onnx"), format="onnx")
