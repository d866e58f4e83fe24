"""Every ``filtergrid: error:`` line the CLI prints for files a user might throw at it, collected.

Inputs: the whole hostile corpus (tests/hostile_corpus.py: every fixture truncated and byte-flipped,
noise behind magic bytes, empty files, folders, crafted attacks), the hostile pickles of
tests/hostile.py inside a real torch zip and a real legacy file, and files of other kinds (a PNG, a
JPEG, a PDF, a gzip, a tar, text, JSON, a folder of notes). Each runs through the real CLI entry
point (``filtergrid.cli.main``) in this process: the same words as a shell, without starting Python
per file. tests/test_error_messages.py asserts every line is in the user's terms.

Lives beside hostile_corpus.py (a helper of the tests, not a benchmark): the test imports it, and
``python tests/error_messages.py [--commands render,inspect]`` prints the distinct messages, with
counts and one example input each, for a person to read. The other hostile tests build their files
inside each test; ``FILTERGRID_ERRORS_OUT=lines.tsv python -m pytest -p error_messages tests/...``
records the error lines they meet, and ``python tests/error_messages.py --lines lines.tsv`` lists them.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import signal
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import hostile_corpus as corpus
import numpy as np
from hostile import LEGACY_PAYLOADS, PAYLOADS, legacy_file, torch_zip

from filtergrid import cli

REAL_ZIP = corpus.FIXTURES / "pytorch" / "state_dict.pt"
REAL_LEGACY = corpus.FIXTURES / "pytorch" / "state_dict_legacy.pth"
PREFIX = "filtergrid: error: "
#: Longest error line accepted (untrusted names inside are bounded by filtergrid.untrusted; the
#: longest honest line lists every format for an unknown ``--format``).
MAX_LINE = 1200
#: Generous: time bounds are test_hostile.py's to check; here a slow run on a busy machine must not fail.
SECONDS_PER_RUN = 60

#: Words of filtergrid's (or Python's) insides that mean nothing to someone holding a model file.
JARGON = re.compile("|".join((
    r"wire type", r"\bfield \d+", r"\bvarint\b", r"\btag \d+",
    r"\b(?:Model|Graph|Node|Tensor|Attribute|Function|Value|Saved|Meta|Net|Layer|Blob)(?:Proto|Def|Parameter)\b",
    r"\b(?:SavedModel|MetaGraph|Bundle|Checkpoint)Proto\b", r"\bBundleEntryProto\b",
    r"\b[A-Z]\w*(?:Error|Exception)\b", r"\bTraceback\b", r"\bunpack", r"\bstruct\b",
    r"\bpop from\b", r"index out of range", r"<class ", r"\bNoneType\b", r"has no attribute",
    r"not subscriptable", r"unhashable type", r"takes \d+ positional", r"\binternal error\b",
    r"\binvalid literal for int\b", r"codec can.t decode",
)))


class RanTooLong(BaseException):
    """A run went past SECONDS_PER_RUN (a BaseException, so the CLI's safety net cannot word it)."""


def _expired(signum, frame):
    raise RanTooLong()


def run_cli(argv: list[str]) -> str | None:
    """The CLI's error line for ``argv`` (None when it succeeded), run in this process."""
    stderr = io.StringIO()
    previous = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(SECONDS_PER_RUN)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            cli.main(argv)
    except SystemExit as e:
        if e.code == 0:
            return None
    except RanTooLong:
        return f"(no answer within {SECONDS_PER_RUN} s)"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    lines = stderr.getvalue().strip().splitlines()
    return "\n".join(lines) if lines else f"(exit without a message: {stderr.getvalue()!r})"


def _file(name: str, data: bytes) -> corpus.Case:
    return corpus.Case(name, corpus._file(name.rsplit("/", 1)[-1], data))


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out, "PNG")
    return out.getvalue()


def _tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("notes.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    return out.getvalue()


def _notes_folder(folder: Path) -> Path:
    (folder / "notes").mkdir()
    (folder / "notes" / "README.md").write_text("# my model\n")
    return folder / "notes"


def other_kinds() -> Iterator[corpus.Case]:
    """Files that are no model: pictures, documents, archives, text under model-like names."""
    yield _file("kind/picture.png", _png())
    yield _file("kind/picture-named.onnx", _png())
    yield _file("kind/photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64))
    yield _file("kind/paper.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    yield _file("kind/weights.gz", gzip.compress(b"not a model\n" * 10))
    yield _file("kind/archive.tar", _tar())
    yield _file("kind/notes.txt", b"hello\n")
    yield _file("kind/notes-named.pt", b"hello, this is text\n")
    yield _file("kind/notes-named.pb", b"hello, this is text\n")
    yield _file("kind/notes-named.h5", b"hello, this is text\n")
    yield _file("kind/config.json", b'{"model_type": "bert"}')
    yield _file("kind/table.csv", b"a,b\n1,2\n")
    yield corpus.Case("kind/folder-of-notes", _notes_folder)
    yield corpus.Case("kind/empty-folder", lambda folder: folder)


def pickle_cases() -> Iterator[corpus.Case]:
    """tests/hostile.py's pickles inside a real torch.save zip and a real legacy torch file."""
    for name, data in sorted(PAYLOADS.items()):
        yield corpus.Case(f"pickle-zip/{name}", lambda folder, d=data: torch_zip(REAL_ZIP, folder / "model.pt", d))
    for name, data in sorted(LEGACY_PAYLOADS.items()):
        yield corpus.Case(f"pickle-legacy/{name}",
                          lambda folder, d=data: legacy_file(REAL_LEGACY, folder / "model.pth", d))


def inputs() -> list[corpus.Case]:
    """Everything the collector runs: the hostile corpus, the hostile pickles, other kinds of file."""
    return corpus.cases() + list(pickle_cases()) + list(other_kinds())


def normalise(line: str, path: Path | None) -> str:
    """``line`` with the input's path and every number made generic, so alike messages group."""
    if path is not None:
        line = line.replace(str(path), "<file>").replace(str(path.parent), "<folder>")
    line = re.sub(r"/tmp/[^\s:,']+", "<path>", line)
    line = re.sub(r"starts with [^);]*", "starts with ...", line)
    line = re.sub(r"'(?:[^'\\]|\\.)*'", "'...'", line)
    line = re.sub(r"0x[0-9a-fA-F]+", "N", line)
    return re.sub(r"\d[\d,._]*", "N", line)


def collect(cases: list[corpus.Case], workdir: Path, commands: tuple[str, ...] = ("render", "inspect"),
            ) -> Iterator[tuple[str, str, Path, str]]:
    """(case name, command, input path, error line) for every run that failed."""
    for i, case in enumerate(cases):
        folder = workdir / f"{i:04d}"
        folder.mkdir(parents=True)
        path = case.make(folder)
        for command in commands:
            extra = ["-o", str(folder / "out.png")] if command == "render" else []
            line = run_cli([command, str(path), *extra])
            if line is not None:
                yield case.name, command, path, line


def problems(line: str) -> list[str]:
    """What is wrong with one error line (empty when it is in the user's terms)."""
    found = []
    if "\n" in line or not line.startswith(PREFIX):
        found.append("not one 'filtergrid: error:' line")
    if len(line) > MAX_LINE:
        found.append(f"{len(line)} characters long")
    found += [f"says {m.group()!r}" for m in JARGON.finditer(line)]
    return found


def pytest_configure(config) -> None:
    """As a pytest plugin (``-p error_messages`` with FILTERGRID_ERRORS_OUT=FILE): append every error
    line the tests meet to FILE, from CLI runs in child processes (``subprocess.run``) and from
    FiltergridErrors read in-process, so the builders of the other hostile tests feed the list too."""
    import os
    import subprocess

    from filtergrid.errors import FiltergridError

    out = os.environ.get("FILTERGRID_ERRORS_OUT")
    if not out:
        return
    real_run, real_str = subprocess.run, FiltergridError.__str__

    def record(text: str, test: str) -> None:
        with open(out, "a", encoding="utf-8") as f:
            f.write(f"{test}\t{' '.join(text.split())}\n")

    def run(*args, **kwargs):
        result = real_run(*args, **kwargs)
        stderr = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else result.stderr or ""
        for line in stderr.splitlines():
            if line.startswith(PREFIX):
                record(line, os.environ.get("PYTEST_CURRENT_TEST", "?"))
        return result

    def words(error) -> str:
        text = real_str(error)
        record(PREFIX + text, os.environ.get("PYTEST_CURRENT_TEST", "?"))
        return text

    subprocess.run, FiltergridError.__str__ = run, words


def _summary(rows: Iterator[tuple[str, str, Path | None]]) -> None:
    """Distinct messages (numbers and paths made generic), with counts and one example each."""
    counts: Counter[str] = Counter()
    examples: dict[str, tuple[str, str]] = {}
    for example, line, path in rows:
        key = normalise(line, path)
        counts[key] += 1
        examples.setdefault(key, (example, line))
    bad = 0
    for key, count in counts.most_common():
        flagged = problems(examples[key][1])
        bad += bool(flagged)
        print(f"{count:5d}  {'JARGON ' if flagged else ''}{key}\n       e.g. {examples[key][0]}")
    print(f"{len(counts)} distinct messages, {sum(counts.values())} failing runs, {bad} not in the user's terms")


def main(argv: list[str]) -> None:
    import tempfile

    if "--lines" in argv:  # a file written by the pytest plugin above: "test<TAB>line" rows
        rows = Path(argv[argv.index("--lines") + 1]).read_text(encoding="utf-8").splitlines()
        _summary((test, line, None) for test, _, line in (row.partition("\t") for row in rows))
        return
    commands = tuple(argv[argv.index("--commands") + 1].split(",")) if "--commands" in argv else ("render", "inspect")
    with tempfile.TemporaryDirectory(prefix="fg-errors-") as work:
        _summary((f"{command} {name}", line, path)
                 for name, command, path, line in collect(inputs(), Path(work), commands))


if __name__ == "__main__":
    main(sys.argv[1:])
