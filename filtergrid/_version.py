"""The package version, in one place: read by ``pyproject.toml`` at build time and by ``filtergrid.__version__``.

A constant rather than ``importlib.metadata.version()``, which costs 20-40 ms of start-up on every run.
"""

__version__ = "0.1.0"
