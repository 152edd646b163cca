"""Resolve "pkg.module:function" references from the config."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from edgeship.errors import ConfigError


def resolve_callable(ref: str, key: str) -> Callable[..., Any]:
    """Import ``pkg.module:attr``; errors name the config key and what is wrong."""
    mod_name, sep, attr = ref.partition(":")
    if not sep or not mod_name or not attr:
        raise ConfigError(f"key '{key}': {ref!r} is not of the form \"pkg.module:function\"")
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"key '{key}': cannot import module '{mod_name}' ({exc}); is it on PYTHONPATH?") from None
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
