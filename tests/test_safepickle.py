"""The restricted unpickler on its own: data round-trips, code never runs, bad streams fail typed."""

from __future__ import annotations

import argparse
import collections
import pickle
import re
from pathlib import Path

import pytest
from hostile import CANARY, PAYLOADS, Call, G, assemble, nested_pickle_payload
from hypothesis import given, settings
from hypothesis import strategies as st

from filtergrid import limits, safepickle
from filtergrid.errors import CorruptFileError, FiltergridError, LimitError, UnsafeFileError

ROOT = Path(__file__).resolve().parent.parent

plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner) | st.tuples(inner, inner) | st.dictionaries(st.text(), inner),
    max_leaves=30,
)


@given(plain, st.integers(0, pickle.HIGHEST_PROTOCOL))
@settings(max_examples=150, deadline=None)
def test_plain_data_round_trips(value, protocol: int) -> None:
    assert safepickle.loads(pickle.dumps(value, protocol=protocol)) == value


@given(st.binary(max_size=300))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_fail_typed(data: bytes) -> None:
    try:
        safepickle.loads(data)
    except FiltergridError:
        pass


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_mutated_torch_pickle_fails_typed(data) -> None:
    import zipfile

    from filtergrid.converters.torch_objects import TORCH_ALLOWED, storage_of

    real = zipfile.ZipFile(ROOT / "fixtures" / "pytorch" / "state_dict.pt").read("state_dict/data.pkl")
    raw = bytearray(real)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        safepickle.loads(bytes(raw), TORCH_ALLOWED, lambda pid: storage_of(pid, legacy=False))
    except FiltergridError:
        pass


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_allowed_standard_types(protocol: int) -> None:
    value = {"s": {1, 2}, "f": frozenset([3]), "o": collections.OrderedDict(a=1), "sl": slice(1, 5, 2),
             "c": 1 + 2j, "ba": bytearray(b"xy"), "b": b"\x00\xff"}
    assert safepickle.loads(pickle.dumps(value, protocol=protocol)) == value


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_unknown_classes_become_placeholders(protocol: int) -> None:
    loaded = safepickle.loads(pickle.dumps(argparse.Namespace(lr=0.1, layers=[1, 2]), protocol=protocol))
    assert isinstance(loaded, safepickle.Placeholder)
    assert loaded.cls == safepickle.Global("argparse", "Namespace")
    assert loaded.state == {"lr": 0.1, "layers": [1, 2]}


def test_placeholder_records_reduce_arguments() -> None:
    loaded = safepickle.loads(assemble(Call(G("mypackage.models", "Net"), (3, "wide"))))
    assert loaded.cls.qualname == "mypackage.models.Net" and loaded.args == (3, "wide")


@pytest.mark.parametrize("module, name", [
    ("os", "system"), ("posix", "system"), ("nt", "system"), ("subprocess", "check_output"), ("builtins", "eval"),
    ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "__import__"), ("builtins", "open"),
    ("__builtin__", "compile"), ("functools", "partial"), ("operator", "attrgetter"), ("importlib", "import_module"),
    ("pickle", "loads"), ("_pickle", "loads"), ("marshal", "loads"), ("runpy", "run_path"), ("socket", "socket"),
    ("shutil", "rmtree"), ("webbrowser", "open"), ("pty", "spawn"), ("ctypes", "CDLL"), ("types", "FunctionType"),
    ("code", "InteractiveInterpreter"), ("sys", "modules"), ("io", "open"), ("pathlib", "Path"),
    ("torch.serialization", "load"), ("torch", "load"), ("torch.hub", "load"), ("torch.jit", "load"),
    ("torch._C", "_load_for_lite_interpreter"), ("numpy", "load"), ("numpy.testing._private.utils", "runstring"),
    ("copy_reg", "add_extension"), ("asyncio", "subprocess"), ("multiprocessing", "Process"),
])
def test_denied_globals_are_named(module: str, name: str) -> None:
    data = f"c{module}\n{name}\n.".encode()
    with pytest.raises(UnsafeFileError, match=r"refused to load global [\w.]+"):
        safepickle.loads(data)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_hostile_payloads_run_nothing(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    from filtergrid.converters.torch_objects import TORCH_ALLOWED, storage_of

    try:
        safepickle.loads(PAYLOADS[name], TORCH_ALLOWED, lambda pid: storage_of(pid, legacy=False))
    except FiltergridError:
        pass
    assert not (tmp_path / CANARY).exists()


def test_nested_pickle_is_not_unpickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    from filtergrid.converters.torch_objects import TORCH_ALLOWED, TensorRef, storage_of

    loaded = safepickle.loads(nested_pickle_payload(), TORCH_ALLOWED, lambda pid: storage_of(pid, legacy=False))
    assert isinstance(loaded["conv.weight"], TensorRef)
    assert loaded["payload"] == PAYLOADS["os_system_reduce"]
    assert not (tmp_path / CANARY).exists()


@pytest.mark.parametrize("data, error", [
    (assemble(Call(G("builtins", "bytearray"), (10**12,))), CorruptFileError),
    (assemble(Call(G("_codecs", "encode"), ("x", "zlib_codec"))), CorruptFileError),
    (assemble(Call(Call(G("m", "C"), ()), ())), UnsafeFileError),
    (b"\x80\x02]}b.", CorruptFileError),
    (b"\x80\x02\x82\x01.", CorruptFileError),
    (b"\x80\x02X\x01\x00\x00\x00aQ.", CorruptFileError),
    (b"\x80\x02" + b")" + b"\x85" * 1000 + b".", LimitError),  # MAX_NESTING
])
def test_nothing_but_data_is_built(data: bytes, error: type) -> None:
    with pytest.raises(error):
        safepickle.loads(data)


def test_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pickle.dumps(list(range(1000)), protocol=2)
    monkeypatch.setattr(limits, "MAX_PICKLE_BYTES", len(data) - 1)
    with pytest.raises(LimitError, match="MAX_PICKLE_BYTES"):
        safepickle.loads(data)
    import io

    with pytest.raises(LimitError, match="MAX_PICKLE_BYTES"):
        safepickle.load(io.BytesIO(data))


def test_declared_length_past_a_short_file_is_corrupt() -> None:
    with pytest.raises(CorruptFileError):
        safepickle.loads(b"\x80\x03B\xff\xff\xff\x7fabc.")


#: Calls that would run pickle or torch's loader on user data.
_FORBIDDEN = re.compile(r"(?<![\w.])(c?pickle|_pickle|dill|joblib)\.loads?\(|\btorch\.load\(|allow_pickle\s*=\s*True|"
                        r"^\s*(import|from)\s+torch\b|\bpickle\.Unpickler\(")


def test_package_never_unpickles_with_python_or_torch() -> None:
    offenders = []
    for path in sorted((ROOT / "filtergrid").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _FORBIDDEN.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_a_mapped_file_reads_lines_across_chunks_and_views_large_payloads(tmp_path):
    """safeio.MappedFile: protocol 0 reads lines (here longer than its read chunk); a large BINBYTES
    payload comes back as a view of the map, not a copy."""
    from filtergrid.safeio import MappedFile

    text, payload = "x" * 10_000, bytes(range(256)) * 8192  # 2 MiB
    path = tmp_path / "mixed.pkl"
    path.write_bytes(pickle.dumps(text, protocol=0))
    with MappedFile(path) as f:
        assert safepickle.load(f) == text
    path.write_bytes(pickle.dumps([text, payload], protocol=4))
    with MappedFile(path) as f:
        loaded = safepickle.load(f)
    assert loaded[0] == text and isinstance(loaded[1], memoryview) and loaded[1] == payload
