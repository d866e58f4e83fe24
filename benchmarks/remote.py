"""Bytes and requests to reach a first layer over HTTP, against downloading the whole file.

    python benchmarks/remote.py [--size-mib 1024] [--framework-python PYTHON_WITH_TORCH_AND_ONNX] [--markdown]

Builds each input with its real framework (``make_input.py``: safetensors, ONNX with conv1 first and
last, a PyTorch zip, a GGUF LLM), serves the folder from a loopback HTTP server with byte ranges
(``tests/rangeserver.py``, which counts what it sends), and runs ``filtergrid convert URL`` as a fresh
process. Each remote result is checked equal to ``convert`` of the local file. The naive way is a
download: one request for the whole file. Inputs whose framework is missing are skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from rangeserver import serve  # noqa: E402

#: (make_input.py kind, file name, what fraction of the file a first layer may cost)
CASES = [("safetensors", "big.safetensors", 0.01), ("onnx-conv-first", "first.onnx", 0.05),
         ("onnx-conv-last", "last.onnx", 0.05), ("torch-zip", "big.pt", 0.01), ("gguf", "big.gguf", 0.01)]


def build(kind: str, path: Path, size: int, python: str) -> bool:
    proc = subprocess.run([python, str(HERE / "make_input.py"), kind, str(size), str(path)],
                          capture_output=True, text=True)
    if proc.returncode == 3:
        print(f"skipped {kind}: its framework is not installed in {python}", file=sys.stderr)
        return False
    if proc.returncode:
        raise SystemExit(f"make_input.py {kind}: {proc.stderr.strip()[-400:]}")
    return True


def convert(source: str, out: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "filtergrid", "convert", source, "-o", str(out), "-q"],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"filtergrid convert {source}: {proc.stderr.strip()}")
    return time.perf_counter() - start


def measure(folder: Path, name: str, base: str, log) -> dict:
    local, remote = folder / "local.npy", folder / "remote.npy"
    convert(str(folder / name), local)
    log.requests = log.bytes_sent = 0
    seconds = convert(base + name, remote)
    size = (folder / name).stat().st_size
    equal = np.array_equal(np.load(local), np.load(remote))
    return {"file": name, "size": size, "requests": log.requests, "bytes": log.bytes_sent,
            "fraction": log.bytes_sent / size, "seconds": round(seconds, 3), "equal_to_local": equal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--framework-python", default=sys.executable)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fg-remote-") as tmp:
        folder = Path(tmp)
        built = [(kind, name, target) for kind, name, target in CASES
                 if build(kind, folder / name, args.size_mib << 20, args.framework_python)]
        with serve(folder) as (base, log, _):
            for kind, name, target in built:
                row = measure(folder, name, base, log)
                row["target"] = f"{'PASS' if row['fraction'] < target and row['equal_to_local'] else 'FAIL'} < {target:.0%}"
                rows.append(row)
    if not args.markdown:
        print(json.dumps(rows, indent=1))
        return
    print("| input | size | requests | bytes fetched | of the file | download | wall time | equal to local | target |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['file']} | {r['size'] / 2**20:.0f} MiB | {r['requests']} | {r['bytes'] / 2**10:,.0f} KiB | "
              f"{r['fraction']:.3%} | 1 request, {r['size'] / 2**20:.0f} MiB | {r['seconds']:.2f} s | "
              f"{r['equal_to_local']} | {r['target']} |")


if __name__ == "__main__":
    main()
