"""The object graph of a TF2 checkpoint (``TrackableObjectGraph``): which object owns which variable.

Node 0 is the checkpoint's root (a ``tf.train.Checkpoint`` or a Keras model); each node lists its
children by local name in the order they were tracked, and its variables' checkpoint keys. A model's
layers are tracked in the order they were built, so a depth-first walk from the root lists the
variables layer by layer. Optimizer state hangs off the ``optimizer`` child and slot references,
and is left out of that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ... import limits
from ...errors import CorruptFileError
from ..protowire import LEN, VARINT, iter_fields, text

#: Children that hold training state, not the model: their variables are never a first layer.
NOT_MODEL = {"optimizer", "save_counter", "_optimizer", "global_step"}


@dataclass
class TrackedObject:
    children: list[tuple[int, str]] = field(default_factory=list)
    #: (attribute name, checkpoint key): a variable's attribute is VARIABLE_VALUE.
    attributes: list[tuple[str, str]] = field(default_factory=list)


def parse(buf: bytes) -> list[TrackedObject]:
    """The nodes of a serialized TrackableObjectGraph (also the layout of a SavedObjectGraph's nodes)."""
    nodes: list[TrackedObject] = []
    for n, w, a, b in iter_fields(buf, 0, len(buf), "object graph"):
        if n == 1 and w == LEN:
            nodes.append(_node(buf, a, b, len(nodes)))
            limits.check("MAX_TENSORS", len(nodes), "objects in the object graph")
    return nodes


def _node(buf: bytes, start: int, end: int, index: int) -> TrackedObject:
    what = f"object graph node {index}"
    node = TrackedObject()
    for n, w, a, b in iter_fields(buf, start, end, what):
        if n == 1 and w == LEN:
            node.children.append(_reference(buf, a, b, what))
        elif n == 2 and w == LEN:
            values = {k: text(buf, x, y, what) for k, kw, x, y in iter_fields(buf, a, b, what) if kw == LEN}
            node.attributes.append((values.get(1, ""), values.get(3, "")))
    return node


def _reference(buf: bytes, start: int, end: int, what: str) -> tuple[int, str]:
    node_id, name = 0, ""
    for n, w, a, b in iter_fields(buf, start, end, what):
        if n == 1 and w == VARINT:
            node_id = a
        elif n == 2 and w == LEN:
            name = text(buf, a, b, what)
    return node_id, name


def variable_key(node: TrackedObject) -> str | None:
    return next((key for name, key in node.attributes if name == "VARIABLE_VALUE" and key), None)


def model_order(nodes: list[TrackedObject]) -> list[tuple[str, str]]:
    """``(checkpoint key, object path)`` of every variable reached from the root, depth first.

    Children are taken in tracking order, except that Keras' numbered children (``layer-3``,
    ``layer_with_weights-10``, list items ``0``, ``1``, ...) are put in number order.
    """
    if not nodes:
        return []
    out: list[tuple[str, str]] = []
    seen = {0}
    stack: list[tuple[int, str]] = [(0, "")]
    while stack:
        index, path = stack.pop()
        key = variable_key(nodes[index])
        if key:
            out.append((key, path))
        children = [(c, name) for c, name in _ordered(nodes[index].children) if name not in NOT_MODEL]
        for child, name in reversed(children):
            if not 0 <= child < len(nodes):
                raise CorruptFileError(f"object graph node {index} refers to node {child} of {len(nodes)}")
            if child not in seen:
                seen.add(child)
                stack.append((child, f"{path}/{name}" if path else name))
    return out


def _ordered(children: list[tuple[int, str]]) -> list[tuple[int, str]]:
    slots = [i for i, c in enumerate(children) if c[1].rsplit("-", 1)[-1].isdigit()]
    if len(slots) < 2:
        return children
    numbered = sorted((children[i] for i in slots), key=lambda c: int(c[1].rsplit("-", 1)[-1][:18]))
    out = list(children)
    for i, child in zip(slots, numbered):
        out[i] = child
    return out
