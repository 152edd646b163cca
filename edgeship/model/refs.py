"""Resolve "pkg.module:function" references from the config.

A module next to edgeship.toml resolves without PYTHONPATH, as pytest, uvicorn and most
config-driven tools do: the config's directory goes first on ``sys.path`` while the reference
is imported, and is taken off again afterwards (what was imported stays imported).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgeship.errors import ConfigError


@contextlib.contextmanager
def importable_from(root: Path | None) -> Iterator[None]:
    """``root`` first on sys.path for the duration (nothing changes when it is already there)."""
    entry = str(Path(root).resolve()) if root is not None else None
    if entry is None or entry in sys.path:
        yield
        return
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def resolve_callable(ref: str, key: str, root: Path | None = None) -> Callable[..., Any]:
    """Import ``pkg.module:attr`` (modules in ``root``, the config's directory, included); errors
    name the config key and what is wrong."""
    mod_name, sep, attr = ref.partition(":")
    if not sep or not mod_name or not attr:
        raise ConfigError(f"key '{key}': {ref!r} is not of the form \"pkg.module:function\"")
    try:
        with importable_from(root):
            module = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        where = f"next to the config ({root}) or on PYTHONPATH" if root is not None else "on PYTHONPATH"
        raise ConfigError(f"key '{key}': cannot import module '{mod_name}' ({exc}); is it {where}?") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            import difflib

            near = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean '{mod_name}:{near[0]}'?" if near else ""
            raise ConfigError(f"key '{key}': module '{mod_name}' has no attribute '{attr}'{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"key '{key}': '{ref}' is not callable")
    return obj
