"""The byte-range source against a real HTTP server on loopback: ranges, caching, counts, failures."""

from __future__ import annotations

import io
import os

import numpy as np

import pytest
from rangeserver import serve

from filtergrid import limits, remote
from filtergrid.errors import CorruptFileError, FiltergridError, LimitError
from filtergrid.remote import RemotePath, is_url, redact


@pytest.fixture
def served(tmp_path):
    data = os.urandom(3 * remote.BLOCK_BYTES + 1234)
    (tmp_path / "blob.bin").write_bytes(data)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a b.txt").write_bytes(b"hello")
    with serve(tmp_path) as (base, log, behaviour):
        yield base, log, behaviour, data


def test_urls_are_recognised_and_shown_without_secrets():
    assert is_url("https://h/x.onnx") and is_url("s3://b/k") and is_url("hf://org/repo/model.safetensors")
    assert not is_url("C:\\models\\x.onnx") and not is_url("model.onnx") and not is_url("ftp://h/x")
    assert redact("https://user:pw@h:8080/x.onnx?X-Amz-Signature=abc#f") == "https://h:8080/x.onnx"


def test_reads_by_range_and_counts_what_it_fetched(served):
    base, log, _, data = served
    path = RemotePath(base + "blob.bin")
    assert path.stat().st_size == len(data) and path.name == "blob.bin" and path.suffix == ".bin"
    f = path.open()
    f.seek(remote.BLOCK_BYTES + 10)
    assert f.read(100) == data[remote.BLOCK_BYTES + 10: remote.BLOCK_BYTES + 110]
    assert f[5:17] == data[5:17] and len(f) == len(data)
    assert f.read(10**9) == data[remote.BLOCK_BYTES + 110:]  # a large read is one direct range
    f.seek(-3, io.SEEK_END)
    assert f.read() == data[-3:]
    # two blocks fetched for the small reads, one direct range; bytes fetched = bytes the server sent
    assert path.transfer.bytes == log.bytes_sent
    assert path.transfer.requests == log.requests - 1  # minus the HEAD for the size
    assert path.transfer.bytes < 3 * len(data) // 2


def test_cached_blocks_are_not_fetched_again(served):
    base, log, _, data = served
    f = RemotePath(base + "blob.bin").open()
    for _ in range(50):
        f.seek(7)
        assert f.read(64) == data[7:71]
    assert log.requests == 2  # HEAD + one block


def test_siblings_and_parents_keep_the_store_and_the_counter(served):
    base, _, _, _ = served
    path = RemotePath(base + "sub/a b.txt")
    assert path.open().read() == b"hello"
    sibling = path.parent / "a b.txt"
    assert sibling.open().read() == b"hello" and sibling.transfer is path.transfer
    assert str(path.parent) == base + "sub/"


def test_missing_and_refused_files_are_one_line_errors(served):
    base, _, behaviour, _ = served
    with pytest.raises(FiltergridError, match=r"no such file \(HTTP 404\)"):
        RemotePath(base + "nope.onnx").stat()
    behaviour.status["/blob.bin"] = 403
    with pytest.raises(FiltergridError, match=r"access denied \(HTTP 403\)"):
        RemotePath(base + "blob.bin").stat()


def test_transient_failures_are_retried(served, monkeypatch):
    base, log, behaviour, data = served
    monkeypatch.setattr(remote, "BACKOFF_SECONDS", 0.01)
    behaviour.fail_first = 2
    assert RemotePath(base + "blob.bin").open().read(10) == data[:10]
    assert log.requests == 4


def test_unreachable_server_fails_after_retries(monkeypatch):
    monkeypatch.setattr(remote, "BACKOFF_SECONDS", 0.01)
    with pytest.raises(FiltergridError, match="unreachable"):
        RemotePath("http://127.0.0.1:9/x.onnx").stat()  # the discard port: nothing listens


def test_a_server_that_sends_more_than_asked_is_refused(served):
    base, _, behaviour, _ = served
    behaviour.extra_bytes = 10
    with pytest.raises(CorruptFileError, match="sent more"):
        RemotePath(base + "blob.bin").open().read(10)


def test_a_server_that_ignores_ranges_is_refused_past_the_start(served):
    base, _, behaviour, _ = served
    behaviour.ignore_ranges = True
    f = RemotePath(base + "blob.bin").open()
    f.seek(remote.BLOCK_BYTES * 2)
    with pytest.raises(FiltergridError, match="ignores byte ranges"):
        f.read(10)


def test_a_lying_size_cannot_make_it_read_past_the_real_file(served):
    base, _, behaviour, data = served
    behaviour.lie_length = len(data) + 10**6
    f = RemotePath(base + "blob.bin").open()
    f.seek(len(data) + 100)
    with pytest.raises(FiltergridError):
        f.read(10)


def test_fetched_bytes_are_bounded_by_a_named_limit(served, monkeypatch):
    base, _, _, _ = served
    monkeypatch.setattr(limits, "MAX_REMOTE_BYTES", remote.BLOCK_BYTES)
    f = RemotePath(base + "blob.bin").open()
    f.read(10)
    with pytest.raises(LimitError, match="MAX_REMOTE_BYTES"):
        f.read(10**9)


def test_http_folders_cannot_be_listed(served):
    base, _, _, _ = served
    with pytest.raises(FiltergridError, match="lists no folders"):
        list(RemotePath(base + "sub/").iterdir())


# --- end to end: the CLI on models served over HTTP ------------------------------------------------

from conftest import FIXTURES, assert_one_line_error  # noqa: E402


@pytest.mark.parametrize("fixture", ["safetensors/cnn.safetensors", "pytorch/state_dict.pt",
                                     "pytorch/checkpoint.pth", "gguf/tiny_llm_q8_0.gguf", "onnx/cnn.onnx",
                                     "onnx/cnn_dynamo.onnx", "onnx/conv_in_if.onnx"])
def test_a_served_model_converts_to_the_same_bank_as_the_local_file(cli, tmp_path, fixture):
    import numpy as np

    with serve(FIXTURES) as (base, log, _):
        remote = cli("convert", base + fixture, "-o", tmp_path / "remote.npy")
    local = cli("convert", FIXTURES / fixture, "-o", tmp_path / "local.npy")
    assert remote.returncode == 0 and local.returncode == 0, remote.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "remote.npy"), np.load(tmp_path / "local.npy"))
    assert log.requests <= 8


def test_provenance_records_what_was_fetched_and_no_credentials():
    import filtergrid

    with serve(FIXTURES) as (base, log, _):
        url = base.replace("http://", "http://user:secret@") + "safetensors/cnn.safetensors?token=abc"
        bank = filtergrid.load(url)
    assert "secret" not in bank.provenance.source and "token" not in bank.provenance.source
    assert log.authorization == {"Basic dXNlcjpzZWNyZXQ="}  # user:secret, as HTTP Basic
    note = [n for n in bank.provenance.notes if n.startswith("fetched")]
    assert note and f"in {log.requests - 1} range request" in note[0]  # all but the HEAD


def test_a_missing_remote_model_is_one_line(cli):
    with serve(FIXTURES) as (base, _, _):
        assert_one_line_error(cli("render", base + "nope.onnx"), "no such file (HTTP 404)")


def test_remote_sibling_names_with_url_escapes_are_refused():
    from filtergrid.errors import UnsafeFileError
    from filtergrid.safeio import resolve_inside

    folder = RemotePath("http://127.0.0.1:9/models/")
    assert str(resolve_inside(folder, "weights/a.bin")) == "http://127.0.0.1:9/models/weights/a.bin"
    for name in ("%2e%2e/secret", "a?x=1", "../a", "/etc/passwd"):
        with pytest.raises(UnsafeFileError):
            resolve_inside(folder, name)


def _served_entries() -> list[dict]:
    """Manifest entries of single files (a folder over plain HTTP cannot be listed) with no options."""
    from conftest import manifest_entries

    return [e for e in manifest_entries() if (FIXTURES / e["file"]).is_file() and not e.get("options")]


def test_every_single_file_fixture_reads_the_same_over_http():
    """Each reader goes through the one byte-range source: a served file gives the local bank."""
    import filtergrid
    from filtergrid.errors import FiltergridError

    failures = []
    with serve(FIXTURES) as (base, _, _):
        for entry in _served_entries():
            local = filtergrid.load(FIXTURES / entry["file"])
            try:
                remote = filtergrid.load(base + entry["file"])
            except FiltergridError as e:
                failures.append(f"{entry['file']}: {e}")
                continue
            if not (np.array_equal(local.array, remote.array, equal_nan=True)
                    and local.provenance.tensor == remote.provenance.tensor):
                failures.append(f"{entry['file']}: differs")
    assert not failures, "\n".join(failures)
