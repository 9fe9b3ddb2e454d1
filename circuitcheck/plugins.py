"""Discovery of extensions: every module of a built-in package, plus entry points.

Adding a claim kind, metric or dataset kind is one new file in its package (or
a third-party module named in the ``circuitcheck.plugins`` entry-point group);
no list elsewhere needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

_loaded = False


def import_package_modules(package: str) -> None:
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{info.name}")


def load_extensions() -> None:
    """Import every built-in extension module and every registered plug-in, once."""
    global _loaded
    if _loaded:
        return
    for package in ("circuitcheck.metrics", "circuitcheck.data", "circuitcheck.claims"):
        import_package_modules(package)
    for ep in entry_points(group="circuitcheck.plugins"):
        ep.load()
    _loaded = True
