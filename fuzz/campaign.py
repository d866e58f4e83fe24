"""A fuzzing campaign: the atheris harness on every single-file format, a time budget each.

    nice python fuzz/campaign.py OUTDIR [--minutes 4] [--formats numpy safetensors ...]

libFuzzer stops at the first input that hangs or crashes native code (libhdf5 has such bugs);
the campaign records that input under OUTDIR/artifacts and restarts the format with the time
left, so one run keeps going. Inputs tried per format are summed from the harness's counters
(OUTDIR/findings/summary-FORMAT-PID.json, written every 500 inputs: a slight undercount).
OUTDIR/campaign.json holds the totals; findings.jsonl the first example of each distinct finding.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HARNESS = Path(__file__).resolve().parent / "atheris_harness.py"
ROOT = HARNESS.parent.parent
#: Formats one mutated file can exercise (beside its real companion file where it has one;
#: a Hugging Face model and a TF.js model are folders of many files).
FORMATS = ("safetensors", "numpy", "keras", "keras-h5", "onnx", "pytorch", "torchscript", "tflite", "gguf",
           "coreml", "caffe", "flax", "sklearn", "paddle", "tensorflow", "openvino", "ncnn", "darknet",
           "paddle-inference")
#: What libFuzzer saves an input as when it stops on it.
ARTIFACT_KINDS = ("crash", "timeout", "oom", "leak", "slow")


def run_format(fmt: str, seconds: float, out: Path) -> dict:
    """Fuzz ``fmt`` for ``seconds``, restarting after hangs and crashes; return its totals."""
    deadline = time.monotonic() + seconds
    artifacts = out / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    restarts = 0
    log = (out / f"{fmt}.log").open("ab")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
           "OPENBLAS_NUM_THREADS": "1"}
    while (left := int(deadline - time.monotonic())) > 10:
        before = set(artifacts.iterdir())
        code = subprocess.call(
            [sys.executable, str(HARNESS), fmt, "--findings", str(out / "findings"),
             "--corpus", str(out / "corpus" / fmt), f"-max_total_time={left}", "-timeout=20",
             "-rss_limit_mb=2048", "-max_len=262144", f"-artifact_prefix={artifacts}/{fmt}-",
             f"-seed={restarts + 1}"],
            stdout=log, stderr=log, env=env)
        if code == 0:
            break
        if set(artifacts.iterdir()) == before:  # libFuzzer left no input behind: the harness failed
            raise SystemExit(f"the harness failed on {fmt} (exit {code}); see {out / f'{fmt}.log'}")
        restarts += 1
    log.close()
    summaries = [p for p in (out / "findings").glob(f"summary-{fmt}-*.json")
                 if p.stem.removeprefix(f"summary-{fmt}-").isdigit()]  # not keras-h5's for keras
    inputs = sum(json.loads(p.read_text())["inputs"] for p in summaries)
    return {"format": fmt, "inputs": inputs, "seconds": round(seconds), "restarts": restarts,
            "artifacts": sorted(p.name for p in artifacts.iterdir() if _artifact_of(p.name, fmt))}


def _artifact_of(name: str, fmt: str) -> bool:
    """libFuzzer names its artifacts PREFIX + kind + '-' + hash, with PREFIX = FORMAT + '-'."""
    return name.startswith(f"{fmt}-") and name[len(fmt) + 1:].split("-")[0] in ARTIFACT_KINDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--minutes", type=float, default=4.0, help="budget per format")
    parser.add_argument("--formats", nargs="*", default=list(FORMATS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    totals = []
    for fmt in args.formats:
        totals.append(run_format(fmt, args.minutes * 60, args.out))
        (args.out / "campaign.json").write_text(json.dumps(totals, indent=1) + "\n")
        print(json.dumps(totals[-1]), flush=True)
    print(f"{sum(t['inputs'] for t in totals):,} inputs in all")


if __name__ == "__main__":
    main()
