"""ONNX: the weight of the first Conv/Gemm/MatMul node, found without loading the model.

The ModelProto is walked on the wire over an ``mmap`` (:mod:`.wire`, on :mod:`..protowire`):
node op types and input names in graph order, each tensor as byte spans. The graph is then
walked in execution order (:mod:`.walk`), into If/Loop/Scan bodies and model-local functions
where their nodes sit; each weight is traced back through Identity, Cast, Transpose and
DequantizeLinear nodes (:mod:`.scopes`), integer operators' scales are found where the graph
applies them (:mod:`.integer_ops`), and the listing puts each weight at its node
(:mod:`.listing`). Only the tensor asked for is decoded (:mod:`.decode`); external data is read
only from files inside the model's folder (:mod:`.external`). Detection is in :mod:`.sniff`.
"""

from __future__ import annotations

from ...safeio import ModelPath, model_path
from .reader import OnnxReader
from .sniff import sniff

__all__ = ["OnnxReader", "open", "sniff"]


def open(path: ModelPath) -> OnnxReader:  # noqa: A001 - the converter protocol's name
    return OnnxReader(model_path(path))
