"""Write one benchmark input with its real framework: ``python make_input.py KIND BYTES PATH``.

Every input is the same small CNN scaled to about ``BYTES``: ``conv1`` (64 filters of 7x7x3, the
first layer filtergrid must find) followed by a chain of 16 dense layers whose width sets the size.
PATH is ``model<suffix>`` in a folder of the input's own (companion files, shards and SavedModel
folders go beside it or under it). Prints a JSON line: the tensor the naive load reads, the file to
open, the bytes of everything written and what wrote it. Exit code 3 means the framework this KIND
needs is not installed in this Python.

KINDs: onnx-conv-first, onnx-conv-last (conv1's initializer stored after all the dense ones, so a
reader must skip ~BYTES to reach it), safetensors, torch-zip, torch-legacy, keras-h5-weights (Keras 2
weights-only layout), keras-h5 (legacy full-model ``.h5``), keras (Keras 3 ``.keras`` archive); gguf,
an LLM's layout instead: a float16 ``token_embd.weight`` of ~BYTES (the input layer, shown as a heatmap
of its first rows) then one small block. Issue 11's formats, with conv1 stored after the dense
weights where the format lets its writer choose: tf-savedmodel, tf-checkpoint (the bundle sorts keys:
the ``blocks`` come before ``conv1``), tf-frozen (the dense ``Const`` nodes first), tflite, tfjs (a
graph model converted from the SavedModel), coreml-nn (``.mlmodel``: layers in graph order, conv1
first), coreml-program (``.mlpackage``), openvino, paddle (``.pdparams``), paddle-inference (PIR
``.json`` + ``.pdiparams``), caffe, darknet and ncnn (layer order: conv1 first), sklearn (an MLP whose
first layer sees 7x7x3 patches; half the bytes are its SGD velocities), flax (keys sorted as ``jit``
leaves them: the dense ``block``s before the ``stem`` conv). orbax: a folder written by
``StandardCheckpointer`` (OCDBT, zstd chunks) whose dense kernels are random, since constants would
compress the folder to nothing.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import json
import math
import os
import shutil
import sys
import zlib
from collections.abc import Iterator
from unittest import mock

import numpy as np

CONV = "conv1.weight"
CONV_SHAPE = (64, 3, 7, 7)  # OIHW, as torch and ONNX store it
DENSE_LAYERS = 16
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
    """The values: random filters for conv1 (so its grid is worth a look), small random weights
    elsewhere (a different stream per layer: converters that merge equal constants, like TFLite's
    and coremltools', must not shrink the file), zero biases."""
    if name.endswith("bias"):
        return np.zeros(shape, np.float32)
    scale = 0.1 if name == CONV else 1e-3
    return np.random.default_rng(zlib.crc32(name.encode())).standard_normal(shape, dtype=np.float32) * np.float32(scale)


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
    embedding[:512] = np.random.default_rng(0).standard_normal((min(vocab, 512), GGUF_DIM)).astype(np.float16)
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


def tf_net(total_bytes: int):
    """The CNN as a ``tf.Module``: conv1 (HWIO) is tracked first, so a TF2 checkpoint's object graph
    names it first, while the dense kernels, tracked as ``blocks``, sort before ``conv1`` in the
    tensor bundle and are stored before it."""
    import tensorflow as tf

    class Net(tf.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tf.Variable(make(CONV, CONV_SHAPE).transpose(2, 3, 1, 0), name="conv1")
            self.blocks = [tf.Variable(make(name, shape).T, name=name.split(".")[0])
                           for name, shape in specs(total_bytes) if name.startswith("fc")]

        @tf.function(input_signature=[tf.TensorSpec([1, 224, 224, 3], tf.float32, name="image")])
        def __call__(self, x):
            x = tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(x, self.conv1, 2, "SAME")), [1, 2])
            for kernel in self.blocks:
                x = tf.nn.relu(tf.matmul(x, kernel))
            return x

    return Net()


def frozen_graph(total_bytes: int):
    """The GraphDef of tf_net's call with its variables folded into ``Const`` nodes, the dense
    kernels' nodes first (node order is free in a GraphDef; the graph's edges give the order)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    net = tf_net(total_bytes)
    graph = convert_variables_to_constants_v2(net.__call__.get_concrete_function()).graph.as_graph_def()
    nodes = sorted(graph.node, key=lambda n: not (n.op == "Const" and n.attr["value"].tensor.tensor_shape.dim
                                                  and n.attr["value"].tensor.tensor_shape.dim[0].size > 64))
    del graph.node[:]
    graph.node.extend(nodes)
    conv = next(n.name for n in graph.node if n.op == "Const" and len(n.attr["value"].tensor.tensor_shape.dim) == 4)
    return graph, conv


def write_tensorflow(path: str, total_bytes: int, kind: str) -> tuple[str, str, str]:
    """SavedModel folder, TF2 checkpoint (opened by its ``.index``), frozen ``.pb``, TFLite or TF.js graph model."""
    import tensorflow as tf

    if kind == "tf-frozen":
        graph, conv = frozen_graph(total_bytes)
        with open(path, "wb") as f:
            f.write(graph.SerializeToString())
        return f"tensorflow {tf.__version__} convert_variables_to_constants_v2", conv, path
    net = tf_net(total_bytes)
    if kind == "tf-checkpoint":
        prefix = tf.train.Checkpoint(model=net).write(path)
        return (f"tensorflow {tf.__version__} tf.train.Checkpoint.write", "model/conv1/.ATTRIBUTES/VARIABLE_VALUE",
                prefix + ".index")
    if kind == "tflite":
        converter = tf.lite.TFLiteConverter.from_concrete_functions([net.__call__.get_concrete_function()], net)
        with open(path, "wb") as f:
            f.write(converter.convert())
        return f"tensorflow {tf.__version__} TFLiteConverter", "", path
    saved = path if kind == "tf-savedmodel" else path + ".savedmodel"
    tf.saved_model.save(net, saved)
    if kind == "tf-savedmodel":
        return f"tensorflow {tf.__version__} tf.saved_model.save", "conv1", path
    tfjs = importlib.import_module("tensorflowjs")
    tfjs.converters.convert_tf_saved_model(saved, path)
    shutil.rmtree(saved)
    with open(os.path.join(path, "model.json")) as f:
        manifest = json.load(f)["weightsManifest"]
    conv = next(w["name"] for group in manifest for w in group["weights"] if len(w["shape"]) == 4)
    return f"tensorflowjs {tfjs.__version__} convert_tf_saved_model", conv, os.path.join(path, "model.json")


def torch_net(total_bytes: int):
    """The CNN as a ``torch.nn.Module`` (conv1, then fc0..fc15 as Linear layers), with ``make``'s values."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, CONV_SHAPE[0], CONV_SHAPE[2], stride=2, padding=3)
            self.fc = torch.nn.ModuleList(torch.nn.Linear(shape[1], shape[0], bias=False)
                                          for name, shape in specs(total_bytes) if name.startswith("fc"))

        def forward(self, x):
            x = torch.relu(self.conv1(x)).mean((2, 3))
            for layer in self.fc:
                x = torch.relu(layer(x))
            return x

    net = Net().eval()
    with torch.no_grad():
        for name, array in layers(total_bytes):
            target = net.conv1.weight if name == CONV else net.conv1.bias if name == "conv1.bias" else \
                net.fc[int(name[2:].split(".")[0])].weight
            target.copy_(torch.from_numpy(array))
    return net


def write_coreml(path: str, total_bytes: int, kind: str) -> tuple[str, str, str]:
    """ct.convert of the traced torch net: a NeuralNetwork ``.mlmodel`` or an ML Program ``.mlpackage``."""
    import warnings

    import coremltools as ct
    import torch

    warnings.filterwarnings("ignore")
    example = torch.rand(1, 3, 224, 224)
    traced = torch.jit.trace(torch_net(total_bytes), example)
    target = "neuralnetwork" if kind == "coreml-nn" else "mlprogram"
    model = ct.convert(traced, inputs=[ct.TensorType(name="image", shape=example.shape)], convert_to=target,
                       compute_precision=None if target == "neuralnetwork" else ct.precision.FLOAT32)
    model.save(path)
    return f"coremltools {ct.__version__} ct.convert(convert_to={target!r})", "", path


def write_openvino(path: str, total_bytes: int) -> tuple[str, str, str]:
    import openvino as ov
    import torch

    model = ov.convert_model(torch_net(total_bytes), example_input=torch.rand(1, 3, 224, 224))
    ov.save_model(model, path, compress_to_fp16=False)
    return f"openvino {ov.__version__.split('-')[0]} convert_model + save_model (f32)", "", path


def write_ncnn(path: str, total_bytes: int) -> tuple[str, str, str]:
    """pnnx.export of the torch net, float32; only the ncnn ``.param`` + ``.bin`` are kept."""
    import pnnx
    import torch

    stem = path.removesuffix(".ncnn.param")
    pnnx.export(torch_net(total_bytes), stem + ".pt", torch.rand(1, 3, 224, 224), fp16=False)
    for other in set(glob.glob(stem + "*")) - {path, stem + ".ncnn.bin"}:
        os.remove(other)
    return "pnnx export (fp16=False)", "", path


def write_paddle(path: str, total_bytes: int, kind: str) -> tuple[str, str, str]:
    """paddle.save of the state dict (``.pdparams``) or paddle.jit.save (PIR ``.json`` + ``.pdiparams``)."""
    import paddle

    class Net(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv1 = paddle.nn.Conv2D(3, CONV_SHAPE[0], CONV_SHAPE[2], stride=2, padding=3)
            self.fc = paddle.nn.LayerList([paddle.nn.Linear(shape[1], shape[0], bias_attr=False)
                                           for name, shape in specs(total_bytes) if name.startswith("fc")])

        def forward(self, x):
            x = paddle.nn.functional.relu(self.conv1(x)).mean(axis=[2, 3])
            for layer in self.fc:
                x = paddle.nn.functional.relu(layer(x))
            return x

    net = Net()
    net.conv1.weight.set_value(make(CONV, CONV_SHAPE))
    for i, layer in enumerate(net.fc):  # Paddle's Linear stores (in, out)
        layer.weight.set_value(make(f"fc{i}.weight", tuple(layer.weight.shape)))
    if kind == "paddle":
        paddle.save(net.state_dict(), path)
        return f"paddlepaddle {paddle.__version__} paddle.save(state_dict)", "conv1.weight", path
    prefix = path.removesuffix(".json")
    paddle.jit.save(net, prefix, input_spec=[paddle.static.InputSpec([1, 3, 224, 224], "float32", "image")])
    return f"paddlepaddle {paddle.__version__} paddle.jit.save (PIR)", net.conv1.weight.name, path


def caffe_messages():
    """Caffe's own schema (the ``caffe_pb2`` that caffe-onnx ships) as fast protobuf classes: that module
    is old generated code that only the pure-Python runtime imports, far too slow for 1 GiB, so its
    serialized ``caffe.proto`` descriptor is loaded into a pool instead."""
    import ast
    import importlib.util
    import re

    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    source = open(importlib.util.find_spec("proto.caffe_pb2").origin, encoding="latin-1").read()
    literal = re.search(r"serialized_pb=_b\(('.*?')\)", source, re.S).group(1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(ast.literal_eval(literal).encode("latin-1")))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


def write_caffe(path: str, total_bytes: int) -> tuple[str, str, str]:
    """A ``.caffemodel`` (Input, conv1, then the dense chain as InnerProduct layers) and its ``.prototxt``."""
    from google.protobuf import text_format

    net = caffe_messages()(name="bench")
    net.layer.add(name="image", type="Input", top=["image"]).input_param.shape.add(dim=[1, 3, 224, 224])
    conv = net.layer.add(name="conv1", type="Convolution", bottom=["image"], top=["conv1"])
    conv.convolution_param.num_output, conv.convolution_param.stride[:] = CONV_SHAPE[0], [2]
    conv.convolution_param.kernel_size[:], conv.convolution_param.pad[:] = [CONV_SHAPE[2]], [3]
    previous = "conv1"
    for name, array in layers(total_bytes):
        if name.startswith("fc"):
            layer = net.layer.add(name=name.split(".")[0], type="InnerProduct", bottom=[previous], top=[name])
            layer.inner_product_param.num_output, layer.inner_product_param.bias_term = array.shape[0], False
            previous = name
        else:
            layer = conv
        blob = layer.blobs.add()
        blob.shape.dim.extend(array.shape)
        blob.data.extend(array.ravel())
    with open(path, "wb") as f:
        f.write(net.SerializeToString())
    for layer in net.layer:
        del layer.blobs[:]
    with open(path.removesuffix(".caffemodel") + ".prototxt", "w") as f:
        f.write(text_format.MessageToString(net))
    return "caffe.proto (caffe-onnx's caffe_pb2 descriptor), protobuf serialization", "conv1", path


def write_darknet(path: str, total_bytes: int) -> tuple[str, str, str]:
    """pytorchyolo's Darknet from a cfg: conv1, then the dense chain as 1x1 convolutions."""
    from pytorchyolo.models import Darknet

    cfg = path.removesuffix(".weights") + ".cfg"
    sections = ["[net]\nbatch=1\nsubdivisions=1\nwidth=224\nheight=224\nchannels=3\nmomentum=0.9\ndecay=0.0005\n"
                "learning_rate=0.001\nburn_in=0\nmax_batches=100\npolicy=steps\nsteps=50\nscales=.1\n",
                f"[convolutional]\nfilters={CONV_SHAPE[0]}\nsize={CONV_SHAPE[2]}\nstride=2\npad=1\nactivation=relu\n"]
    sections += [f"[convolutional]\nfilters={shape[0]}\nsize=1\nstride=1\npad=0\nactivation=relu\n"
                 for name, shape in specs(total_bytes) if name.startswith("fc")]
    with open(cfg, "w") as f:
        f.write("\n".join(sections))
    model = Darknet(cfg)
    model.header_info = np.array([0, 2, 5, 0, 0], dtype=np.int32)
    model.save_darknet_weights(path, cutoff=len(model.module_defs))
    return "pytorchyolo Darknet.save_darknet_weights", "conv_0", path


def write_sklearn(path: str, total_bytes: int) -> tuple[str, str, str]:
    """An MLPClassifier over 7x7x3 patches (147 features -> 64 -> the dense chain), one SGD epoch, joblib.dump.
    Its weights take half the bytes: the momentum solver's velocities, pickled after them, the other half."""
    import warnings

    import joblib
    import sklearn
    from sklearn.neural_network import MLPClassifier

    warnings.simplefilter("ignore")
    widths = [shape[0] for name, shape in specs(total_bytes // 2) if name.startswith("fc")]
    x = np.random.default_rng(0).standard_normal((32, math.prod(CONV_SHAPE[1:])), dtype=np.float32)
    mlp = MLPClassifier((CONV_SHAPE[0], *widths), solver="sgd", max_iter=1, batch_size=32, random_state=0)
    mlp.fit(x, np.arange(32) % 2)
    joblib.dump(mlp, path)
    return f"scikit-learn {sklearn.__version__} MLPClassifier, joblib.dump", "", path


def write_flax(path: str, total_bytes: int) -> tuple[str, str, str]:
    """flax.linen init under jit (so the params' keys are sorted, as most real checkpoints have them:
    the dense blocks before the ``stem`` conv), then flax.serialization.to_bytes."""
    import flax
    import flax.linen as nn
    import jax

    widths = [shape[0] for name, shape in specs(total_bytes) if name.startswith("fc")]

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(CONV_SHAPE[0], CONV_SHAPE[2:], strides=2, name="stem")(x)).mean((1, 2))
            for i, width in enumerate(widths):
                x = nn.relu(nn.Dense(width, use_bias=False, name=f"block{i:02d}")(x))
            return x

    variables = jax.jit(Net().init)(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))
    with open(path, "wb") as f:
        f.write(flax.serialization.to_bytes(variables))
    return f"flax {flax.__version__} linen init (jit) + serialization.to_bytes", "", path


#: KIND -> (the module it needs, its writer: (path, bytes) -> (made by, tensor for the naive load, file to open)).
WRITERS = {
    "onnx-conv-first": ("onnx", lambda p, n: (write_onnx(p, n, conv_last=False), CONV, p)),
    "onnx-conv-last": ("onnx", lambda p, n: (write_onnx(p, n, conv_last=True), CONV, p)),
    "safetensors": ("safetensors", lambda p, n: (write_safetensors(p, n), CONV, p)),
    "torch-zip": ("torch", lambda p, n: (write_torch(p, n, legacy=False), CONV, p)),
    "torch-legacy": ("torch", lambda p, n: (write_torch(p, n, legacy=True), CONV, p)),
    "keras-h5-weights": ("keras", lambda p, n: (write_keras(p, n, "keras-h5-weights"), "conv1", p)),
    "keras-h5": ("keras", lambda p, n: (write_keras(p, n, "keras-h5"), "conv1", p)),
    "keras": ("keras", lambda p, n: (write_keras(p, n, "keras"), "conv1", p)),
    "gguf": ("gguf", lambda p, n: (write_gguf(p, n), "token_embd.weight", p)),
    **{kind: ("tensorflow", lambda p, n, kind=kind: write_tensorflow(p, n, kind))
       for kind in ("tf-savedmodel", "tf-checkpoint", "tf-frozen", "tflite")},
    "tfjs": ("tensorflowjs", lambda p, n: write_tensorflow(p, n, "tfjs")),
    "coreml-nn": ("coremltools", lambda p, n: write_coreml(p, n, "coreml-nn")),
    "coreml-program": ("coremltools", lambda p, n: write_coreml(p, n, "coreml-program")),
    "openvino": ("openvino", write_openvino),
    "paddle": ("paddle", lambda p, n: write_paddle(p, n, "paddle")),
    "paddle-inference": ("paddle", lambda p, n: write_paddle(p, n, "paddle-inference")),
    "caffe": ("proto.caffe_pb2", write_caffe),
    "darknet": ("pytorchyolo", write_darknet),
    "ncnn": ("pnnx", write_ncnn),
    "sklearn": ("sklearn", write_sklearn),
    "flax": ("flax", write_flax),
    "orbax": ("orbax.checkpoint", lambda p, n: (write_orbax(p, n), "params/conv1/kernel", p)),
}


#: Modules that a KIND's package imports at start-up for features not used here, stubbed (as the
#: fixture scripts do): pytorchyolo's image utilities, tensorflowjs's converters for other libraries.
STUBS = {"darknet": ("torchvision", "imgaug", "imgaug.augmenters", "imgaug.augmentables", "imgaug.augmentables.bbs",
                     "torchsummary", "terminaltables"),
         "tfjs": ("tensorflow_decision_forests", "tensorflow_hub", "jax", "jax.experimental", "jax.experimental.jax2tf",
                  "flax")}


def disk_bytes(folder: str) -> int:
    """The bytes of the model: everything in the folder it was written to (its companions too)."""
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)


def main(kind: str, total_bytes: int, path: str) -> int:
    needs, writer = WRITERS[kind]
    for stub in STUBS.get(kind, ()):
        sys.modules.setdefault(stub, mock.MagicMock())
    try:
        if importlib.util.find_spec(needs) is None:  # found, not imported: caffe_pb2 imports only as pure Python
            return 3
    except ImportError:
        return 3
    made_by, tensor, model = writer(path, total_bytes)
    print(json.dumps({"tensor": tensor, "path": model, "bytes": disk_bytes(os.path.dirname(path)), "made_by": made_by}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
