"""Lazy imports of heavy optional dependencies.

``edgeship --help`` must not import torch or any backend. Backends call ``require`` at the
point of use; a missing module becomes one MissingDependency line naming the extra. Only
ModuleNotFoundError *for that module* is mapped: a broken install (an ImportError inside
the package) propagates, so it is never mistaken for a missing one.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise MissingDependency telling which extra to install."""
    from edgeship.errors import MissingDependency

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] == top:
            raise MissingDependency(module, extra, purpose) from exc
        raise
