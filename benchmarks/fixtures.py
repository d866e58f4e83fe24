"""Time ``filtergrid convert`` on every committed fixture, as whole processes, beside ``import numpy``.

    python benchmarks/fixtures.py [--repeat 5]

Prints one row per fixture: median wall time of a fresh ``python -m filtergrid convert`` process, its
peak RSS, and the ratio to a process that only imports numpy (the floor for any numpy tool).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

PEAK = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:], capture_output=True); dt = time.perf_counter() - t; "
        "print(r.returncode, dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def measure(argv: list[str], repeat: int) -> tuple[float, float, int]:
    """(median seconds, peak RSS MiB, exit code) of ``argv`` run ``repeat`` times as fresh processes."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", PEAK, *argv], capture_output=True, text=True, check=True)
        code, seconds, rss = out.stdout.split()
        runs.append((float(seconds), int(rss) / 1024, int(code)))
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs), runs[0][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    entries = []
    for manifest in sorted(FIXTURES.glob("*/manifest.json")):
        seen = set()
        for entry in json.loads(manifest.read_text()):
            if entry["file"] not in seen and not entry.get("options"):
                seen.add(entry["file"])
                entries.append(entry)
    floor, floor_rss, _ = measure([sys.executable, "-c", "import numpy"], args.repeat)
    print(f"python -c 'import numpy': {floor * 1000:.0f} ms, {floor_rss:.0f} MiB   "
          f"({os.cpu_count()} cores, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')})")
    print(f"{'fixture':45s} {'format':12s} {'ms':>6s} {'x numpy':>8s} {'MiB':>5s}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bank.npy"
        for entry in entries:
            seconds, rss, code = measure(
                [sys.executable, "-m", "filtergrid", "convert", str(FIXTURES / entry["file"]), "-o", str(out), "-q"],
                args.repeat)
            status = "" if code == 0 else f"  exit {code}"
            print(f"{entry['file']:45s} {entry['format']:12s} {seconds * 1000:6.0f} {seconds / floor:8.2f} "
                  f"{rss:5.0f}{status}")


if __name__ == "__main__":
    main()
