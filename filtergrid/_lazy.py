"""A module-level ``__getattr__`` (PEP 562) that imports a public name's module on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, exports: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """``__getattr__`` for ``package``: ``exports`` maps a public name to the submodule defining it.

    The value is bound into ``namespace`` once imported, so a later submodule import that binds the
    submodule's own name (``render.save``) cannot shadow the function of that name.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        namespace[name] = value
        return value

    return __getattr__
