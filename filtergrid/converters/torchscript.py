"""TorchScript modules (``torch.jit.save``), read as data: parameters from ``data.pkl``, never ``code/``.

A TorchScript archive is a torch zip whose ``data.pkl`` pickles the module as ``__torch__.*``
objects whose state is their attribute dict (``conv1`` -> a submodule, ``weight`` -> a tensor).
The unpickler turns them into placeholders and the shared walk names tensors ``conv1.weight``.
The Python-like code under ``code/`` is what ``torch.jit.load`` would compile; it is never read.
"""

from __future__ import annotations

from ..safeio import ModelPath, model_path
from .base import Probe
from .pytorch import TorchReader, archive_prefix, open_archive


def sniff(probe: Probe) -> bool:
    prefix = archive_prefix(probe.zip_names)
    return prefix is not None and f"{prefix}/constants.pkl" in probe.zip_names and any(
        name.startswith(f"{prefix}/code/") for name in probe.zip_names)


def open(path: ModelPath) -> TorchReader:
    return open_archive(model_path(path), "TorchScript module")
