"""edgeship: export PyTorch models for the edge, profile them on devices, gate releases.

The Python API mirrors the CLI verbs; each accepts a Config or a path to edgeship.toml::

    import edgeship
    cfg = edgeship.load_config("edgeship.toml")
    manifests = edgeship.export(cfg, target="tflite", precision="int8")
    results = edgeship.profile(cfg, device="local")
    report = edgeship.gate(cfg)

Names are resolved lazily so ``import edgeship`` stays cheap (no torch, no backends).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_config": "edgeship.config",
    "export": "edgeship.api",
    "evaluate": "edgeship.api",
    "profile": "edgeship.api",
    "gate": "edgeship.api",
    "compare": "edgeship.api",
    "ExportIncomplete": "edgeship.exporting.failures",
    "ExportFailure": "edgeship.exporting.failures",
}

__all__ = ["ExportFailure", "ExportIncomplete", "compare", "evaluate", "export", "gate", "load_config", "profile"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'edgeship' has no attribute {name!r}")
