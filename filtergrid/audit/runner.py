"""The local pool: N worker processes, each file's record handed back as soon as it is done.

Workers are started once and reused (imports are paid once, which is what makes 2 workers twice as
fast as 1 on small files); a worker that crashes, overstays ``timeout`` or runs out of memory is
killed and replaced, and its file gets an error record.
"""

from __future__ import annotations

import selectors
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .process import WorkerProcess

#: Longest wait between calls of ``tick`` (progress bar, incremental report) while workers are busy.
TICK_SECONDS = 0.25


def run_local(tasks: list[dict[str, Any]], *, workers: int, timeout: float | None, max_memory: int,
              on_record: Callable[[dict[str, Any]], None], tick: Callable[[], None] = lambda: None) -> None:
    """Audit ``tasks`` on ``workers`` processes; ``on_record`` gets each record in completion order."""
    pending = deque(tasks)
    pool: list[WorkerProcess] = []
    selector = selectors.DefaultSelector()

    def spawn() -> WorkerProcess:
        worker = WorkerProcess(max_memory)
        selector.register(worker, selectors.EVENT_READ, worker)
        pool.append(worker)
        return worker

    def retire(worker: WorkerProcess) -> None:
        selector.unregister(worker)
        pool.remove(worker)
        worker.kill()

    try:
        for _ in range(min(workers, len(pending))):
            spawn()
        while pending or any(w.task is not None for w in pool):
            for worker in pool:
                if worker.task is None and pending:
                    worker.start(pending.popleft(), timeout)
            now = time.monotonic()
            wait = min([w.deadline - now for w in pool if w.task is not None] + [TICK_SECONDS])
            for key, _ in selector.select(max(wait, 0)):
                worker = key.data
                record, usable = worker.read()
                if record is not None:
                    on_record(record)
                if not usable:
                    retire(worker)
                    if pending:
                        spawn()
            now = time.monotonic()
            for worker in [w for w in pool if w.task is not None and w.expired(now)]:
                selector.unregister(worker)
                pool.remove(worker)
                record = worker.overstayed()
                if record is not None:
                    on_record(record)
                if pending:
                    spawn()
            tick()
    finally:
        for worker in list(pool):
            worker.kill()
        selector.close()
