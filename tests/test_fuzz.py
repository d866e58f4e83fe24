"""Property-based fuzzing: any mutation of any fixture loads as a FilterBank or fails as a FiltergridError.

Mutations: byte flips, insertions, deletions, splices of two fixtures, and edits of the length
fields most formats keep at the start (safetensors' header size, zip/GGUF/TFLite counts and
offsets). Each example must finish within ``SECONDS_PER_EXAMPLE``.

CI runs the ``ci`` profile (200 examples, derandomized); ``HYPOTHESIS_PROFILE=long`` runs
20,000 (``FUZZ_EXAMPLES`` overrides). The coverage-guided campaign is fuzz/campaign.py.
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
from pathlib import Path

import hostile_corpus as corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import filtergrid
from filtergrid.errors import FiltergridError

SEEDS = corpus.seeds()
SECONDS_PER_EXAMPLE = 10

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", parent=settings.get_profile("ci"), derandomize=False,
                          max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")))
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci")
                               if os.environ.get("HYPOTHESIS_PROFILE") in ("ci", "long") else "ci")

#: Values that break length fields: zero, one, sign bits, all ones, around the file's size.
LENGTHS = (0, 1, 7, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1)
positions = st.floats(min_value=0, max_value=1, allow_nan=False)
flip = st.tuples(st.just("flip"), positions, st.integers(1, 255))
insert = st.tuples(st.just("insert"), positions, st.binary(min_size=1, max_size=64))
delete = st.tuples(st.just("delete"), positions, st.integers(1, 512))
splice = st.tuples(st.just("splice"), positions, st.integers(0, len(SEEDS) - 1), positions)
length = st.tuples(st.just("length"), st.sampled_from((0, 4, 8, 12, 16, 20, 24, 32)),
                   st.sampled_from(("<I", "<Q", ">I")), st.sampled_from(LENGTHS + ("size", "size+1")))
mutation = st.one_of(flip, insert, delete, splice, length)


def mutate(data: bytes, ops: list[tuple]) -> bytes:
    """Apply each operation in turn; positions are fractions of the current length."""
    out = bytearray(data)
    for op in ops:
        at = int(op[1] * len(out)) if op[0] != "length" else op[1]
        if op[0] == "flip" and out:
            out[min(at, len(out) - 1)] ^= op[2]
        elif op[0] == "insert":
            out[at:at] = op[2]
        elif op[0] == "delete":
            del out[at:at + op[2]]
        elif op[0] == "splice":
            other = SEEDS[op[2]].data
            out = out[:at] + other[int(op[3] * len(other)):]
        elif op[0] == "length":
            fmt, value = op[2], op[3]
            value = len(out) + (value == "size+1") if isinstance(value, str) else value
            packed = struct.pack(fmt, value % (1 << (8 * struct.calcsize(fmt))))
            if at + len(packed) <= len(out):
                out[at:at + len(packed)] = packed
    return bytes(out)


@settings(PROFILE)
@given(seed=st.integers(0, len(SEEDS) - 1), ops=st.lists(mutation, min_size=1, max_size=6))
def test_mutated_fixture_gives_a_bank_or_a_typed_error(seed, ops):
    source = SEEDS[seed]
    data = mutate(source.data, ops)
    with tempfile.TemporaryDirectory(prefix="fg-fuzz-") as folder:
        path = Path(folder) / f"model{source.suffix}"
        path.write_bytes(data)
        started = time.monotonic()
        try:
            bank = corpus.load_bounded(path, SECONDS_PER_EXAMPLE)
        except FiltergridError as e:
            assert "\n" not in str(e), str(e)
            assert "ran out of memory" not in str(e), f"{source.name}: memory was not bounded before allocating"
            assert not corpus.safety_net_fired(e), f"{source.name}: the converter leaked {e.__context__!r}"
        else:
            assert isinstance(bank, filtergrid.FilterBank)
        elapsed = time.monotonic() - started
    assert elapsed < SECONDS_PER_EXAMPLE, f"{source.name} mutated by {ops} took {elapsed:.1f} s"


def test_mutations_do_what_they_say():
    data = bytes(range(16))
    assert mutate(data, [("flip", 0.0, 0xFF)])[0] == 0xFF
    assert mutate(data, [("insert", 0.5, b"xy")])[8:10] == b"xy"
    assert mutate(data, [("delete", 0.0, 4)]) == data[4:]
    assert mutate(data, [("length", 0, "<Q", "size")])[:8] == struct.pack("<Q", 16)
    assert mutate(data, [("length", 12, "<Q", 1)]) == data  # a field past the end is left alone
