"""``filtergrid audit --scheduler``: a real Dask cluster gives the same report as a local run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from audit_zoo import comparable, make_zoo, slow_folder
from conftest import assert_one_line_error, run_cli

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return make_zoo(tmp_path_factory.mktemp("zoo") / "models")


def _audit(tmp_path, name, paths, *args):
    out = tmp_path / name
    result = run_cli("audit", *paths, "--out", out, "--quiet", *args)
    return result, out, json.loads((out / "report.json").read_text())


def _grids(out):
    return {p.name: p.read_bytes() for p in (out / "grids").iterdir()}


@pytest.fixture(scope="module")
def local(zoo, tmp_path_factory):
    return _audit(tmp_path_factory.mktemp("local"), "out", [zoo.root], "--workers", "2")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def _assert_same(local, remote):
    (l_result, l_out, l_doc), (r_result, r_out, r_doc) = local, remote
    assert r_result.returncode == l_result.returncode == 1, r_result.stderr
    assert comparable(r_doc) == comparable(l_doc)
    assert _grids(r_out) == _grids(l_out)


def _ran_on_the_workers(document, workers) -> None:
    """Every record says which Dask worker ran it (distributed.get_worker() there): the tasks really
    ran on the cluster, not in the client's process."""
    ran_on = [r.get("ran_on") for r in document["files"]]
    assert ran_on and set(ran_on) <= set(workers), (ran_on, workers)


def test_local_cluster_gives_the_local_report(zoo, local, cluster, tmp_path):
    remote = _audit(tmp_path, "dask", [zoo.root], "--scheduler", cluster.scheduler_address)
    _assert_same(local, remote)
    assert remote[2]["summary"]["options"]["scheduler"] == cluster.scheduler_address
    _ran_on_the_workers(remote[2], cluster.scheduler_info["workers"])
    assert all("ran_on" not in r for r in local[2]["files"])


def test_time_limit_holds_on_dask_too(cluster, tmp_path):
    slow = slow_folder(tmp_path / "slow")
    result, _, document = _audit(tmp_path, "dask", [slow], "--timeout", "1", "--scheduler", cluster.scheduler_address)
    assert result.returncode == 1, result.stderr
    big, small = document["files"]
    assert big["status"] == "error" and "time limit" in big["error"]
    assert small["status"] == "ok"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dask_scheduler_and_worker_processes(zoo, local, tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", address.rsplit(":", 1)[1], "--no-dashboard"], **quiet)
    workers = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2",
                                "--nthreads", "1", "--no-dashboard"], **quiet)
    try:
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            remote = _audit(tmp_path, "dask", [zoo.root], "--scheduler", address)
            _assert_same(local, remote)
            _ran_on_the_workers(remote[2], client.scheduler_info()["workers"])
    finally:
        for proc in (workers, scheduler):
            proc.terminate()
        for proc in (workers, scheduler):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_unreachable_scheduler_is_one_line_exit_2(zoo, tmp_path):
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "filtergrid", "audit", str(zoo.root), "--out", str(tmp_path / "out"),
                             "--scheduler", f"tcp://127.0.0.1:{_free_port()}"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert_one_line_error(result, "cannot reach the Dask scheduler")
    assert time.monotonic() - started < 30
    assert not (tmp_path / "out").exists()
