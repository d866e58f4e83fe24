"""Writing a canonical FilterBank to array files, and knowing those files again when they are read.

Every file ``convert`` writes carries a record (``MARKER``: the bank's kind, shape and provenance as
JSON): ``.safetensors`` in its metadata, ``.npz`` as a uint8 member, ``.npy`` (whose header admits
no extra keys) in a ``<name>.filtergrid.json`` file beside it. Readers hand the record to
:func:`saved_bank`, so a bank read back is the bank written: canonical (filters, H, W, C), same
provenance, not re-read as OIHW.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from . import limits
from .bank import FilterBank, Producer, Provenance, TensorInfo
from .dtypes import to_float32
from .errors import CorruptFileError, UsageError
from .safeio import atomic_write

SUFFIXES = (".npy", ".npz", ".safetensors")
#: The metadata key / npz member / sidecar suffix that marks an array file as a filtergrid bank.
MARKER = "filtergrid.bank"
#: The array's name inside a bank file.
ARRAY = "filters"
_PROVENANCE_TEXT = ("source", "format", "tensor", "original_dtype", "layout", "chosen_by")


def sidecar(npy: Path) -> Path:
    """Where the record of a ``.npy`` bank lives."""
    return npy.parent / sidecar_name(npy.name)


def sidecar_name(npy_name: str) -> str:
    """The file name of a ``.npy`` bank's record (beside it, local or remote)."""
    return f"{npy_name}.{MARKER.split('.')[0]}.json"


def write_bank(bank: FilterBank, out: str | Path) -> Path:
    """Write the array with its record (see the module docstring); the suffix picks the file type."""
    out = Path(out)
    suffix = out.suffix.lower()
    record = json.dumps({"version": 1, **bank.to_dict()})
    if suffix == ".npy":
        atomic_write(sidecar(out), lambda f: f.write(record.encode()))
        return atomic_write(out, lambda f: np.save(f, bank.array, allow_pickle=False))
    if suffix == ".npz":
        blob = np.frombuffer(record.encode(), dtype=np.uint8)
        return atomic_write(out, lambda f: np.savez(f, **{ARRAY: bank.array, MARKER: blob}))  # type: ignore[arg-type]  # numpy's stub reads a **dict as maybe allow_pickle
    if suffix == ".safetensors":
        from safetensors.numpy import save

        data = save({ARRAY: bank.array}, metadata={MARKER: record})
        return atomic_write(out, lambda f: f.write(data))
    raise UsageError(f"cannot convert to {out.name!r}: choose a name ending in {', '.join(SUFFIXES)}")


def parse_record(raw: bytes | str | None) -> dict[str, Any] | None:
    """The record of a bank file (untrusted: bounded, checked field by field), or None when absent."""
    if raw is None:
        return None
    limits.check("MAX_HEADER_BYTES", len(raw), f"bytes of the {MARKER} record")
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        raise CorruptFileError(f"{MARKER} record is not JSON") from None
    prov = record.get("provenance") if isinstance(record, dict) else None
    ok = (isinstance(prov, dict) and record.get("kind") in ("filters", "matrix")
          and isinstance(record.get("shape"), list) and all(isinstance(prov.get(k), str) for k in _PROVENANCE_TEXT)
          and _ints(prov.get("original_shape")) and isinstance(prov.get("notes"), list)
          and all(isinstance(n, str) for n in prov["notes"]))
    if not ok:
        raise CorruptFileError(f"{MARKER} record lacks the fields of a filtergrid bank")
    return record


def _ints(value) -> bool:
    return isinstance(value, list) and all(type(v) is int for v in value)


def saved_bank(record: dict | None, name: str, stored: np.ndarray, layout: str | None) -> FilterBank | None:
    """The bank a filtergrid file holds, as written; None for any other file (or another --layout)."""
    if record is None or name != ARRAY or layout is not None:
        return None
    if record["shape"] != list(stored.shape) or stored.ndim != 4:
        raise CorruptFileError(f"{MARKER} record says {record['shape']}, the array is {list(stored.shape)}")
    prov = record["provenance"]
    provenance = Provenance(prov["source"], prov["format"], prov["tensor"], tuple(prov["original_shape"]),
                            prov["original_dtype"], prov["layout"], prov["chosen_by"], tuple(prov["notes"]),
                            _producer(prov.get("producer")))
    return FilterBank(np.ascontiguousarray(to_float32(stored)), provenance, record["kind"])


def _producer(value: object) -> Producer | None:
    """The original file's producer as the record keeps it (untrusted: its text fields only)."""
    if not isinstance(value, dict):
        return None
    name, version, format_version, opset = (value.get(k) if isinstance(value.get(k), str) else ""
                                            for k in ("name", "version", "format_version", "opset"))
    details = value.get("details")
    return Producer.recorded(name, version, format_version, opset,
                             tuple(d for d in details if isinstance(d, str)) if isinstance(details, list) else ())


def bank_listing(entries: list[tuple[str, tuple[int, ...], str]]) -> list[TensorInfo]:
    """The listing of a bank file: its array, already canonical; the record is no tensor to show."""
    return [TensorInfo(name, tuple(shape), dtype, "NHWC", "HWC", "a filtergrid bank: canonical (filters, H, W, C)",
                       True) if name == ARRAY else
            TensorInfo(name, tuple(shape), dtype, "auto", "HWC", "the bank's record, not a weight", False)
            for name, shape, dtype in entries]
