"""The source of filtergrid/ never calls what runs code from a file, and never imports a framework.

A grep, deliberately dumb: a call that deserializes arbitrary objects (pickle, torch.load,
np.load with pickles allowed, eval/exec, yaml.load, marshal) anywhere under filtergrid/ fails
unless it is listed in ALLOWED with the reason it is safe.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "filtergrid"

#: pattern name -> regex; a match anywhere in a source line (comments included: keep them honest too).
UNSAFE = {
    "pickle.load": re.compile(r"\b(c?pickle|_pickle|dill|cloudpickle|joblib)\.loads?\("),
    "Unpickler": re.compile(r"\bpickle\._?Unpickler\b"),
    "torch.load": re.compile(r"\btorch\.(jit\.)?load\(|\bfrom\s+torch(\.jit)?\s+import\s+load\b"),
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "eval": re.compile(r"(?<![\w.])eval\("),
    "exec": re.compile(r"(?<![\w.])exec\("),
    "yaml.load": re.compile(r"\byaml\.(load|unsafe_load|full_load)\("),
    "marshal.load": re.compile(r"\bmarshal\.loads?\("),
    "shelve": re.compile(r"\bshelve\.open\("),
}

#: Frameworks filtergrid reads the files of but must never need at run time: imported directly, or
#: by name through importlib or base.require.
FRAMEWORKS = r"(torch\w*|tensorflow\w*|keras|tf_keras|jax)"
FRAMEWORK_IMPORT = re.compile(rf"^\s*(import|from)\s+{FRAMEWORKS}\b"
                              rf"|(import_module|require|__import__)\(\s*[\"']{FRAMEWORKS}\b", re.MULTILINE)

#: (file relative to filtergrid/, pattern name) -> why this use is safe.
ALLOWED = {
    ("safepickle.py", "Unpickler"): (
        "the restricted unpickler subclasses pickle's pure-Python Unpickler and replaces find_class, "
        "persistent_load and the opcodes that call objects with an allow-list: no global outside it "
        "is ever resolved"),
}


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _hits(path: Path) -> list[tuple[str, int, str]]:
    rel = path.relative_to(PACKAGE).as_posix()
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for name, pattern in UNSAFE.items():
            if pattern.search(line) and (rel, name) not in ALLOWED and (path.name, name) not in ALLOWED:
                found.append((name, number, line.strip()))
    return found


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_call_that_runs_code_from_a_file(path):
    hits = _hits(path)
    assert not hits, "unsafe deserialization in filtergrid/" + path.relative_to(PACKAGE).as_posix() + ": " + \
        "; ".join(f"line {n}: {name} in {line!r}" for name, n, line in hits)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_framework_import(path):
    match = FRAMEWORK_IMPORT.search(path.read_text(encoding="utf-8"))
    assert match is None, f"{path.name} imports a framework ({match.group(0).strip()!r}); filtergrid must run without it"


def test_the_grep_catches_what_it_should():
    """The patterns themselves: each unsafe spelling is caught, the safe look-alikes are not."""
    unsafe = ["pickle.load(f)", "pickle.loads(b)", "torch.load(p)", "np.load(p, allow_pickle=True)",
              "eval(s)", "exec(code)", "yaml.load(s)", "marshal.loads(b)", "x = pickle.Unpickler(f)",
              "torch.jit.load(p)", "joblib.load(p)", "class U(pickle._Unpickler):", "from torch import load"]
    safe = ["model.eval()", "np.load(p, allow_pickle=False)", "yaml.safe_load(s)", "unpickler.load()",
            "ast.literal_eval(s)", "self.exec_module(m)", "pickletools.genops(data)",
            'DENY = ("torch.load", "torch.hub")']
    for line in unsafe:
        assert any(p.search(line) for p in UNSAFE.values()), line
    for line in safe:
        assert not any(p.search(line) for p in UNSAFE.values()), line
    for line in ("import torch", "from tensorflow import lite", "  import keras", "import_module('torch')",
                 'require("tensorflow", "tf")', "import torchvision"):
        assert FRAMEWORK_IMPORT.search(line + "\n"), line
    for line in ("import onnx", "x = 'import torch'", "from .torch_objects import rebuild", 'require("tflite", "tflite")'):
        assert not FRAMEWORK_IMPORT.search(line + "\n"), line
