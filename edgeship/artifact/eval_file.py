"""build/reports/eval.json: where eval's evidence lives, its schema and how it is read.

eval (edgeship/measure/evaluate.py) merges its entries into it; the per-layer INT8 report
(edgeship/accuracy/report.py) stores its ranking under ``layers``; the gate reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeship.config import Config
from edgeship.errors import ArtifactError
from edgeship.untrusted import UntrustedJSONError, loads

SCHEMA = "edgeship.eval/2"


def eval_path(cfg: Config) -> Path:
    return cfg.build / "reports" / "eval.json"


def entry_key(device: str, artifact: str) -> str:
    return f"{device}/{artifact}"


def load_eval(cfg: Config, on_event: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The v2 eval.json, or None when absent (or of an older schema, which is replaced)."""
    path = eval_path(cfg)
    if not path.is_file():
        return None
    try:
        data = loads(path.read_bytes())
    except UntrustedJSONError as exc:   # not UTF-8, not JSON, NaN, nested too deep
        raise ArtifactError(f"{path}: unreadable ({exc}); delete it and run 'edgeship eval' again") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("entries"), dict):
        if on_event is not None:
            on_event(f"{path}: schema {data.get('schema') if isinstance(data, dict) else None!r} has no digests; "
                     f"replaced by {SCHEMA}")
        return None
    return data
