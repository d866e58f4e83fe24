"""Reports a lead acts on: --fail-on gates, failing files named, progress without a TTY, dead filter
indices, unsupported formats, bounded thumbnails."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from PIL import Image

from filtergrid.audit import worker
from filtergrid.audit.report import Report, failing
from filtergrid.errors import UnsupportedFormatError


@pytest.fixture(scope="module")
def health_zoo(tmp_path_factory):
    """good.npy (healthy), nan.npy (a NaN), dead.npy (filters 1 and 3 all zero)."""
    root = tmp_path_factory.mktemp("gates") / "models"
    root.mkdir()
    rng = np.random.default_rng(0)
    np.save(root / "good.npy", rng.normal(size=(8, 3, 3, 3)).astype(np.float32))
    nan = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    nan[2, 0, 1, 1] = np.nan
    np.save(root / "nan.npy", nan)
    dead = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    dead[[1, 3]] = 0
    np.save(root / "dead.npy", dead)
    return root


@pytest.mark.parametrize("fail_on, failing_names", [
    (None, []),                               # default: error,unsupported; NaN weights are "ok" files
    ("nonfinite", ["nan.npy"]),
    ("dead", ["dead.npy"]),
    ("NonFinite,dead", ["dead.npy", "nan.npy"]),
    ("duplicate,error,unsupported", []),
    ("none", []),
])
def test_fail_on_sets_the_exit_status_and_names_the_files(health_zoo, tmp_path, fail_on, failing_names):
    args = ["--fail-on", fail_on] if fail_on else []
    result = run_cli("audit", health_zoo, "--out", tmp_path / "out", *args)
    assert result.returncode == (1 if failing_names else 0), result.stdout + result.stderr
    named = sorted(Path(m).name for m in re.findall(r"^  (\S+) \[", result.stdout, re.MULTILINE))
    assert named == failing_names
    if failing_names:
        assert f"{len(failing_names)} file" in result.stdout and "failed --fail-on" in result.stdout


def test_fail_on_error_with_a_broken_file(health_zoo, tmp_path):
    broken = tmp_path / "broken.npy"
    broken.write_bytes(b"\x93NUMPY garbage")
    result = run_cli("audit", health_zoo, broken, "--out", tmp_path / "out", "--fail-on", "nonfinite")
    assert result.returncode == 1
    assert re.search(r"^  \S+/nan\.npy \[nonfinite\]$", result.stdout, re.MULTILINE)
    assert "broken.npy" not in result.stdout.split("failed --fail-on")[1]  # errors do not fail this gate
    result = run_cli("audit", broken, "--out", tmp_path / "out2", "--fail-on", "error")
    assert result.returncode == 1 and re.search(r"^  \S+/broken\.npy \[error\]: ", result.stdout, re.MULTILINE)


def test_an_unknown_fail_on_condition_is_a_usage_error(health_zoo, tmp_path):
    assert_one_line_error(run_cli("audit", health_zoo, "--out", tmp_path / "out", "--fail-on", "nan"),
                          "--fail-on", "nonfinite")


def test_dead_filter_indices_are_in_the_report(health_zoo, tmp_path):
    run_cli("audit", health_zoo, "--out", tmp_path / "out", "--quiet")
    records = {Path(r["path"]).name: r for r in json.loads((tmp_path / "out" / "report.json").read_text())["files"]}
    assert records["dead.npy"]["health"]["dead_indices"] == [1, 3]
    assert records["good.npy"]["health"]["dead_indices"] == []
    html = (tmp_path / "out" / "index.html").read_text()
    assert 'title="dead filters: 1, 3"' in html


def test_progress_lines_without_a_terminal(health_zoo, tmp_path):
    result = run_cli("audit", health_zoo, "--out", tmp_path / "out")
    lines = [line for line in result.stderr.splitlines() if line.startswith("auditing: ")]
    assert lines and lines[0].startswith("auditing: 0/3 files"), result.stderr
    assert run_cli("audit", health_zoo, "--out", tmp_path / "out", "--quiet").stderr == ""


def test_progress_line_at_least_every_few_seconds(monkeypatch, capsys):
    from filtergrid.cli import audit as cli_audit

    clock = iter([0.0, 0.0, 1.0, 3.5, 4.0, 7.0])
    monkeypatch.setattr(cli_audit.time, "monotonic", lambda: next(clock))
    progress = cli_audit.LineProgress()   # 0.0
    progress.start(10, 0)                 # prints at 0.0
    progress.refresh()                    # 1.0: too soon
    progress.refresh()                    # 3.5: prints (a heartbeat with nothing finished)
    progress.advance({"status": "error"})  # 4.0: too soon
    progress.refresh()                    # 7.0: prints
    assert capsys.readouterr().err.splitlines() == [
        "auditing: 0/10 files, 0 not ok, 0 s", "auditing: 0/10 files, 0 not ok, 4 s",
        "auditing: 1/10 files, 1 not ok, 7 s"]


def test_unsupported_format_is_its_own_status(tmp_path, monkeypatch):
    from filtergrid import api

    np.save(tmp_path / "m.npy", np.ones((2, 1, 3, 3), np.float32))

    def refuse(*args, **kwargs):
        raise UnsupportedFormatError("a Caffe prototxt holds no weights")

    monkeypatch.setattr(api, "load", refuse)
    record = worker.audit_file({"path": str(tmp_path / "m.npy"), "out": str(tmp_path), "grid": "grids/m.png"})
    assert record["status"] == "unsupported" and "Caffe" in record["error"]
    report = Report(tmp_path, [record["path"]], [], {})
    report.add(record)
    summary = report.document(complete=True)["summary"]
    assert summary["by_status"] == {"unsupported": 1}
    assert [met for _, met in failing(report.files(), ("error", "unsupported"))] == [["unsupported"]]
    assert failing(report.files(), ("error",)) == []


def test_thumbnails_are_small_and_beside_the_grid(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "wide.npy", rng.normal(size=(256, 3, 16, 16)).astype(np.float32))  # noise: compresses badly
    np.save(tmp_path / "tiny.npy", rng.normal(size=(4, 1, 3, 3)).astype(np.float32))
    assert run_cli("audit", tmp_path / "wide.npy", tmp_path / "tiny.npy", "--out", tmp_path / "out", "-q").returncode == 0
    records = {Path(r["path"]).name: r for r in json.loads((tmp_path / "out" / "report.json").read_text())["files"]}
    wide = records["wide.npy"]
    assert wide["thumbnail"] == wide["grid"].replace(".png", ".thumb.png")
    thumb = tmp_path / "out" / wide["thumbnail"]
    assert thumb.stat().st_size <= worker.THUMB_MAX_BYTES < (tmp_path / "out" / wide["grid"]).stat().st_size
    with Image.open(thumb) as image:
        assert max(image.size) <= worker.THUMB_PIXELS
    assert records["tiny.npy"]["thumbnail"] == records["tiny.npy"]["grid"]  # small grids are their own thumbnail


def test_thumbnail_bytes_halve_until_they_fit(monkeypatch):
    noise = Image.fromarray(np.random.default_rng(2).integers(0, 255, (1024, 1024, 3), np.uint8))
    monkeypatch.setattr(worker, "THUMB_MAX_BYTES", 20_000)
    data = worker.thumbnail_bytes(noise)
    assert len(data) <= 20_000
