"""``filtergrid audit s3://bucket/prefix/``: the same records as a local audit of the same files, each
model read from the store by ranges in a worker (local or on a real Dask cluster)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES, assert_one_line_error, moto_bucket, run_cli
from filtergrid.audit.walk import HEAD_BYTES
from rangeserver import Behaviour, serve
from safetensors.numpy import save_file

pytest.importorskip("moto.server")
pytest.importorskip("s3fs")

#: Committed fixtures of different formats (a Hugging Face folder among them).
FIXTURE_FILES = ["safetensors/cnn.safetensors", "onnx/cnn.onnx", "pytorch/state_dict.pt",
                 "gguf/tiny_llm_q8_0.gguf", "numpy/conv_bank.npy", "keras/conv12.h5"]
HF_FOLDER = "huggingface/vit_safetensors"
#: A 5 MB safetensors whose first layer is a small conv: reading it by ranges costs far less than its size.
BIG = "runs/big.safetensors"
#: A copy of a fixture with no suffix: found by its first bytes (one small range read in the parent).
NO_SUFFIX = "runs/checkpoint"
#: Fields that differ between a local and a remote audit of the same bytes by design.
HOW_READ = ("path", "sha256", "etag", "bytes_read", "requests", "grid", "thumbnail", "seconds", "ran_on")


def make_models(root):
    for name in FIXTURE_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / name, root / name)
    shutil.copytree(FIXTURES / HF_FOLDER, root / HF_FOLDER)
    (root / "runs").mkdir()
    rng = np.random.default_rng(7)
    save_file({"conv1.weight": rng.normal(size=(16, 3, 5, 5)).astype(np.float32),
               "fc.weight": rng.normal(size=(1000, 1310)).astype(np.float32)}, str(root / BIG))
    shutil.copy(FIXTURES / "safetensors/cnn.safetensors", root / NO_SUFFIX)
    (root / "runs/notes.txt").write_text("trained for 90 epochs\n")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    make_models(root)
    return root


@pytest.fixture(scope="module")
def bucket(models):
    """moto's S3 server on loopback holding ``models`` under ``zoo/``; the usual AWS_* variables (the
    CLI, its workers and Dask workers started later inherit them)."""
    objects = {path.relative_to(models).as_posix(): path.read_bytes()
               for path in sorted(p for p in models.rglob("*") if p.is_file())}
    with moto_bucket(objects) as url:
        yield url


def _audit(out, *args):
    result = run_cli("audit", *args, "--out", out, "--quiet", timeout=300)
    assert (out / "report.json").exists(), result.stderr
    return result, json.loads((out / "report.json").read_text()), out


def _by_name(document, root: str) -> dict[str, dict]:
    """Records keyed by the path below ``root``, without the fields that say how they were read."""
    records = {}
    for r in document["files"]:
        assert r["path"].startswith(root), (r["path"], root)
        records[r["path"][len(root):].strip("/")] = {k: v for k, v in r.items() if k not in HOW_READ}
    return records


@pytest.fixture(scope="module")
def local(models, tmp_path_factory):
    return _audit(tmp_path_factory.mktemp("local") / "out", models, "--workers", "2")


@pytest.fixture(scope="module")
def remote(bucket, tmp_path_factory):
    return _audit(tmp_path_factory.mktemp("remote") / "out", bucket, "--workers", "2")


def _assert_same_as_local(local, remote, models, bucket):
    (l_result, l_doc, _), (r_result, r_doc, _) = local, remote
    assert r_result.returncode == l_result.returncode == 0, (r_result.stdout, r_result.stderr)
    expected, got = _by_name(l_doc, str(models)), _by_name(r_doc, bucket)
    assert sorted(got) == sorted(expected)
    assert {BIG, NO_SUFFIX, HF_FOLDER, *FIXTURE_FILES} == set(got)
    for name in expected:
        assert got[name] == expected[name], name
        assert got[name]["status"] == "ok" and got[name]["health"] and got[name]["canonical_shape"], name
    assert [s["path"].rpartition("/")[2] for s in r_doc["skipped"]] == ["notes.txt"]


def test_a_bucket_audits_like_the_local_folder(local, remote, models, bucket):
    _assert_same_as_local(local, remote, models, bucket)
    assert all(r["bytes_read"] is None and r["requests"] is None and r["sha256"] for r in local[1]["files"])


def test_each_file_is_read_by_ranges_not_downloaded(remote, models, bucket):
    records = {r["path"][len(bucket):]: r for r in remote[1]["files"]}
    big = records[BIG]
    assert big["size"] == (models / BIG).stat().st_size > 5_000_000
    assert 0 < big["bytes_read"] < big["size"] / 10 and big["requests"] >= 1
    for name, r in records.items():
        assert r["sha256"] is None and r["bytes_read"] > 0 and r["requests"] > 0, name
        # What identifies the bytes instead of a hash: the store's ETag (a file's; a folder has none) and the size.
        assert bool(r["etag"]) == (name != HF_FOLDER), name
    assert records[HF_FOLDER]["format"] == "huggingface"
    # The file with no suffix cost its twin's reads plus the parent's one look at its first bytes.
    twin, no_suffix = records["safetensors/cnn.safetensors"], records[NO_SUFFIX]
    assert no_suffix["requests"] == twin["requests"] + 1
    assert no_suffix["bytes_read"] == twin["bytes_read"] + min(twin["size"], HEAD_BYTES)


def test_reports_show_what_was_fetched(remote):
    out = remote[2]
    csv = (out / "report.csv").read_text()
    header = csv.splitlines()[0].split(",")
    assert {"bytes_read", "requests", "etag"} <= set(header)
    html = (out / "index.html").read_text()
    big = next(r for r in remote[1]["files"] if r["path"].endswith(BIG))
    assert f"in {big['requests']} request" in html and "big.safetensors" in html


@pytest.fixture(scope="module")
def cluster(bucket):
    """A real Dask cluster of worker processes, started after the AWS_* variables are set."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def test_dask_workers_read_from_the_store(local, models, bucket, cluster, tmp_path):
    result = _audit(tmp_path / "out", bucket, "--scheduler", cluster.scheduler_address)
    _assert_same_as_local(local, result, models, bucket)
    workers = set(cluster.scheduler_info["workers"])
    assert {r["ran_on"] for r in result[1]["files"]} <= workers
    assert all(r["bytes_read"] > 0 for r in result[1]["files"])


def test_a_missing_prefix_or_object_is_an_error_record(bucket, tmp_path):
    missing = (bucket + "nope/", bucket + "gone.safetensors", "s3://no-such-bucket/x/")
    result, document, _ = _audit(tmp_path / "out", *missing)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [r["error"] for r in document["files"]]
    assert len(errors) == 3 and all("no such file" in e for e in errors), errors


def test_http_files_with_credentials_never_show_them(models, tmp_path):
    behaviour = Behaviour(status={"/refused.safetensors": 403})
    with serve(models, behaviour) as (base, log, _):
        authed = base.replace("http://", "http://alice:s3cret@") + BIG + "?token=hunter2"
        result, document, _ = _audit(tmp_path / "out", authed, base + "refused.safetensors", base + "missing.onnx")
    assert result.returncode == 1, result.stderr
    big, refused, missing = document["files"]
    assert big["status"] == "ok" and big["path"] == base + BIG and 0 < big["bytes_read"] < big["size"] / 10
    assert "access denied (HTTP 403)" in refused["error"] and "no such file (HTTP 404)" in missing["error"]
    assert log.bytes_sent < (models / BIG).stat().st_size / 10
    for name in ("report.json", "report.csv", "index.html"):
        text = (tmp_path / "out" / name).read_text()
        assert "s3cret" not in text and "hunter2" not in text and "alice" not in text, name


def test_a_prefix_over_the_listing_limit_is_one_line(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("FILTERGRID_MAX_REMOTE_LISTING", "3")
    result = run_cli("audit", bucket, "--out", tmp_path / "out", "--quiet")
    assert_one_line_error(result, "MAX_REMOTE_LISTING")
