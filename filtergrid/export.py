"""Writing a canonical FilterBank to array files, with its provenance alongside."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .bank import FilterBank
from .errors import UsageError
from .safeio import atomic_write

SUFFIXES = (".npy", ".npz", ".safetensors")


def write_bank(bank: FilterBank, out: str | Path) -> Path:
    """``.npy`` holds the array; ``.npz`` adds a ``provenance`` JSON member; ``.safetensors`` keeps it as metadata."""
    out = Path(out)
    suffix = out.suffix.lower()
    meta = json.dumps(bank.to_dict())
    if suffix == ".npy":
        return atomic_write(out, lambda f: np.save(f, bank.array, allow_pickle=False))
    if suffix == ".npz":
        return atomic_write(out, lambda f: np.savez(f, filters=bank.array, provenance=np.array(meta)))
    if suffix == ".safetensors":
        from safetensors.numpy import save

        blob = save({"filters": bank.array}, metadata={"filtergrid": meta})
        return atomic_write(out, lambda f: f.write(blob))
    raise UsageError(f"cannot convert to {out.name!r}: choose a name ending in {', '.join(SUFFIXES)}")
