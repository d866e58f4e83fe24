"""Small torch files that would make the unpickler or the tensor walk do work out of all proportion
to their size (issue 12): each must end in one error line naming the limit that stopped it, fast,
inside a 2 GiB address space. Built at test time (no writer makes these on purpose)."""

from __future__ import annotations

import resource
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FIXTURES, assert_one_line_error
from hostile import _ops, assemble, tensor, torch_zip

REAL = FIXTURES / "pytorch/state_dict.pt"
ADDRESS_SPACE = 2 * 1024**3
SECONDS = 30


def _long4(n: int) -> bytes:
    """LONG4: an integer of any size (``hostile.assemble`` writes LONG1, at most 255 bytes)."""
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8b" + struct.pack("<i", len(data)) + data


def _deflated_torch_zip(out: Path, data_pkl: bytes) -> Path:
    """``state_dict.pt`` with ``data.pkl`` replaced by a deflated one (a zip bomb of opcodes)."""
    with zipfile.ZipFile(REAL) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename.endswith("/data.pkl"):
                dst.writestr(info.filename, data_pkl, zipfile.ZIP_DEFLATED)
            else:
                dst.writestr(info, src.read(info))
    return out


def stride_zero_view(out: Path) -> Path:
    """One stored float viewed as 512 Mi of them (2 GiB of float32) by strides of 0."""
    view = tensor(numel=1, size=(512, 1024, 32, 32), stride=(0, 0, 0, 0))
    return torch_zip(REAL, out, assemble({"conv.weight": view}))


def shared_name_keys(out: Path) -> Path:
    """A 200 KB key stored once (memo) and used at 60 levels: 12 MB of name for each of 16 tensors."""
    key = "k" * 200_000
    body = b"}(" + b"".join(_ops(f"w{i}") + _ops(tensor()) for i in range(16)) + b"u"
    for _ in range(60):
        body = b"}(h\x00" + body + b"u"  # {key: body}, the key fetched from memo 0
    data = b"\x80\x02" + _ops(key) + b"q\x000" + body + b"."  # put the key in memo 0, pop it
    return torch_zip(REAL, out, data)


def mark_bomb(out: Path) -> Path:
    """64 Mi MARK opcodes (each a new stack list), deflated to ~64 KB."""
    return _deflated_torch_zip(out, b"\x80\x02" + b"(" * (64 * 1024**2) + b".")


def empty_dict_bomb(out: Path) -> Path:
    """64 Mi EMPTY_DICT opcodes (each a new dict on the stack), deflated to ~64 KB."""
    return _deflated_torch_zip(out, b"\x80\x02" + b"}" * (64 * 1024**2) + b".")


def long4_size(out: Path) -> Path:
    """A tensor whose first dimension is an 8 MB integer."""
    marker = 123456789
    data = assemble({"conv.weight": tensor(size=(marker, 2), stride=(2, 1))})
    return torch_zip(REAL, out, data.replace(_ops(marker), _long4(1 << (8 * 8 * 1024**2 - 8)), 1))


def shared_list_in_error(out: Path) -> Path:
    """A persistent id holding a list shared 2^44-fold (44 levels of [prev, prev]) where a storage is due."""
    ops = b"]"
    for level in range(44):
        ops += b"q" + bytes([level]) + b"0]" + b"(h" + bytes([level]) + b"h" + bytes([level]) + b"e"
    data = b"\x80\x02}(" + _ops("conv.weight") + ops + b"\x85Qu."
    return torch_zip(REAL, out, data)


#: case -> (builder, the limit (or words) the one error line must name).
HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "stride-0-view": (stride_zero_view, "MAX_WORK_PER_BYTE"),
    "memo-shared-name-keys": (shared_name_keys, "MAX_WORK_PER_BYTE"),
    "mark-bomb": (mark_bomb, "MAX_NESTING"),
    "empty-dict-bomb": (empty_dict_bomb, "MAX_PICKLE_OPS"),
    "long4-size": (long4_size, "67108857-bit integer"),
    "shared-list-in-error": (shared_list_in_error, "unexpected persistent id"),
}


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_bounded(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """The CLI in a process limited to 2 GiB of address space; (result, seconds)."""
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "filtergrid", *args], capture_output=True, text=True,
                            cwd=cwd, env=env, preexec_fn=_limited, timeout=SECONDS * 2)
    return result, time.monotonic() - start


@pytest.mark.parametrize("case", HOSTILE)
def test_amplifying_pickle_ends_in_one_line_naming_its_limit(case, tmp_path):
    build, needle = HOSTILE[case]
    model = build(tmp_path / f"{case}.pt")
    assert model.stat().st_size < 9 * 1024**2  # the 8 MB integer is the largest
    result, seconds = run_bounded("render", str(model), "-o", str(tmp_path / "out.png"), cwd=tmp_path)
    assert_one_line_error(result, needle)
    assert "needs more memory" not in result.stderr  # stopped by its limit, not by running out
    assert seconds < SECONDS
    assert not (tmp_path / "out.png").exists()


def test_huge_integer_key_is_named_without_printing_it(tmp_path):
    """A 5000-digit integer as a state-dict key: the tensor still loads, its name says what the key was."""
    data = b"\x80\x02}(" + _long4(10**5000) + _ops(tensor()) + b"u."
    model = torch_zip(REAL, tmp_path / "int-key.pt", data)
    result, seconds = run_bounded("inspect", "--json", str(model), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"chosen": "<16610-bit int>"' in result.stdout and seconds < SECONDS
