"""The parent's handle on one worker process: send a task, read its record, kill it when it overstays.

Workers are ``python -m filtergrid.audit.worker`` subprocesses speaking JSON lines over pipes, not
``multiprocessing`` children: they can be killed and replaced at any moment, they start cleanly from
a process with threads (a progress bar, a Dask worker) and from daemonic Dask worker processes, and
the same handle serves the local pool and every Dask task.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from ..errors import FiltergridError
from .worker import empty_record

#: Seconds a fresh worker may take to import NumPy, Pillow and filtergrid before it is given up.
STARTUP_SECONDS = 120.0

#: One BLAS thread per worker: the pool is the parallelism, and thread pools would inflate memory.
_ONE_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


#: How a worker starts: ``python -I`` (no PYTHONPATH, no user site-packages, not the current
#: folder), then this very filtergrid's folder first only when the interpreter would not find it
#: (a source checkout); an installed filtergrid is found where it is, after the standard library.
_BOOT = ("import sys; root = sys.argv[1]; root in sys.path or sys.path.insert(0, root); "
         "from filtergrid.audit.worker import serve; serve(int(sys.argv[2]))")


def worker_command(max_memory: int) -> list[str]:
    package_root = str(Path(__file__).resolve().parents[2])
    return [sys.executable, "-I", "-c", _BOOT, package_root, str(max_memory)]


def _worker_env() -> dict[str, str]:
    """This environment without PYTHONPATH, and one BLAS thread."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **_ONE_THREAD}


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class WorkerProcess:
    """One worker; ``task`` is the task it is running (None when idle), ``deadline`` when to kill it."""

    def __init__(self, max_memory: int = 0):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            worker_command(max_memory),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            env=_worker_env(), start_new_session=True,  # Ctrl-C is the parent's
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.tasks_in: IO[bytes] = self.proc.stdin  # one JSON task per line
        self.replies: IO[bytes] = self.proc.stdout  # "ready", then one JSON record per line
        self.ready = False
        self._pending = b""
        self.task: dict[str, Any] | None = None
        self.started = time.monotonic()
        self.deadline = self.started + STARTUP_SECONDS
        self.timeout: float | None = None

    def fileno(self) -> int:
        return self.replies.fileno()

    def start(self, task: dict[str, Any], timeout: float | None) -> None:
        """Hand over a task; its clock starts when the worker is ready (import time is not the file's)."""
        self.task, self.timeout = task, timeout
        try:
            self.tasks_in.write((json.dumps(task) + "\n").encode())
            self.tasks_in.flush()
        except BrokenPipeError:
            pass  # the worker is gone; its pipe's end-of-file turns into this task's error record
        if self.ready:
            self._arm()

    def _arm(self) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout if self.timeout else float("inf")

    def read(self) -> tuple[dict[str, Any] | None, bool]:
        """After the pipe turned readable: (record or None, worker still usable?).

        Reads the pipe's fd directly (no buffered reader): a "ready" line and a record may arrive in
        one read, and a line left in a Python buffer would never wake the selector again.
        """
        chunk = os.read(self.fileno(), 1 << 16)
        if not chunk:
            return self._died(), False
        self._pending += chunk
        record, usable = None, True
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            reply = json.loads(line)
            if "ready" in reply:
                self.ready = True
                if self.task is not None:
                    self._arm()
            else:
                self.task = None
                record, usable = reply["record"], not reply["recycle"]
        return record, usable

    def _died(self) -> dict[str, Any] | None:
        code = self.proc.wait()
        if not self.ready:
            raise FiltergridError(f"an audit worker could not start (exit {code}): {self._last_words()}")
        if self.task is None:
            return None
        how = _signal_name(code) if code < 0 else f"exit status {code}"
        hint = " (likely the system ran out of memory)" if code == -signal.SIGKILL else ""
        return self._failed(f"the worker process died ({how}){hint} while auditing this file")

    def _last_words(self) -> str:
        self.stderr.seek(0)
        lines = self.stderr.read()[-4000:].decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "no message"

    def expired(self, now: float) -> bool:
        return now >= self.deadline

    def overstayed(self) -> dict[str, Any] | None:
        """Kill a worker past its deadline; the record of the task it was running, if any."""
        self.kill()
        if not self.ready:
            raise FiltergridError(f"an audit worker did not start within {STARTUP_SECONDS:g} s")
        if self.task is None:
            return None
        return self._failed(f"gave up after the {self.timeout:g} s time limit (--timeout); the worker was stopped",
                            seconds=self.timeout)

    def _failed(self, message: str, seconds: float | None = None) -> dict[str, Any]:
        assert self.task is not None
        record = empty_record(self.task["path"])
        record["error"] = message
        record["seconds"] = round(seconds if seconds is not None else time.monotonic() - self.started, 4)
        try:
            record["size"] = Path(self.task["path"]).stat().st_size
        except OSError:
            pass
        self.task = None
        return record

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.close()

    def close(self) -> None:
        for stream in (self.tasks_in, self.replies, self.stderr):
            try:
                stream.close()
            except OSError:
                pass


class _Local(threading.local):
    worker: WorkerProcess | None = None
    max_memory: int = 0


_local = _Local()


def run_isolated(task: dict[str, Any], timeout: float | None, max_memory: int) -> dict[str, Any]:
    """Audit one task in this thread's worker process (started on first use, replaced after a kill).

    This is the function a Dask cluster runs per file: the same worker, limits and records as the
    local pool.
    """
    worker = _local.worker
    if worker is None or worker.proc.poll() is not None or _local.max_memory != max_memory:
        if worker is not None:
            worker.kill()
        worker = _local.worker = WorkerProcess(max_memory)
        _local.max_memory = max_memory
    worker.start(task, timeout)
    with selectors.DefaultSelector() as selector:
        selector.register(worker, selectors.EVENT_READ)
        while True:
            wait = worker.deadline - time.monotonic()
            if wait <= 0:
                _local.worker = None
                overstayed = worker.overstayed()
                assert overstayed is not None  # it was running this task
                return overstayed
            if not selector.select(min(wait, 3600)):
                continue
            record, usable = worker.read()
            if not usable:
                worker.kill()
                _local.worker = None
            if record is not None:
                return record
