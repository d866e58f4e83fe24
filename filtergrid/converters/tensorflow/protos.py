"""The few TensorFlow protobuf messages filtergrid needs, read field by field with the wire walker.

Field numbers are those of tensorflow/core/framework/{types,tensor,tensor_shape,node_def,function,
attr_value,graph}.proto and tensorflow/core/protobuf/{tensor_bundle,trackable_object_graph,
saved_model,meta_graph,saved_object_graph}.proto.
"""

from __future__ import annotations

from collections.abc import Iterator

from ...errors import CorruptFileError
from ..protowire import LEN, VARINT, iter_fields, packed_varints, signed, text

#: TensorFlow DataType -> the dtypes vocabulary (others, like DT_STRING and DT_RESOURCE, by name).
DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
          9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 19: "float16", 20: "resource",
          21: "variant", 22: "uint32", 23: "uint64", 24: "float8_e5m2", 25: "float8_e4m3fn"}


def dtype_name(code: int) -> str:
    """The dtype of a DataType code; reference types (code + 100) are their value type."""
    code = code - 100 if code > 100 else code
    return DTYPES.get(code, f"TensorFlow type {code}")


def fields(buf, span: tuple[int, int], what: str) -> Iterator[tuple[int, int, int, int]]:
    return iter_fields(buf, span[0], span[1], what)


def strings(buf, span: tuple[int, int], number: int, what: str) -> list[str]:
    """Every string in repeated field ``number`` of the message at ``span``."""
    return [text(buf, a, b, what) for n, w, a, b in fields(buf, span, what) if n == number and w == LEN]


def first(buf, span: tuple[int, int], number: int, what: str) -> tuple[int, int] | None:
    """The span of the last occurrence of length-delimited field ``number`` (protobuf's rule), or None."""
    found = None
    for n, w, a, b in fields(buf, span, what):
        if n == number and w == LEN:
            found = (a, b)
    return found


def varint(buf, span: tuple[int, int], number: int, what: str, default: int = 0) -> int:
    value = default
    for n, w, a, _ in fields(buf, span, what):
        if n == number and w == VARINT:
            value = signed(a)
    return value


def shape(buf, span: tuple[int, int] | None, what: str) -> tuple[int, ...] | None:
    """A TensorShapeProto's dimensions, or None for an unknown rank or unknown sizes."""
    if span is None:
        return ()
    dims = []
    for n, w, a, b in fields(buf, span, what):
        if n == 3 and w == VARINT and a:
            return None
        if n == 2 and w == LEN:
            dims.append(varint(buf, (a, b), 1, f"{what} dim"))
            if len(dims) > 8:
                raise CorruptFileError(f"{what} has more than 8 dimensions")
    return None if any(d < 0 for d in dims) else tuple(dims)


def repeated_ints(buf, span: tuple[int, int], number: int, what: str) -> list[int]:
    """A repeated integer field, packed or not."""
    out: list[int] = []
    for n, w, a, b in fields(buf, span, what):
        if n == number and w == VARINT:
            out.append(signed(a))
        elif n == number and w == LEN:
            out.extend(int(v) for v in packed_varints(buf, a, b, what))
    return out
