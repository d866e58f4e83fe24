"""Shared test helpers: the committed fixtures and a CLI runner that behaves like the real entry point."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
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


@contextlib.contextmanager
def moto_bucket(objects):
    """moto's S3 server on loopback with bucket ``models`` holding ``objects`` (key -> bytes) under
    ``zoo/``; the usual AWS_* variables are set, so the CLI and workers started inside inherit them."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto keeps its buckets in the process, shared by every server: start from none
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"))
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            import boto3

            s3 = boto3.client("s3")
            s3.create_bucket(Bucket="models")
            for key, body in objects.items():
                s3.put_object(Bucket="models", Key=f"zoo/{key}", Body=body)
            yield "s3://models/zoo/"
    finally:
        server.stop()


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
