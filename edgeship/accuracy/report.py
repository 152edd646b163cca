"""Per-layer error reports: the table, and their place in the eval report data.

They live in ``build/reports/eval.json`` under an optional top-level ``"layers"`` key (additive
to schema ``edgeship.eval/2``): ``{"<artifact name>": {"artifact_digest", "target", "precision",
"cpu_class", "samples", "build", "kept_float", "ranking_metric", "created", "layers": [LayerError
as JSON, worst first]}}``. ``edgeship eval`` keeps the section when it merges; the HTML report
plots the worst 20 of each artifact.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any

from edgeship.accuracy.layers import LayerError, worst_first
from edgeship.config import Config

RANKING_METRIC = ("gain_if_float: relative reduction of the output error (1 - cosine mean) when that layer "
                  "alone stays float, measured on the artifact's CPU class; layers not measured follow, lowest SQNR first")


def layers_json(errors: list[LayerError]) -> list[dict[str, Any]]:
    out = []
    for e in worst_first(errors):
        d = e.to_json()
        if isinstance(d["sqnr_db"], float) and not math.isfinite(d["sqnr_db"]):
            d["sqnr_db"] = None    # JSON has no NaN/inf
        out.append(d)
    return out


def layer_record(artifact_dir: Path, errors: list[LayerError], samples: int, build: str) -> dict[str, Any]:
    from edgeship.artifact.atomic import sha256_file
    from edgeship.artifact.manifest import read_manifest

    m = read_manifest(artifact_dir, verify=False)
    return {
        "artifact_digest": sha256_file(artifact_dir / "manifest.json"), "target": m.target, "precision": m.precision,
        "cpu_class": (m.built_for or {}).get("cpu_class"), "samples": samples, "build": build,
        "kept_float": list(m.recipe.get("kept_float") or ()), "ranking_metric": RANKING_METRIC,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "layers": layers_json(errors),
    }


def store_layers(cfg: Config, artifact: str, record: dict[str, Any]) -> Path:
    """Write ``record`` as ``layers[artifact]`` of eval.json (a minimal v2 file when there is none)."""
    from edgeship.artifact.atomic import exclusive, write_json_atomic
    from edgeship.artifact.eval_file import SCHEMA, eval_path, load_eval

    with exclusive(eval_path(cfg).parent):   # eval's merge holds it too: neither loses the other's write
        data = load_eval(cfg) or {"schema": SCHEMA, "model": cfg.model.name, "config_digest": cfg.digest,
                                  "samples": 0, "reference": {"accuracy": None}, "entries": {}}
        data.setdefault("layers", {})[artifact] = record
        data.pop("updated", None)
        write_json_atomic(eval_path(cfg), data)
    return eval_path(cfg)


def format_layers(rows: list[dict[str, Any]], limit: int | None = None, wide: bool = False) -> str:
    """The ranking as a table that fits the terminal (edgeship.ui.table); ``wide``: every column in full."""
    from edgeship.ui.table import Column, Table

    table = Table([
        Column("rank", "#", "number"), Column("layer", "layer"), Column("op_type", "op", priority=2),
        Column("module", "module", priority=1, wrap=True), Column("sqnr_db", "SQNR dB", "number", fmt="{:.1f}"),
        Column("gain_if_float", "gain if float", "number", fmt=lambda v: f"{100 * v:+.1f}%"),
    ])
    for i, r in enumerate(rows[:limit] if limit else rows, start=1):
        table.add_row(rank=i, layer=r["layer"], op_type=r["op_type"], module=r.get("module") or "-",
                      sqnr_db="-" if r.get("sqnr_db") is None else r["sqnr_db"],
                      gain_if_float="-" if r.get("gain_if_float") is None else r["gain_if_float"])
    return str(table.render(None, wide=wide))
