"""Coverage-guided fuzzing of ``filtergrid.load`` (and the renderer) with atheris / libFuzzer.

    pip install atheris
    python fuzz/atheris_harness.py FORMAT [--seeds DIR]... [--findings DIR] [libFuzzer flags]
    python fuzz/atheris_harness.py numpy -runs=20000 -rss_limit_mb=2048 -timeout=20

Seeds are the fixtures of FORMAT (``fixtures/*/manifest.json``) plus any file of that format under
``--seeds`` folders. Each input is written to a file with the format's suffix and loaded; a
FiltergridError is the expected outcome for broken bytes. Recorded as findings (without stopping,
so one run finds them all): any other exception; the API's safety net firing (a converter leaked a
raw exception that ``api._guarded`` had to wrap); running out of memory; and the work-budget
oracle: each input runs under an address-space limit of what the process already maps plus
``--memory-base-mb`` + ``--memory-factor`` x the input's size (an allocation past it fails and is a
"memory" finding), and taking longer than ``--slow`` seconds + 1 s per MB is a "slow" finding.
Each distinct finding is saved once under ``--findings`` with its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import resource
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

with atheris.instrument_imports(include=["filtergrid"]):
    import filtergrid
    from filtergrid import converters
    from filtergrid.errors import FiltergridError
    from filtergrid.renderer import RenderOptions, render_result

    for _fmt in converters.FORMATS:
        try:
            _fmt.load_module()
        except ImportError:  # a converter whose optional package is missing here
            pass

import hostile_corpus
from hostile_corpus import safety_net_fired


def signature(error: BaseException) -> str:
    """Exception type plus the innermost filtergrid frame: one finding per distinct bug."""
    root = error.__context__ if safety_net_fired(error) else error
    frames = [f for f in traceback.extract_tb(root.__traceback__) if "filtergrid" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(root).__name__} at {where}"


class Recorder:
    """Counts every input and keeps the first example of each distinct finding."""

    def __init__(self, findings: Path, fmt: str):
        self.findings, self.fmt = findings, fmt
        self.findings.mkdir(parents=True, exist_ok=True)
        self.seen: dict[str, int] = {}
        self.inputs = 0
        self.outcomes: dict[str, int] = {}

    def count(self, outcome: str) -> None:
        self.inputs += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if self.inputs % 500 == 0:  # libFuzzer exits the process at the end: keep the summary current
            self.write_summary()

    def record(self, kind: str, key: str, data: bytes, detail: str) -> None:
        key = f"{kind}: {key}"
        self.seen[key] = self.seen.get(key, 0) + 1
        if self.seen[key] > 1:
            return
        n = len(self.seen)
        (self.findings / f"{self.fmt}-{os.getpid()}-{n:03d}.bin").write_bytes(data)
        with (self.findings / "findings.jsonl").open("a") as log:
            log.write(json.dumps({"format": self.fmt, "pid": os.getpid(), "n": n, "kind": kind, "key": key,
                                  "detail": detail}) + "\n")
        print(f"\n[finding] {self.fmt}-{n:03d} {key}\n{detail}", file=sys.stderr, flush=True)

    def write_summary(self) -> None:
        summary = {"format": self.fmt, "inputs": self.inputs, "outcomes": self.outcomes, "findings": self.seen}
        (self.findings / f"summary-{self.fmt}-{os.getpid()}.json").write_text(json.dumps(summary, indent=1) + "\n")


def detected(path: Path) -> str | None:
    """The format filtergrid detects for ``path``, or None."""
    try:
        return converters.detect(path).name
    except Exception:  # noqa: BLE001 - unreadable seeds are simply not seeds
        return None


def seed_files(fmt: str, extra_dirs: list[Path]) -> list[Path]:
    """Fixtures of ``fmt`` and files under ``extra_dirs`` that filtergrid detects as ``fmt``."""
    candidates = hostile_corpus.manifest_files()
    for folder in extra_dirs:
        candidates += sorted(p for p in folder.rglob("*") if p.is_file())
    return [p for p in candidates if detected(p) == fmt]


#: Formats whose model file is read together with a companion file (weights beside a graph).
COMPANION_FORMATS = ("openvino", "ncnn", "darknet", "paddle-inference")


def place_companions(seed: Path, folder: Path) -> Path:
    """Copy ``seed``'s companions (siblings sharing its name up to the first dot, e.g. conv.xml's
    conv.bin) into ``folder`` as ``model.*``; return where the mutated seed goes."""
    prefix = seed.name.split(".")[0]
    for sibling in seed.parent.glob(f"{prefix}.*"):
        if sibling != seed and not sibling.name.endswith(".expected.npz"):
            shutil.copyfile(sibling, folder / ("model" + sibling.name[len(prefix):]))
    return folder / ("model" + seed.name[len(prefix):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("format", choices=[f.name for f in converters.FORMATS])
    parser.add_argument("--seeds", type=Path, action="append", default=[], help="more seed folders")
    parser.add_argument("--findings", type=Path, default=Path("fuzz-findings"))
    parser.add_argument("--slow", type=float, default=2.0,
                        help="seconds (plus 1 s per MB of input) after which an input is a finding")
    parser.add_argument("--memory-factor", type=int, default=64,
                        help="a load allocating more than BASE + FACTOR x the input's size is a finding")
    parser.add_argument("--memory-base-mb", type=int, default=64)
    parser.add_argument("--no-render", action="store_true", help="only load, do not render")
    parser.add_argument("--max-seed-bytes", type=int, default=256 * 1024,
                        help="skip larger seeds (libFuzzer would cut them at -max_len)")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="persistent corpus folder (kept between runs; seeds are copied in)")
    ours, libfuzzer = parser.parse_known_args()
    fmt = converters.BY_NAME[ours.format]
    seeds = [p for p in seed_files(fmt.name, ours.seeds) if p.stat().st_size <= ours.max_seed_bytes]
    if not seeds:
        sys.exit(f"no seed files of format {fmt.name}")
    work = Path(tempfile.mkdtemp(prefix=f"fg-fuzz-{fmt.name}-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    corpus = ours.corpus or work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(seeds):
        shutil.copyfile(path, corpus / f"seed{i}{path.suffix}")
    target = work / "input" / f"model{fmt.suffixes[0] if fmt.suffixes else seeds[0].suffix}"
    target.parent.mkdir()
    if fmt.name in COMPANION_FORMATS:  # the mutated file is read with the first seed's real companions
        target = place_companions(seeds[0], target.parent)
    recorder = Recorder(ours.findings, fmt.name)

    page = os.sysconf("SC_PAGE_SIZE")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)

    def memory_budget(data: bytes) -> None:
        """Allow this input what the process maps now plus its budget: an allocation past it fails."""
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * page
        budget = mapped + ours.memory_base_mb * 2**20 + ours.memory_factor * len(data)
        resource.setrlimit(resource.RLIMIT_AS, (budget if hard == resource.RLIM_INFINITY else min(budget, hard), hard))

    def over_budget(data: bytes, start: float) -> None:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        elapsed, allowed = time.monotonic() - start, ours.slow + len(data) / 2**20
        if elapsed > allowed:
            recorder.record("slow", f"{elapsed:.0f}s", data, f"{len(data)} bytes took {elapsed:.1f} s (> {allowed:.1f})")

    def outcome_of(data: bytes, work) -> object:
        """Run ``work()``; record what a contract-breaking outcome looks like; None when it failed."""
        try:
            return work()
        except FiltergridError as e:
            recorder.count(type(e).__name__)
            if safety_net_fired(e):
                recorder.record("safety-net", signature(e), data, str(e))
            elif "ran out of memory" in str(e):
                recorder.record("memory", signature(e), data, str(e))
        except Exception as e:  # noqa: BLE001 - the contract says this never happens: a finding
            recorder.count("other")
            recorder.record("exception", signature(e), data, "".join(traceback.format_exception(e))[-3000:])
        return None

    def one_input(data: bytes) -> None:
        target.write_bytes(data)
        memory_budget(data)
        start = time.monotonic()
        bank = outcome_of(data, lambda: filtergrid.load(target))
        over_budget(data, start)  # the budget is for reading the file, whether it loads or fails
        if bank is not None and (ours.no_render or outcome_of(data, lambda: render_result(bank, RenderOptions()))):
            recorder.count("bank")

    print(f"fuzzing {fmt.name} from {len(seeds)} seeds: {', '.join(p.name for p in seeds)}", file=sys.stderr)
    atheris.Setup([sys.argv[0], *libfuzzer, str(corpus)], one_input)
    atheris.Fuzz()  # does not return: libFuzzer exits when its -runs or -max_total_time are used up


if __name__ == "__main__":
    main()
