"""``--scheduler tcp://HOST:PORT``: the same per-file work on an existing Dask distributed cluster.

Each Dask task runs :func:`filtergrid.audit.process.run_isolated`, i.e. the very worker process, time
and memory limits of a local run, so records, report and exit code are the same. Workers read the
models and write the grids by path: the models and the output folder must be on a filesystem every
worker sees at the same path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..converters.base import require
from ..errors import FiltergridError
from .process import run_isolated
from .runner import TICK_SECONDS
from .worker import empty_record, one_line


def connect(scheduler: str) -> Any:
    """A ``distributed.Client`` for ``scheduler`` or a one-line error saying why not.

    How long to keep trying is Dask's own setting ``distributed.comm.timeouts.connect`` (e.g. the
    environment variable ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).
    """
    distributed = require("distributed", "dask")
    import dask.config
    from dask.utils import parse_timedelta

    timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), default="seconds")
    try:
        return distributed.Client(scheduler, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - OSError, TimeoutError, ValueError for a bad address, ...
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise FiltergridError(f"cannot reach the Dask scheduler at {scheduler}: {detail}") from None


def run_on_dask_worker(task: dict[str, Any], timeout: float | None, max_memory: int) -> dict[str, Any]:
    """What each Dask task runs: :func:`run_isolated`, and the Dask worker's address in ``ran_on``."""
    import distributed

    record = run_isolated(task, timeout, max_memory)
    record["ran_on"] = distributed.get_worker().address
    return record


def run_dask(client: Any, tasks: list[dict[str, Any]], *, timeout: float | None, max_memory: int,
             on_record: Callable[[dict[str, Any]], None], tick: Callable[[], None]) -> None:
    """Submit one task per file to ``client``; ``on_record`` gets each record as its future completes.

    Polls every TICK_SECONDS (``tick`` keeps the report and the progress line fresh while a long
    file runs on some worker).
    """
    import distributed

    if not tasks:
        return
    n = len(tasks)
    futures = client.map(run_on_dask_worker, tasks, [timeout] * n, [max_memory] * n, pure=False)
    path_of = {f.key: t["path"] for f, t in zip(futures, tasks)}
    done = distributed.as_completed(futures)
    try:
        while not done.is_empty():
            for future in done.next_batch(block=False):
                on_record(_record(future, path_of[future.key]))
            tick()
            time.sleep(TICK_SECONDS)
    except BaseException:
        client.cancel(futures)
        raise


def _record(future: Any, path: str) -> dict[str, Any]:
    try:
        record: dict[str, Any] = future.result()
    except Exception as e:  # noqa: BLE001 - a lost worker or a task that could not run
        record = empty_record(path)
        record["error"] = f"the Dask task failed: {one_line(e)}"
    return record
