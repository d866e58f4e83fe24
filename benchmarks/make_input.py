"""Write one benchmark input with its real framework: ``python make_input.py KIND BYTES PATH``.

Every input is the same small CNN scaled to about ``BYTES``: ``conv1`` (64 filters of 7x7x3, the
first layer filtergrid must find) followed by a chain of 16 dense layers whose width sets the size.
Prints a JSON line: the tensor to read, the file's size and what wrote it. Exit code 3 means the
framework this KIND needs is not installed in this Python.

KINDs: onnx-conv-first, onnx-conv-last (conv1's initializer stored after all the dense ones, so a
reader must skip ~BYTES to reach it), safetensors, torch-zip, torch-legacy, keras-h5-weights (Keras 2
weights-only layout), keras-h5 (legacy full-model ``.h5``), keras (Keras 3 ``.keras`` archive); and gguf,
an LLM's layout instead: a float16 ``token_embd.weight`` of ~BYTES (the input layer, shown as a heatmap
of its first rows) then one small block; orbax, a folder written by ``StandardCheckpointer`` (OCDBT,
zstd chunks) whose dense kernels are random, since constants would compress the folder to nothing.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from collections.abc import Iterator

import numpy as np

CONV = "conv1.weight"
CONV_SHAPE = (64, 3, 7, 7)  # OIHW, as torch and ONNX store it
DENSE_LAYERS = 16
NEEDS = {"onnx-conv-first": "onnx", "onnx-conv-last": "onnx", "safetensors": "safetensors",
         "torch-zip": "torch", "torch-legacy": "torch", "keras-h5-weights": "keras", "keras-h5": "keras",
         "keras": "keras", "gguf": "gguf", "orbax": "orbax.checkpoint"}
GGUF_DIM = 4096


def dense_width(total_bytes: int) -> int:
    """Width ``w`` such that fc0 (64 -> w) plus 15 layers (w -> w) of float32 fill ``total_bytes``."""
    floats = max(total_bytes - 4 * math.prod(CONV_SHAPE), 0) / 4
    a, b = DENSE_LAYERS - 1, CONV_SHAPE[0]
    return max(8, int((-b + math.sqrt(b * b + 4 * a * floats)) / (2 * a)))


def specs(total_bytes: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor in model order; dense weights in torch's (out, in) order."""
    width = dense_width(total_bytes)
    dense = [(f"fc{i}.weight", (width, CONV_SHAPE[0] if i == 0 else width)) for i in range(DENSE_LAYERS)]
    return [(CONV, CONV_SHAPE), ("conv1.bias", (CONV_SHAPE[0],)), *dense]


def make(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The values: random filters for conv1 (so its grid is worth a look), constants elsewhere (fast)."""
    if name == CONV:
        return np.random.default_rng(0).standard_normal(shape, dtype=np.float32) * np.float32(0.1)
    return np.full(shape, 0 if name.endswith("bias") else 1e-3, np.float32)


def layers(total_bytes: int) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) in model order, made one at a time."""
    for name, shape in specs(total_bytes):
        yield name, make(name, shape)


def onnx_model(total_bytes: int, conv_last: bool, with_initializers: bool = True):
    """The ModelProto (made with onnx.helper); without initializers, ``onnx_tensors`` gives them."""
    from onnx import TensorProto, helper

    nodes, previous = [], "pooled"
    for name, _ in specs(total_bytes):
        if name.startswith("fc"):
            out = f"{name}.out"
            nodes += [helper.make_node("MatMul", [previous, name], [out]),
                      helper.make_node("Relu", [out], [f"{out}.relu"])]
            previous = f"{out}.relu"
    nodes = [helper.make_node("Conv", ["image", CONV, "conv1.bias"], ["conv1.out"],
                              kernel_shape=[7, 7], strides=[2, 2], pads=[3, 3, 3, 3]),
             helper.make_node("Relu", ["conv1.out"], ["conv1.relu"]),
             helper.make_node("GlobalAveragePool", ["conv1.relu"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["pooled"])] + nodes
    graph = helper.make_graph(
        nodes, "bench", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, None])],
        list(onnx_tensors(total_bytes, conv_last)) if with_initializers else [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def onnx_tensors(total_bytes: int, conv_last: bool):
    """The initializers as TensorProtos in file order (conv1's last if ``conv_last``), made one at a time."""
    from onnx import numpy_helper

    order = specs(total_bytes)
    if conv_last:
        order = order[2:] + order[:2]
    for name, shape in order:
        array = make(name, shape)
        yield numpy_helper.from_array(np.ascontiguousarray(array.T) if name.startswith("fc") else array, name)


def split_fields(message, number: int) -> tuple[bytes, bytes]:
    """The serialized fields of ``message`` numbered below and above ``number``.

    Protobuf writes a message's fields in field-number order, so ``below + field number + above`` is
    byte for byte what ``SerializeToString`` gives for the whole message.
    """
    below, above = type(message)(), type(message)()
    below.CopyFrom(message)
    above.CopyFrom(message)
    for field, _ in message.ListFields():
        if field.number >= number:
            below.ClearField(field.name)
        if field.number <= number:
            above.ClearField(field.name)
    return below.SerializeToString(), above.SerializeToString()


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def write_onnx(path: str, total_bytes: int, conv_last: bool) -> str:
    """``onnx.save`` of the model, streamed: ``SerializeToString`` of a 1 GiB model needs ~5 GB and
    30 s, so the initializers (GraphProto field 5) are serialized one by one between the fields that
    precede and follow them, giving the same bytes (checked against onnx.save for small models)."""
    import onnx

    model = onnx_model(total_bytes, conv_last, with_initializers=False)
    model_head, model_tail = split_fields(model, 7)  # ModelProto.graph
    graph_head, graph_tail = split_fields(model.graph, 5)  # GraphProto.initializer
    sizes = [t.ByteSize() for t in onnx_tensors(total_bytes, conv_last)]
    graph_size = len(graph_head) + len(graph_tail) + sum(1 + len(varint(s)) + s for s in sizes)
    with open(path, "wb") as f:
        f.write(model_head + bytes([7 << 3 | 2]) + varint(graph_size) + graph_head)
        for tensor in onnx_tensors(total_bytes, conv_last):
            f.write(bytes([5 << 3 | 2]) + varint(tensor.ByteSize()))
            f.write(tensor.SerializeToString())
        f.write(graph_tail + model_tail)
    if total_bytes <= 16 << 20:
        with open(path, "rb") as f:
            assert f.read() == onnx_model(total_bytes, conv_last).SerializeToString(), "differs from onnx.save"
    return f"onnx {onnx.__version__} (onnx.helper model, serialized as onnx.save does)"


def write_safetensors(path: str, total_bytes: int) -> str:
    import safetensors
    from safetensors.numpy import save_file

    save_file(dict(layers(total_bytes)), path)
    return f"safetensors {safetensors.__version__} safetensors.numpy.save_file"


def write_torch(path: str, total_bytes: int, legacy: bool) -> str:
    from collections import OrderedDict

    import torch

    state = OrderedDict((name, torch.from_numpy(array)) for name, array in layers(total_bytes))
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    how = "_use_new_zipfile_serialization=False" if legacy else "zip"
    return f"torch {torch.__version__} torch.save(state_dict, {how})"


def write_gguf(path: str, total_bytes: int) -> str:
    import gguf

    vocab = max(8, total_bytes // (2 * GGUF_DIM))
    writer = gguf.GGUFWriter(path, "llama")
    embedding = np.full((vocab, GGUF_DIM), 1e-3, np.float16)
    embedding[:512] = np.random.default_rng(0).standard_normal((512, GGUF_DIM)).astype(np.float16)
    writer.add_tensor("token_embd.weight", embedding)
    writer.add_tensor("blk.0.attn_q.weight", np.full((GGUF_DIM, 64), 1e-3, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return f"gguf {getattr(gguf, '__version__', '')} GGUFWriter".replace("  ", " ")


def write_orbax(path: str, total_bytes: int) -> str:
    """The CNN as a flax-style params tree (HWIO conv, (in, out) dense kernels) in an Orbax folder."""
    import orbax.checkpoint as ocp

    rng = np.random.default_rng(0)
    params = {"conv1": {"kernel": make(CONV, CONV_SHAPE).transpose(2, 3, 1, 0)}}
    for name, shape in specs(total_bytes)[2:]:
        params[name.split(".")[0]] = {"kernel": rng.random(shape[::-1], dtype=np.float32) * np.float32(1e-3)}
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.abspath(path), {"params": params})
    return f"orbax-checkpoint {ocp.__version__} StandardCheckpointer (OCDBT)"


def folder_bytes(path: str) -> int:
    """Bytes of a file, or of every file under a folder."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def keras_model(total_bytes: int):
    """The CNN in Keras (channels-last): conv1's filters are ``make``'s, transposed to HWIO."""
    import keras

    width = dense_width(total_bytes)
    x = inputs = keras.Input((224, 224, 3))
    conv = keras.layers.Conv2D(CONV_SHAPE[0], CONV_SHAPE[2], strides=2, padding="same", name="conv1")
    x = keras.layers.GlobalAveragePooling2D()(conv(x))
    for i in range(DENSE_LAYERS):
        x = keras.layers.Dense(width, activation="relu", name=f"fc{i}",
                               kernel_initializer=keras.initializers.Constant(1e-3))(x)
    model = keras.Model(inputs, x)
    conv.set_weights([make(CONV, CONV_SHAPE).transpose(2, 3, 1, 0), np.zeros(CONV_SHAPE[0], np.float32)])
    return model


def write_keras(path: str, total_bytes: int, kind: str) -> str:
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    model = keras_model(total_bytes)
    if kind == "keras-h5-weights":
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
        how = "legacy_h5_format.save_weights_to_hdf5_group (Keras 2 weights-only)"
    else:
        model.save(path)
        how = "model.save (legacy HDF5)" if kind == "keras-h5" else "model.save (.keras archive)"
    return f"keras {keras.__version__} {how}"


def main(kind: str, total_bytes: int, path: str) -> int:
    try:
        importlib.import_module(NEEDS[kind])
    except ImportError:
        return 3
    if kind.startswith("onnx"):
        made_by = write_onnx(path, total_bytes, conv_last=kind == "onnx-conv-last")
    elif kind.startswith("keras"):
        made_by = write_keras(path, total_bytes, kind)
    elif kind == "safetensors":
        made_by = write_safetensors(path, total_bytes)
    elif kind == "gguf":
        made_by = write_gguf(path, total_bytes)
    elif kind == "orbax":
        made_by = write_orbax(path, total_bytes)
    else:
        made_by = write_torch(path, total_bytes, legacy=kind == "torch-legacy")
    tensor = {"gguf": "token_embd.weight", "orbax": "params/conv1/kernel"}.get(kind, "conv1" if kind.startswith("keras")
                                                                                   else CONV)
    print(json.dumps({"tensor": tensor, "bytes": folder_bytes(path), "made_by": made_by}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
