"""A folder like the ones people audit: framework-made fixtures, models written here, broken files,
links and a pipe. Shared by the audit, Dask and HTML tests."""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from conftest import FIXTURES, manifest_entries
from safetensors.numpy import save_file

import filtergrid

#: A file name an attacker would choose: the HTML report must show it, never run it.
HOSTILE_NAME = "<img src=x onerror=alert(1)>.npy"


class Evil:
    """Pickles to a call of os.system: what a malicious checkpoint hides in an object array."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@dataclass
class Zoo:
    root: Path
    good: dict[str, list[int]] = field(default_factory=dict)  # relative path -> canonical shape
    bad: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pwned: Path | None = None


def _loads(path: Path) -> bool:
    """Fixtures whose converter is still on a branch (or needs a missing extra) are left to test_fixtures."""
    try:
        filtergrid.load(path)
    except filtergrid.FiltergridError:
        return False
    return True


def add_fixtures(zoo: Zoo) -> None:
    seen = set()
    for entry in manifest_entries():
        if entry.get("options") or entry["file"] in seen:
            continue
        seen.add(entry["file"])
        source = FIXTURES / entry["file"]
        if not _loads(source):
            continue
        target = zoo.root / "fixtures" / entry["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:  # with its companions (ONNX external data: model.onnx.data; Darknet .cfg; ncnn .bin)
            companions = [source.with_suffix(s) for s in (".cfg", ".bin") if source.suffix in (".weights", ".param")]
            for part in [*source.parent.glob(f"{source.name}*"), *filter(Path.exists, companions)]:
                shutil.copy(part, target.parent / part.name)
        weights = {".xml": ".bin", ".pdmodel": ".pdiparams", ".json": ".pdiparams"}.get(source.suffix)
        if weights:  # OpenVINO and Paddle weights beside their program: one model, audited once
            shutil.copy(source.with_suffix(weights), target.with_suffix(weights))
        zoo.good[f"fixtures/{entry['file']}"] = entry["canonical_shape"]


def add_written(zoo: Zoo) -> None:
    rng = np.random.default_rng(0)
    root = zoo.root
    np.save(root / "conv.npy", rng.normal(size=(16, 3, 5, 5)).astype(np.float32))
    zoo.good["conv.npy"] = [16, 5, 5, 3]
    np.savez(root / "runs" / "mlp.npz", W1=rng.normal(size=(3072, 10)).astype(np.float32), b1=np.zeros(10, np.float32))
    zoo.good["runs/mlp.npz"] = [10, 32, 32, 3]
    sick = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    sick[1] = 0                      # a dead filter
    sick[3] = sick[2] * 1.5          # a near-duplicate (cosine 1)
    sick[4, 0, 0, 0] = np.nan        # a NaN
    save_file({"conv1.weight": sick, "conv1.bias": np.zeros(8, np.float32)}, str(root / "runs" / "sick.safetensors"))
    zoo.good["runs/sick.safetensors"] = [8, 3, 3, 3]
    clipped = np.clip(rng.normal(scale=100, size=(4, 3, 3, 3)), -128, 127).astype(np.int8)
    np.save(root / "quant" / "clipped_int8.npy", clipped)
    zoo.good["quant/clipped_int8.npy"] = [4, 3, 3, 3]
    np.save(root / HOSTILE_NAME, rng.normal(size=(6, 1, 3, 3)).astype(np.float32))
    zoo.good[HOSTILE_NAME] = [6, 3, 3, 1]


def add_broken(zoo: Zoo) -> None:
    root = zoo.root / "broken"
    rng = np.random.default_rng(1)
    whole = (zoo.root / "runs" / "sick.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(whole[: len(whole) // 2])
    (root / "empty.npy").write_bytes(b"")
    (root / "random.onnx").write_bytes(rng.bytes(5000))
    (root / "text.h5").write_text("this is not a model, just a text file\n" * 20)
    header = json.dumps({"w": {"dtype": "F32", "shape": [25 * 1024**3], "data_offsets": [0, 100 * 1024**3]}}).encode()
    (root / "claims_100GiB.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    zoo.pwned = zoo.root.parent / f"{zoo.root.name}-PWNED"
    np.save(root / "evil_pickle.npy", np.array([Evil(zoo.pwned)], dtype=object), allow_pickle=True)
    zoo.bad += [f"broken/{n}" for n in ("truncated.safetensors", "empty.npy", "random.onnx", "text.h5",
                                         "claims_100GiB.safetensors", "evil_pickle.npy")]


def add_not_models(zoo: Zoo) -> None:
    root = zoo.root
    (root / "notes.txt").write_text("trained for 90 epochs\n")
    os.symlink("conv.npy", root / "same_as_conv.npy")       # the same real file twice
    os.symlink("..", root / "runs" / "loop")                # a folder loop
    os.symlink("self_link", root / "self_link")             # a link to itself (ELOOP)
    os.mkfifo(root / "pipe.npy")                            # would block a reader forever
    zoo.skipped += ["notes.txt", "same_as_conv.npy", "self_link", "pipe.npy"]


def make_zoo(root: Path, *, fixtures: bool = True, broken: bool = True) -> Zoo:
    for sub in ("runs", "quant", "broken"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    zoo = Zoo(root)
    add_written(zoo)
    if fixtures:
        add_fixtures(zoo)
    if broken:
        add_broken(zoo)
    add_not_models(zoo)
    return zoo


def slow_folder(root: Path) -> Path:
    """A small model and a big one: a 4096-filter first layer whose duplicate search takes seconds."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    np.save(root / "a_big.npy", rng.normal(size=(4096, 3, 32, 32)).astype(np.float32))
    np.save(root / "b_small.npy", rng.normal(size=(8, 3, 3, 3)).astype(np.float32))
    return root


def comparable(document: dict) -> dict:
    """A report without what differs between two runs of the same audit: timings and how it ran."""
    files = [{k: v for k, v in r.items() if k not in ("seconds", "ran_on")} for r in document["files"]]
    summary = {k: v for k, v in document["summary"].items() if k not in ("seconds", "started_at", "options")}
    return {"schema_version": document["schema_version"], "summary": summary, "files": files,
            "skipped": document["skipped"]}
