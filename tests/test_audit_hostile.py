"""The audit against folders an attacker prepared: it never dies, stays inside, and reports safely."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from audit_zoo import make_zoo
from conftest import FIXTURES, manifest_entries, run_cli
from safetensors.numpy import save_file

from filtergrid import converters, limits
from filtergrid.audit import AuditOptions, audit, text, walk, worker
from filtergrid.audit.process import WorkerProcess
from filtergrid.audit.report import Report
from filtergrid.errors import FiltergridError

DEPTH = 10_000


def _read(out: Path) -> tuple[dict, str, str]:
    return (json.loads((out / "report.json").read_text()), (out / "report.csv").read_bytes().decode("utf-8", "surrogateescape"),
            (out / "index.html").read_text(encoding="utf-8"))


def _conv(path: Path, seed: int = 0) -> None:
    np.save(path, np.random.default_rng(seed).normal(size=(4, 1, 3, 3)).astype(np.float32))


# --- a deep tree -----------------------------------------------------------------------------------

def _make_deep(root: Path, depth: int) -> None:
    """``root/d/d/.../d`` ``depth`` folders deep (made through directory fds: no path is too long)."""
    fd = os.open(root, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)


def _remove_deep(root: Path, depth: int) -> None:
    """Undo :func:`_make_deep` one level at a time from the top (shutil.rmtree recurses per level)."""
    for _ in range(depth - 1):
        os.rename(root / "d" / "d", root / "next")
        os.rmdir(root / "d")
        os.rename(root / "next", root / "d")
    os.rmdir(root / "d")


@pytest.fixture
def scratch(tmp_path):
    """A folder for deep trees: on tmpfs when there is one (ext4 takes ~50 s to make and remove 10,000 levels)."""
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path / "scratch"
    folder.mkdir(exist_ok=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_10000_deep_tree_ends_with_a_bounded_report(tmp_path, scratch):
    models = scratch / "models"
    models.mkdir()
    _conv(models / "top.npy")
    _make_deep(models, DEPTH)
    try:
        started = time.monotonic()
        result = run_cli("audit", models, "--out", tmp_path / "out", "--quiet", timeout=300)
        seconds = time.monotonic() - started
    finally:
        _remove_deep(models, DEPTH)
    assert result.returncode == 0, result.stderr
    assert seconds < 60
    document, _, _ = _read(tmp_path / "out")
    assert [Path(r["path"]).name for r in document["files"]] == ["top.npy"]
    (deep,) = document["skipped"]
    assert "MAX_WALK_DEPTH" in deep["reason"] and "FILTERGRID_MAX_WALK_DEPTH" in deep["reason"]
    assert len(Path(deep["path"]).relative_to(models).parts) == limits.MAX_WALK_DEPTH + 1
    assert (tmp_path / "out" / "report.json").stat().st_size < 10_000


def test_the_walk_is_iterative(scratch, monkeypatch):
    """Deeper than Python's recursion limit, with the depth limit raised: the walk still ends."""
    _make_deep(scratch, 1500)
    try:
        monkeypatch.setattr(limits, "MAX_WALK_DEPTH", 2000)
        assert sys.getrecursionlimit() < 1500
        found = walk.find_models([scratch])
    finally:
        _remove_deep(scratch, 1500)
    assert found.models == [] and found.skipped == []


# --- bounded records -------------------------------------------------------------------------------

def test_a_huge_error_message_is_cut_in_every_report(tmp_path, monkeypatch):
    """The 1 KB .pt whose 64 MB error once made 384 MB of reports: each copy is now <= MAX_TEXT_CHARS."""
    from filtergrid import api

    _conv(tmp_path / "bad.npy")

    def explode(*args, **kwargs):
        raise FiltergridError("unreadable: " + "[[...], [...]] " * (4 << 20))

    monkeypatch.setattr(api, "load", explode)
    record = worker.audit_file({"path": str(tmp_path / "bad.npy"), "out": str(tmp_path), "grid": "grids/x.png"})
    assert record["status"] == "error" and len(record["error"]) < text.MAX_TEXT_CHARS + 50
    out = tmp_path / "out"
    out.mkdir()
    report = Report(out, [record["path"]], [], {})
    report.add(record)
    from filtergrid.audit.html import write_html

    write_html(report.write(complete=True), out)
    sizes = {name: (out / name).stat().st_size for name in ("report.json", "report.csv", "index.html")}
    assert sum(sizes.values()) < 60_000, sizes


def test_a_huge_name_from_a_file_is_cut_end_to_end(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    header = json.dumps({"A" * 300_000: {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 999]}}).encode()
    (models / "long.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    result = run_cli("audit", models, "--out", tmp_path / "out")
    assert result.returncode == 1 and len(result.stdout) < 2000, result.stdout[:3000]
    (record,) = json.loads((tmp_path / "out" / "report.json").read_text())["files"]
    assert len(record["error"]) < text.MAX_TEXT_CHARS + 50
    total = sum(p.stat().st_size for p in (tmp_path / "out").iterdir() if p.is_file())
    assert total < 60_000


def test_bounded_cuts_strings_and_lists():
    record = {"error": "x" * 5000, "health": {"dead_indices": list(range(1000))}, "seconds": 1.5}
    cut = text.bounded(record)
    assert cut["error"].startswith("x" * text.MAX_TEXT_CHARS) and cut["error"].endswith("(4,000 more characters)")
    assert cut["health"]["dead_indices"] == list(range(text.MAX_LIST_ITEMS)) and cut["seconds"] == 1.5


# --- symlinks out of the audited folders -------------------------------------------------------------

@pytest.fixture
def linked(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    _conv(outside / "secret.npy", seed=7)
    (outside / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (outside / "folder").mkdir()
    _conv(outside / "folder" / "inner.npy", seed=8)
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    _conv(models / "mine.npy")
    os.symlink(outside / "secret.npy", models / "secret.npy")
    os.symlink(outside / "passwd", models / "passwd.pt")
    os.symlink(outside / "folder", models / "sub" / "folder")
    os.symlink("../mine.npy", models / "sub" / "inside_link.npy")  # stays inside: fine (a second route)
    return tmp_path, models, outside


def test_links_out_of_the_roots_are_not_read_or_hashed(linked):
    tmp_path, models, outside = linked
    result = run_cli("audit", models, "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 0, result.stderr
    document, csv_text, html = _read(tmp_path / "out")
    assert [Path(r["path"]).name for r in document["files"]] == ["mine.npy"]
    skipped = {os.path.relpath(s["path"], models): s["reason"] for s in document["skipped"]}
    for name in ("secret.npy", "passwd.pt", "sub/folder"):
        assert skipped[name] == walk.LINK_OUT
    everything = json.dumps(document) + csv_text + html
    for secret in (outside / "secret.npy", outside / "passwd"):
        assert hashlib.sha256(secret.read_bytes()).hexdigest() not in everything
    assert "root:x" not in everything and "inner.npy" not in everything


def test_follow_links_audits_them(linked):
    tmp_path, models, outside = linked
    result = run_cli("audit", models, "--out", tmp_path / "out", "--quiet", "--follow-links")
    assert result.returncode == 1, result.stderr  # passwd.pt is no model
    document, _, _ = _read(tmp_path / "out")
    names = {os.path.relpath(r["path"], models): r for r in document["files"]}
    assert set(names) == {"mine.npy", "passwd.pt", "secret.npy", "sub/folder/inner.npy"}
    assert names["secret.npy"]["sha256"] == hashlib.sha256((outside / "secret.npy").read_bytes()).hexdigest()


def test_a_model_folder_hashes_no_file_linked_from_outside(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    save_file({"w": np.ones((2, 2), np.float32)}, str(folder / "model.safetensors"))
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    os.symlink(tmp_path / "passwd", folder / "notes.txt")
    assert [p.name for p in worker.files_of(folder, True)] == ["config.json", "model.safetensors"]


# --- content of non-model files -------------------------------------------------------------------------

def test_non_model_files_leave_no_bytes_in_the_report(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    _conv(models / "conv.npy")
    with zipfile.ZipFile(models / "letter.docx", "w") as z:  # a zip (like .pt, .npz) that is no model
        z.writestr("word/document.xml", "SECRET-IN-ZIP")
    (tmp_path / "named.txt").write_text("SECRET-TEXT\n")
    (models / "blob.bin").write_bytes(b"SECRET-BIN" * 10)  # a model suffix: an error, but no bytes shown
    result = run_cli("audit", models, tmp_path / "named.txt", "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 1
    document, csv_text, html = _read(tmp_path / "out")
    records = {Path(r["path"]).name: r for r in document["files"]}
    assert records["conv.npy"]["status"] == "ok"
    assert records["named.txt"]["error"] == walk.NOT_A_MODEL and records["blob.bin"]["status"] == "error"
    assert records["named.txt"]["sha256"] is None
    skipped = {Path(s["path"]).name: s["reason"] for s in document["skipped"]}
    assert skipped["letter.docx"] == walk.NOT_A_MODEL
    everything = json.dumps(document) + csv_text + html
    for secret in (b"SECRET-IN-ZIP", b"SECRET-TEXT", b"SECRET-BIN", b"PK\x03\x04"):
        assert secret.decode("latin-1") not in everything
        assert secret[:8].hex(" ") not in everything


# --- the parent parses nothing --------------------------------------------------------------------------

def test_the_parent_decides_from_names_sizes_and_first_bytes(tmp_path, monkeypatch):
    """The whole audit, with every parser the parent could reach for broken: same report."""
    zoo = make_zoo(tmp_path / "models", fixtures=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the audit's parent process parsed a file")

    monkeypatch.setattr(converters, "detect", refuse)
    monkeypatch.setattr(converters.base.Probe, "of", refuse)
    monkeypatch.setattr(zipfile.ZipFile, "__init__", refuse)
    document = audit(AuditOptions(paths=(str(zoo.root),), out=tmp_path / "out", workers=2, timeout=60))
    records = {os.path.relpath(r["path"], zoo.root): r for r in document["files"]}
    assert set(records) == set(zoo.good) | set(zoo.bad)
    assert all(records[name]["status"] == "ok" for name in zoo.good)


#: Formats whose files start with no magic the parent could test (text, bare protobuf or raw floats):
#: their suffix makes them candidates.
NO_MAGIC = {".xml", ".cfg", ".weights", ".caffemodel", ".prototxt", ".param", ".msgpack", ".json", ".pb",
            ".pdmodel", ".mlmodel"}


def test_every_fixture_is_a_candidate_by_its_first_bytes_or_suffix():
    """The parent misses no format: a fixture renamed without a suffix is still audited, except for
    the formats that have no magic bytes at all, which need their suffix."""
    suffixes = walk.model_suffixes()
    for entry in manifest_entries():
        path = FIXTURES / entry["file"]
        if path.is_dir():
            assert walk.is_model_folder(path, os.listdir(path)), entry["file"]
            continue
        with open(path, "rb") as f:
            found = walk.has_signature(f.read(walk.HEAD_BYTES), path.stat().st_size)
        assert found or (path.suffix in NO_MAGIC and path.suffix in suffixes), entry["file"]


def test_workers_ignore_pythonpath(tmp_path, monkeypatch):
    """A PYTHONPATH with a booby-trapped numpy does not reach the workers (python -I)."""
    trap = tmp_path / "trap"
    trap.mkdir()
    marker = tmp_path / "imported"
    (trap / "numpy.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise ImportError('trap')\n")
    monkeypatch.setenv("PYTHONPATH", str(trap))
    _conv(tmp_path / "conv.npy")
    process = WorkerProcess()  # a fresh one: run_isolated may reuse a worker started before the trap
    try:
        process.start({"path": str(tmp_path / "conv.npy"), "out": str(tmp_path), "grid": "grids/c.png"}, 60)
        record = None
        while record is None:
            record, _ = process.read()
    finally:
        process.kill()
    assert record["status"] == "ok" and not marker.exists()


# --- untrusted text on every surface ---------------------------------------------------------------

ESCAPE_NAME = "\x1b]0;owned\x07\x1b[2J[blink]x[red].pt"


def test_csv_cells_never_start_a_formula(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for i, name in enumerate(("=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)")):
        save_file({name: np.random.default_rng(i).normal(size=(2, 1, 3, 3)).astype(np.float32)},
                  str(models / f"m{i}.safetensors"))
    assert run_cli("audit", models, "--out", tmp_path / "out", "--quiet").returncode == 0
    with open(tmp_path / "out" / "report.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["tensor"] for r in rows) == sorted(["'=HYPERLINK(\"http://x\",\"y\")", "'+1+1", "'-2+3", "'@SUM(A1)"])
    for row in rows:
        assert not any(v.startswith(("=", "+", "@")) for v in row.values()), row
    assert all(float(r["health.min"]) < 0 for r in rows)  # numbers stay numbers: "-0.5" is no formula


def test_names_reach_the_terminal_as_text(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / ESCAPE_NAME).write_bytes(b"\x80\x02 not a pickle")
    result = run_cli("audit", models, "--out", tmp_path / "out")
    assert result.returncode == 1
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout
    assert "\\x1b]0;owned\\x07\\x1b[2J[blink]x[red].pt" in result.stdout


def test_lone_surrogates_in_names_crash_nothing(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    header = json.dumps({"conv\ud800.weight": {"dtype": "F32", "shape": [2, 1, 3, 3], "data_offsets": [0, 72]}})
    raw = header.encode("ascii")  # json escapes the surrogate as \\ud800
    (models / "surrogate.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(72))
    name = b"caf\xe9\x1b.npy".decode("utf-8", "surrogateescape")
    _conv(models / name)
    result = run_cli("audit", models, "--out", tmp_path / "out", "--fail-on", "error,dead")
    assert "Traceback" not in result.stderr and result.returncode in (0, 1), result.stderr
    document, csv_text, html = _read(tmp_path / "out")
    records = {r["path"].rsplit("/", 1)[1]: r for r in document["files"]}
    assert records["surrogate.safetensors"]["tensor"] == "conv\ud800.weight"
    assert "conv\\ud800.weight" in csv_text and "conv\ufffd." in html
    assert records[name]["status"] == "ok"
    assert b"caf\xe9\x1b.npy" in (tmp_path / "out" / "report.csv").read_bytes()


def test_hostile_names_stay_text_in_a_full_audit(tmp_path):
    zoo = make_zoo(tmp_path / "models", fixtures=False)
    _conv(zoo.root / ESCAPE_NAME.replace(".pt", ".npy"))
    shutil.copy(zoo.root / "conv.npy", zoo.root / "=cmd|' -C calc'!A0.npy")
    result = run_cli("audit", zoo.root, "--out", tmp_path / "out", "--fail-on", "error")
    assert result.returncode == 1 and "\x1b" not in result.stdout + result.stderr
    with open(tmp_path / "out" / "report.csv", newline="", encoding="utf-8") as f:
        tensors = {r["tensor"] for r in csv.DictReader(f)}
    assert "'=cmd|' -C calc'!A0" in tensors and not any(t.startswith("=") for t in tensors)
