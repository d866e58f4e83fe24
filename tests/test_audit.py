"""``filtergrid audit``: a folder of good, broken and hostile files -> a complete, honest report."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from audit_zoo import make_zoo, slow_folder
from conftest import assert_one_line_error, run_cli
from PIL import Image

from filtergrid import converters
from filtergrid.audit import health, walk
from filtergrid.audit.process import WorkerProcess, run_isolated
from filtergrid.audit.report import CSV_COLUMNS, SCHEMA_VERSION
from filtergrid.audit.worker import RECORD_FIELDS
from filtergrid.bank import FilterBank, Provenance


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return make_zoo(tmp_path_factory.mktemp("zoo") / "models")


@pytest.fixture(scope="module")
def audited(zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "out"
    result = run_cli("audit", zoo.root, "--out", out, "--workers", "2")
    document = json.loads((out / "report.json").read_text())
    records = {os.path.relpath(r["path"], zoo.root): r for r in document["files"]}
    return result, out, document, records


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    return slow_folder(tmp_path_factory.mktemp("slow") / "models")


def test_exit_1_every_good_file_ok_with_shape_and_grid(zoo, audited):
    result, out, document, records = audited
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    for name, shape in zoo.good.items():
        record = records[name]
        assert record["status"] == "ok", (name, record["error"])
        assert record["canonical_shape"] == shape
        with Image.open(out / record["grid"]) as grid:
            assert grid.format == "PNG" and grid.width > 0
    assert len(set(r["grid"] for r in document["files"] if r["grid"])) == len(zoo.good)


def test_every_bad_file_is_an_error_with_one_line(zoo, audited):
    _, _, _, records = audited
    for name in zoo.bad:
        record = records[name]
        assert record["status"] == "error", name
        assert record["error"] and "\n" not in record["error"] and len(record["error"]) < 600, record["error"]
        assert record["grid"] is None
    assert "Python objects" in records["broken/evil_pickle.npy"]["error"]
    assert not zoo.pwned.exists(), "the malicious pickle ran"
    assert set(records) == set(zoo.good) | set(zoo.bad)


def test_links_loops_pipes_and_non_models_are_skipped_once(zoo, audited):
    _, _, document, records = audited
    skipped = {os.path.relpath(s["path"], zoo.root): s["reason"] for s in document["skipped"]}
    for name in zoo.skipped:
        assert name in skipped, (name, skipped)
    assert "regular" in skipped["pipe.npy"] and "already listed" in skipped["same_as_conv.npy"]
    assert not any("loop" in name for name in records)


def test_report_json_schema(zoo, audited):
    _, _, document, records = audited
    assert document["schema_version"] == SCHEMA_VERSION
    summary = document["summary"]
    assert summary["complete"] is True and summary["interrupted"] is False
    assert summary["audited"] == summary["files"] == len(zoo.good) + len(zoo.bad)
    assert summary["by_status"] == {"error": len(zoo.bad), "ok": len(zoo.good)}
    assert summary["by_format"]["numpy"] >= 4 and summary["filtergrid_version"]
    assert summary["options"]["workers"] == 2 and summary["seconds"] > 0
    for name, record in records.items():
        assert set(RECORD_FIELDS) <= set(record), name
        if record["status"] == "ok":
            data = (zoo.root / name).read_bytes() if (zoo.root / name).is_file() else None
            if data is not None:
                assert record["size"] == len(data) and record["sha256"] == hashlib.sha256(data).hexdigest()
            assert record["tensor"] and record["chosen_by"] and record["layout"] and record["kind"]
            assert record["seconds"] >= 0 and set(record["health"]) >= {"nan", "dead_filters", "l2_median", "flags"}


def test_health_in_the_report(audited):
    _, _, document, records = audited
    sick = records["runs/sick.safetensors"]["health"]
    assert sick["nan"] == 1 and sick["dead_filters"] == 1 and sick["duplicate_filters"] == 2
    assert sick["flags"] == ["nonfinite", "dead", "duplicates"] and sick["saturated_fraction"] is None
    clipped = records["quant/clipped_int8.npy"]["health"]
    assert clipped["saturated_fraction"] > 0.2 and "saturated" in clipped["flags"]
    assert records["conv.npy"]["health"]["flags"] == []
    assert document["summary"]["flags"]["dead"] >= 1


def test_report_csv_has_a_row_per_file(audited):
    _, out, document, _ = audited
    with open(out / "report.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["path"] for r in rows] == [r["path"] for r in document["files"]]
    conv = next(r for r in rows if r["path"].endswith("/conv.npy"))
    assert conv["status"] == "ok" and conv["original_shape"] == "16x3x5x5" and conv["health.dead_filters"] == "0"


def test_resume_keeps_ok_files_and_redoes_the_rest(audited, zoo, tmp_path):
    _, out, before, _ = audited
    again = tmp_path / "out"
    shutil.copytree(out, again)
    grid_times = {r["grid"]: (again / r["grid"]).stat().st_mtime_ns for r in before["files"] if r["grid"]}
    result = run_cli("audit", zoo.root, "--out", again, "--workers", "2", "--resume", "--quiet")
    assert result.returncode == 1, result.stderr
    after = json.loads((again / "report.json").read_text())
    assert after["summary"]["resumed"] == len(zoo.good)
    old = {r["path"]: r for r in before["files"]}
    for record in after["files"]:
        if record["status"] == "ok":
            assert record["resumed"] is True and record["seconds"] == old[record["path"]]["seconds"]
        else:
            assert "resumed" not in record
    assert grid_times == {g: (again / g).stat().st_mtime_ns for g in grid_times}


def test_a_file_past_the_time_limit_is_stopped_and_the_audit_goes_on(slow, tmp_path):
    started = time.monotonic()
    result = run_cli("audit", slow, "--out", tmp_path / "out", "--timeout", "1", "--workers", "1", "--quiet")
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 30
    records = {Path(r["path"]).name: r for r in json.loads((tmp_path / "out" / "report.json").read_text())["files"]}
    assert records["a_big.npy"]["status"] == "error" and "time limit" in records["a_big.npy"]["error"]
    assert records["b_small.npy"]["status"] == "ok"  # run by the worker that replaced the killed one


def test_a_file_over_the_memory_limit_is_an_error_and_the_audit_goes_on(slow, tmp_path):
    result = run_cli("audit", slow, "--out", tmp_path / "out", "--max-memory", "40M", "--workers", "1", "--quiet")
    assert result.returncode == 1, result.stderr
    records = {Path(r["path"]).name: r for r in json.loads((tmp_path / "out" / "report.json").read_text())["files"]}
    assert "out of memory" in records["a_big.npy"]["error"] and "--max-memory 40M" in records["a_big.npy"]["error"]
    assert records["b_small.npy"]["status"] == "ok"


def test_a_crashed_worker_becomes_an_error_record(slow, tmp_path):
    task = {"path": str(slow / "a_big.npy"), "out": str(tmp_path), "grid": "grids/big.png", "render": {}}
    worker = WorkerProcess()
    worker.start(task, timeout=60)
    assert worker.read() == (None, True)  # the "ready" line
    time.sleep(0.2)
    os.kill(worker.proc.pid, signal.SIGSEGV)
    record, usable = worker.read()
    assert not usable and record["status"] == "error" and "SIGSEGV" in record["error"]
    worker.kill()
    small = run_isolated({**task, "path": str(slow / "b_small.npy"), "grid": "grids/small.png"}, 60, 0)
    assert small["status"] == "ok" and (tmp_path / "grids" / "small.png").is_file()


def test_ctrl_c_stops_cleanly_and_writes_what_was_done(slow, tmp_path):
    out = tmp_path / "out"
    # A shell without job control starts background jobs with SIGINT ignored, and the child would
    # inherit that: give it the default disposition a terminal's Ctrl-C meets.
    proc = subprocess.Popen([sys.executable, "-m", "filtergrid", "audit", str(slow), "--out", str(out), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while not (out / "report.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    document = json.loads((out / "report.json").read_text())
    assert document["summary"]["interrupted"] is True and document["summary"]["complete"] is False
    assert (out / "index.html").is_file()


@pytest.mark.parametrize("args, needle", [
    (["--max-memory", "lots"], "--max-memory"),
    (["--cmap", "no-such-map"], "no-such-map"),
    (["--workers", "0"], "--workers"),
])
def test_usage_errors_are_one_line_exit_2(slow, tmp_path, args, needle):
    assert_one_line_error(run_cli("audit", slow, "--out", tmp_path / "out", *args), needle)


def test_missing_path_is_a_usage_error(tmp_path):
    assert_one_line_error(run_cli("audit", tmp_path / "nope", "--out", tmp_path / "out"), "nope")


def test_all_ok_exits_0(tmp_path):
    np.save(tmp_path / "conv.npy", np.ones((2, 1, 3, 3), np.float32))
    result = run_cli("audit", tmp_path / "conv.npy", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "1 ok, 0 not ok" in result.stdout


# --- the walk, in process ---------------------------------------------------------------------

def test_walk_glob_and_model_folders(zoo):
    found = walk.find_models([zoo.root], pattern="*.npy")
    names = {os.path.relpath(f.path, zoo.root) for f in found.models}
    assert "conv.npy" in names and "runs/mlp.npz" not in names
    assert all(n.endswith(".npy") for n in names)
    everything = walk.find_models([zoo.root])
    folders = [f for f in everything.models if f.is_folder]
    for folder in folders:
        model_folders = ("huggingface", "coreml", "tensorflow", "tfjs", "orbax")
        assert converters.detect(folder.path).name in model_folders
        assert not any(f.path != folder.path and folder.path in f.path.parents for f in everything.models)


def test_walk_named_files_are_always_audited(zoo):
    found = walk.find_models([zoo.root / "notes.txt"])
    assert [f.path.name for f in found.models] == ["notes.txt"]


# --- health, on banks made here ----------------------------------------------------------------

def _bank(array: np.ndarray, dtype: str = "float32") -> FilterBank:
    return FilterBank(np.ascontiguousarray(array, np.float32),
                      Provenance("<test>", "test", "w", array.shape, dtype, "NHWC", "test"))


def test_health_counts():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(10, 3, 3, 2)).astype(np.float32)
    a[0] = 1e-6  # dead next to weights of size ~1
    a[5] = -a[4] * 3  # cosine -1: not a duplicate
    a[7] = a[6] + 1e-5
    a[9, 0, 0, 0] = np.inf
    h = health.assess(_bank(a))
    assert (h["dead_filters"], h["duplicate_filters"], h["duplicate_pairs"], h["inf"], h["nan"]) == (1, 2, 1, 1, 0)
    assert h["duplicate_examples"] == [[6, 7]]
    assert h["l2_min"] <= h["l2_median"] <= h["l2_max"] and h["min"] < 0 < h["max"]
    json.dumps(h, allow_nan=False)


def test_health_of_a_bank_that_is_all_zero_or_all_nan():
    zero = health.assess(_bank(np.zeros((3, 2, 2, 1))))
    assert zero["dead_filters"] == 3 and zero["duplicate_filters"] == 0 and zero["std"] == 0
    nan = health.assess(_bank(np.full((2, 2, 2, 1), np.nan)))
    assert nan["nan"] == 8 and nan["min"] is None and nan["mean"] is None
    json.dumps(nan, allow_nan=False)


def test_duplicate_search_is_bounded(monkeypatch):
    monkeypatch.setattr(health, "MAX_DUPLICATE_FILTERS", 64)
    rng = np.random.default_rng(4)
    a = rng.normal(size=(500, 2, 2, 1)).astype(np.float32)
    h = health.assess(_bank(a))
    assert h["duplicates_sampled"] is True and h["filters"] == 500


def test_saturation_needs_a_quantized_source():
    q = np.array([[-128, 127, 5, 0], [127, 127, 127, 1]], np.float32).reshape(2, 2, 2, 1)
    assert health.assess(_bank(q, "int8"))["saturated_fraction"] == pytest.approx(5 / 8)
    assert health.assess(_bank(q))["saturated_fraction"] is None
    dequantized = q * np.float32(0.01)
    assert health.assess(_bank(dequantized, "int8"))["saturated_fraction"] == pytest.approx(6 / 8)


# --- diff ---------------------------------------------------------------------------------------

def test_diff_renders_a_b_and_their_difference(tmp_path):
    rng = np.random.default_rng(5)
    before = rng.normal(size=(16, 3, 5, 5)).astype(np.float32)
    after = before.copy()
    after[3] += 0.5 * rng.normal(size=(3, 5, 5)).astype(np.float32)
    np.save(tmp_path / "before.npy", before)
    np.save(tmp_path / "after.npy", after)
    result = run_cli("diff", tmp_path / "before.npy", tmp_path / "after.npy", "-o", tmp_path / "d.png")
    assert result.returncode == 0, result.stderr
    assert "most changed: #3 (" in result.stdout and "cosine similarity" in result.stdout
    with Image.open(tmp_path / "d.png") as image:
        assert image.width > 3 * 100 and image.height > 50


def test_diff_of_different_shapes_is_one_line(tmp_path):
    np.save(tmp_path / "small.npy", np.ones((4, 3, 3, 3), np.float32))
    np.save(tmp_path / "large.npy", np.ones((8, 3, 3, 3), np.float32))
    assert_one_line_error(run_cli("diff", tmp_path / "small.npy", tmp_path / "large.npy", "-o", tmp_path / "d.png"),
                          "differ in shape")


def test_a_file_name_that_is_not_utf8_is_reported(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    name = b"caf\xe9.npy".decode("utf-8", "surrogateescape")
    np.save(folder / name, np.ones((2, 1, 3, 3), np.float32))
    result = run_cli("audit", folder, "--out", tmp_path / "out", "--quiet")
    assert result.returncode in (0, 1) and not result.stderr, result.stderr
    (record,) = json.loads((tmp_path / "out" / "report.json").read_text())["files"]
    assert record["path"].endswith(name) and record["format"] == "numpy"
    assert b"caf\xe9.npy" in (tmp_path / "out" / "report.csv").read_bytes()
    assert "caf\ufffd.npy" in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
