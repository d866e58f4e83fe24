"""Throughput of ``filtergrid audit``: files/s with 1 and 2 local workers and on a 2-worker Dask cluster.

Builds a folder of N small models of mixed formats (written here with numpy/safetensors, plus copies
of the framework-made fixtures) and a few large ones, audits it three ways and prints files/s and the
peak resident memory of each worker process (sampled from /proc: VmHWM of the audit's worker
processes). "workers busy" is the time workers spent on files per second of wall time: near the
worker count when the pool keeps them fed (the rest is start-up and the parent's walk and writes).
Run on a quiet machine: ``python benchmarks/audit.py [--n 200] [--repeat 3]``; one other process
holding a core at 100% caps what 2 workers can get at ~1.33 cores, and the speed-up with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from filtergrid.audit import AuditOptions, audit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture_files() -> list[Path]:
    """Framework-made model files that filtergrid reads today (folders and companions left out)."""
    import filtergrid

    found = []
    for path in sorted(FIXTURES.glob("*/*")):
        if path.is_file() and not path.name.endswith((".json", ".md", ".expected.npz", ".py", ".data")):
            try:
                filtergrid.load(path)
            except filtergrid.FiltergridError:
                continue
            found.append(path)
    return found


def build(root: Path, n: int) -> None:
    """``n`` small models (a third written here per format, the rest fixture copies) and 3 large ones."""
    rng = np.random.default_rng(0)
    copies = fixture_files()
    for i in range(n):
        kind = i % 4
        if kind == 0:
            np.save(root / f"conv_{i}.npy", rng.normal(size=(32, 3, 5, 5)).astype(np.float32))
        elif kind == 1:
            np.savez(root / f"mlp_{i}.npz", W1=rng.normal(size=(3072, 32)).astype(np.float32), b1=np.zeros(32, np.float32))
        elif kind == 2:
            save_file({"conv1.weight": rng.normal(size=(64, 3, 7, 7)).astype(np.float32)}, str(root / f"resnet_{i}.safetensors"))
        else:
            source = copies[i % len(copies)]
            shutil.copy(source, root / f"{i}_{source.name}")
    big = {f"layer{k}.weight": rng.normal(size=(512, 512, 3, 3)).astype(np.float32) for k in range(20)}
    big["conv1.weight"] = rng.normal(size=(64, 3, 7, 7)).astype(np.float32)
    save_file(big, str(root / "large_resnetish.safetensors"))  # ~190 MB: hashed in full, first layer read lazily
    np.save(root / "large_bank.npy", rng.normal(size=(1024, 3, 16, 16)).astype(np.float32))
    np.savez(root / "large_embedding.npz", embed_tokens=rng.normal(size=(50_000, 256)).astype(np.float32))


class PeakMemory:
    """Highest VmHWM (peak RSS) of each audit worker process descended from this one."""

    def __init__(self) -> None:
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _descendants(self, pid: int) -> list[int]:
        out = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    for child in f.read().split():
                        out += [int(child), *self._descendants(int(child))]
        except OSError:
            pass
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for pid in self._descendants(os.getpid()):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if b"filtergrid.audit.worker" not in f.read():
                            continue
                    with open(f"/proc/{pid}/status") as f:
                        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
                except (OSError, StopIteration):
                    continue
                self.peaks[pid] = max(self.peaks.get(pid, 0), hwm * 1024)


def run(folder: Path, out: Path, **options) -> tuple[float, int, int, float]:
    """(files/s, files, peak RSS of the largest worker in bytes, worker-seconds per wall second)."""
    shutil.rmtree(out, ignore_errors=True)
    with PeakMemory() as memory:
        started = time.perf_counter()
        document = audit(AuditOptions(paths=(str(folder),), out=out, timeout=300, **options))
        seconds = time.perf_counter() - started
    files = document["summary"]["audited"]
    busy = sum(r["seconds"] for r in document["files"]) / seconds
    return files / seconds, files, max(memory.peaks.values(), default=0), busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="small models (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting (interleaved); best and median are reported")
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="filtergrid-bench-") as tmp:
        folder, out = Path(tmp) / "models", Path(tmp) / "out"
        folder.mkdir()
        build(folder, args.n)
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"{len(list(folder.iterdir()))} files, {size / 1e6:.0f} MB, load average {os.getloadavg()[0]:.2f}")
        settings = [("--workers 1", {"workers": 1}), ("--workers 2", {"workers": 2})]
        cluster = None
        if not args.no_dask:
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            settings.append(("dask, 2 workers", {"scheduler": cluster.scheduler_address}))
        runs: dict[str, list[tuple[float, int, int, float]]] = {name: [] for name, _ in settings}
        try:
            for _ in range(args.repeat):  # interleaved, so a burst of load elsewhere hits every setting
                for name, options in settings:
                    runs[name].append(run(folder, out, **options))
        finally:
            if cluster is not None:
                cluster.close()
        best = {}
        for name, results in runs.items():
            rates = sorted(r[0] for r in results)
            best[name] = rates[-1]
            peak = max(r[2] for r in results)
            busy = max(results)[3]
            print(f"{name:16s} best {rates[-1]:6.1f} files/s, median {rates[len(rates) // 2]:6.1f} "
                  f"({results[0][1]} files, {len(rates)} runs); workers busy {busy:.2f} s per s; "
                  f"peak RSS per worker {peak / 2**20:.0f} MiB")
        print(f"speed-up with 2 workers (best/best): {best['--workers 2'] / best['--workers 1']:.2f}x "
              f"(load average now {os.getloadavg()[0]:.2f})")

if __name__ == "__main__":
    main()
