"""Shared test helpers: the committed fixtures and a CLI runner that behaves like the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def manifest_entries() -> list[dict]:
    """Every fixture entry from ``fixtures/*/manifest.json`` (written by the framework scripts)."""
    entries = []
    for manifest in sorted(FIXTURES.glob("*/manifest.json")):
        entries.extend(json.loads(manifest.read_text()))
    return entries


def group_entries(group: str) -> list[dict]:
    """The manifest entries of one fixture group (``fixtures/<group>/manifest.json``)."""
    return json.loads((FIXTURES / group / "manifest.json").read_text())


def entry_id(entry: dict) -> str:
    """A short pytest id for a manifest entry: its file's stem."""
    return Path(entry["file"]).stem


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: a separate process, so exit codes and stderr are real."""
    return subprocess.run([sys.executable, "-m", "filtergrid", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, exactly one line on stderr starting ``filtergrid: error:``, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("filtergrid: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
