"""Hostile inputs (tests/hostile_corpus.py): a FilterBank or a one-line FiltergridError, nothing else.

Every case runs in-process through ``filtergrid.load``; the whole corpus again in one worker
process under a 1.5 GB address-space limit; a sample through the CLI, under the same limit and a
wall timeout, where exit code 2 must come with exactly one ``filtergrid: error:`` line.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import hostile_corpus as corpus
import numpy as np
import pytest

import filtergrid
from filtergrid import limits
from filtergrid.errors import (
    CorruptFileError,
    FiltergridError,
    LimitError,
    TensorNotFoundError,
    UnsafeFileError,
)

ROOT = Path(__file__).resolve().parent.parent
CASES = corpus.cases()
BY_NAME = {case.name: case for case in CASES}
MEMORY_LIMIT = 1536 * 1024**2
SECONDS_PER_CASE = 10


def _load_within(path: Path):
    return corpus.load_bounded(path, SECONDS_PER_CASE)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_input_gives_a_bank_or_a_typed_error(case, tmp_path):
    path = case.make(tmp_path)
    try:
        bank = _load_within(path)
    except FiltergridError as e:
        assert "\n" not in str(e) and str(e).strip(), repr(str(e))
        assert "ran out of memory" not in str(e), "memory must be bounded before allocating"
        assert not corpus.safety_net_fired(e), f"the converter leaked {e.__context__!r}; raise a typed error"
    else:
        assert isinstance(bank, filtergrid.FilterBank)
    assert not (tmp_path / corpus.CANARY).exists()


#: Crafted cases whose refusal must say why: (error class, words the message must contain).
EXPECTED = {
    "safetensors/tensor-100GiB.safetensors": (LimitError, "MAX_TENSOR_BYTES"),
    "safetensors/tensor-1GiB-absent.safetensors": (CorruptFileError, "file has"),
    "safetensors/overlap.safetensors": (CorruptFileError, "overlap"),
    "safetensors/empty-but-huge.safetensors": (CorruptFileError, "empty along one axis"),
    "safetensors/deep-json.safetensors": (CorruptFileError, "JSON"),
    "npy/declares-128GiB.npy": (LimitError, "MAX_TENSOR_BYTES"),
    "npy/declares-1GiB-absent.npy": (CorruptFileError, "1,073,741,824 bytes"),
    "npz/declares-128GiB.npz": (LimitError, "MAX_TENSOR_BYTES"),
    "pickle/bytearray8-claims-2.5GB.pth": (CorruptFileError, "bytearray"),
    "npz/object-dtype.npz": (UnsafeFileError, "pickle"),
    "npz/pickle-payload.npz": (UnsafeFileError, "pickle"),
    "npz/traversal-member.npz": (UnsafeFileError, "../evil.npy"),
    "npz/absolute-member.npz": (UnsafeFileError, "/tmp/filtergrid-evil.npy"),
    "npz/backslash-member.npz": (UnsafeFileError, "evil.npy"),
    "npz/drive-member.npz": (UnsafeFileError, "C:/evil.npy"),
    "keras/traversal-member.keras": (UnsafeFileError, "../../evil.h5"),
    "h5/external-storage.h5": (UnsafeFileError, "outside the model file"),
    "h5/external-link.h5": (UnsafeFileError, "another file"),
    "h5/virtual-dataset.h5": (UnsafeFileError, "virtual dataset"),
    "h5/layer-names-1e6.h5": (CorruptFileError, "layer_names"),
    "h5/shape-over-limit.h5": (LimitError, "MAX_TENSOR_BYTES"),
    "h5/data-absent-800MB.h5": (CorruptFileError, "stores 0 bytes"),
    "h5/global-heap-loop.h5": (CorruptFileError, "free-space object"),
    "h5/datatype-as-kernel.h5": (CorruptFileError, "names no dataset"),
    "h5/non-utf8-layer-name.h5": (TensorNotFoundError, "no first-layer weight"),
    "hf/shard-traversal": (UnsafeFileError, "../secret.safetensors"),
    "hf/shard-absolute": (UnsafeFileError, "secret.safetensors"),
    "hf/weights-symlink-out": (UnsafeFileError, "outside the model's folder"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_crafted_attack_is_refused_with_its_reason(name, tmp_path):
    error, needle = EXPECTED[name]
    with pytest.raises(error) as raised:
        _load_within(BY_NAME[name].make(tmp_path))
    assert needle in str(raised.value)


@pytest.mark.parametrize("name", [n for n in BY_NAME if "member" in n])
def test_archive_member_names_are_never_written_anywhere(name, tmp_path):
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    with pytest.raises(FiltergridError):
        _load_within(BY_NAME[name].make(folder))
    targets = [tmp_path / "a" / "evil.npy", tmp_path / "evil.h5", tmp_path / "a" / "evil.h5",
               Path("/tmp/filtergrid-evil.npy"), Path.cwd() / "evil.npy", Path.cwd() / "C:"]
    assert not [p for p in targets if p.exists()] and not list(tmp_path.rglob("*evil*"))


def test_decompression_is_bounded_by_max_tensor_bytes(tmp_path, monkeypatch):
    """A small compressed npz that inflates to 8 MB (a zip bomb in miniature) stops at the limit."""
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, W1=np.zeros((2048, 1024), np.float32))
    assert path.stat().st_size < 64 * 1024
    monkeypatch.setattr(limits, "MAX_TENSOR_BYTES", 1024**2)
    with pytest.raises(LimitError, match="MAX_TENSOR_BYTES"):
        filtergrid.load(path)


def _limited() -> None:
    """preexec_fn: cap the child's address space so a runaway allocation fails instead of swapping."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OPENBLAS_NUM_THREADS": "1", **extra}


def _run(args: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_limited, env=_env(**env))


WORKER = """
import json, sys, time
import filtergrid
from filtergrid.errors import FiltergridError
for line in open(sys.argv[1]):
    name, path = json.loads(line)
    start = time.monotonic()
    try:
        filtergrid.load(path)
        outcome = "bank"
    except FiltergridError as e:
        outcome = type(e).__name__ + ": " + str(e)
    print(json.dumps([name, outcome, time.monotonic() - start]), flush=True)
"""


def test_whole_corpus_under_a_memory_limit(tmp_path):
    """One worker loads every case with RLIMIT_AS = 1.5 GB: no MemoryError, no traceback, no slow case."""
    listing = tmp_path / "cases.jsonl"
    with listing.open("w") as out:
        for i, case in enumerate(CASES):
            folder = tmp_path / f"{i:04d}"
            folder.mkdir()
            out.write(json.dumps([case.name, str(case.make(folder))]) + "\n")
    result = _run(["-c", WORKER, str(listing)], timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    outcomes = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(outcomes) == len(CASES)
    bad = [(name, outcome) for name, outcome, _ in outcomes
           if outcome != "bank" and ("ran out of memory" in outcome or "\n" in outcome)]
    slow = [(name, round(seconds, 1)) for name, _, seconds in outcomes if seconds > SECONDS_PER_CASE]
    assert not bad and not slow, (bad, slow)
    assert not list(tmp_path.rglob(corpus.CANARY))


def _cli_sample() -> list[corpus.Case]:
    """Every crafted attack plus a seeded sample of the generic cases."""
    crafted = list(corpus.crafted_cases())
    crafted_names = {c.name for c in crafted}
    generic = [c for c in CASES if c.name not in crafted_names]
    return crafted + random.Random(6).sample(generic, min(24, len(generic)))


@pytest.mark.parametrize("case", _cli_sample(), ids=lambda c: c.name)
def test_cli_exits_0_or_2_with_one_line(case, tmp_path):
    path = case.make(tmp_path)
    out = tmp_path / "out" / "grid.png"
    result = _run(["-m", "filtergrid", "--timeout", "3", "render", str(path), "-o", str(out)], timeout=60)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if result.returncode == 0:
        assert out.is_file()
    else:
        assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("filtergrid: error: "), result.stderr
        assert not out.exists()
    assert not (tmp_path / corpus.CANARY).exists()


def test_cli_timeout_stops_code_that_never_returns_to_python():
    """With SIGALRM blocked (as good as a C loop: no Python handler can run), the parent kills the work."""
    stuck = ("import signal, time;"
             "from filtergrid.cli import deadline; deadline.arm(1);"
             "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM}); time.sleep(60)")
    started = time.monotonic()
    result = _run(["-c", stuck])
    assert time.monotonic() - started < 20
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("filtergrid: error: gave up after --timeout 1 s"), lines


def test_cli_timeout_gives_up_with_one_line(tmp_path):
    """``--timeout`` bounds the whole command; the same file renders fine without it."""
    path = tmp_path / "big.npz"
    rng = np.random.default_rng(0)
    np.savez(path, W1=rng.standard_normal((3072, 1024)).astype(np.float32))  # 12 MB, 1024 tiles of 32x32x3
    slow = _run(["-m", "filtergrid", "--timeout", "0.05", "render", str(path), "-o", str(tmp_path / "a.png")])
    assert slow.returncode == 2, slow.stderr
    lines = slow.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("filtergrid: error: ") and "gave up after --timeout 0.05 s" in lines[0]
    assert not (tmp_path / "a.png").exists()
    started = time.monotonic()
    ok = _run(["-m", "filtergrid", "--timeout", "60", "render", str(path), "-o", str(tmp_path / "b.png")])
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "b.png").is_file() and time.monotonic() - started < 60


def test_limits_can_be_lowered_by_environment(tmp_path):
    """``FILTERGRID_MAX_TENSOR_BYTES`` lowers the limit for a whole process (docs/security.md)."""
    path = tmp_path / "w.npy"
    np.save(path, np.ones((64, 64), np.float32))
    result = _run(["-m", "filtergrid", "render", str(path), "-o", str(tmp_path / "w.png")],
                  FILTERGRID_MAX_TENSOR_BYTES="1000")
    assert result.returncode == 2 and "MAX_TENSOR_BYTES=1,000" in result.stderr, result.stderr
