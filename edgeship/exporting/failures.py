"""Failed exports: what the pipeline could not build, on disk where the gate can see it.

``export`` attempts every requested artifact; one that fails leaves no artifact directory
(writes are atomic) but a small record ``build/export-failures/<model>/<name>.json``. The
gate reads these records so a budget on a failed artifact is a FAIL row naming the command
to re-run, never a dropped check. A later successful export of that artifact removes its
record. Kept outside ``build/artifacts`` so artifact listings stay artifacts only.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path

from edgeship.artifact.atomic import write_json_atomic
from edgeship.artifact.manifest import Manifest
from edgeship.config import Config
from edgeship.errors import ExportError

SCHEMA = "edgeship.export-failure/1"


@dataclass(frozen=True)
class ExportFailure:
    """One requested artifact that was not built, and why (the error's one line)."""

    name: str           # artifact name (contract 5): <target>-<precision>[@<class>]
    target: str
    precision: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "target": self.target, "precision": self.precision, "reason": self.reason}


class ExportIncomplete(ExportError):
    """Some requested artifacts were not built; ``built`` holds the manifests of the others.

    Raised by ``edgeship.export`` after every artifact was attempted. Exit code 1 (contract 6):
    the input was fine, some conversions were not.
    """

    exit_code = 1

    def __init__(self, built: list[Manifest], failures: list[ExportFailure]) -> None:
        total = len(built) + len(failures)
        lines = "; ".join(f"{f.name}: {f.reason}" for f in failures)
        super().__init__(f"{len(failures)} of {total} artifact(s) failed to export: {lines}")
        self.built = built
        self.failures = failures


def failures_dir(cfg: Config) -> Path:
    return cfg.build / "export-failures" / cfg.model.name


def record_failure(cfg: Config, failure: ExportFailure) -> Path:
    path = failures_dir(cfg) / f"{failure.name}.json"
    write_json_atomic(path, {
        "schema": SCHEMA, "model": cfg.model.name, **failure.to_dict(), "config_digest": cfg.digest,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    return path


def clear_failure(cfg: Config, name: str) -> None:
    (failures_dir(cfg) / f"{name}.json").unlink(missing_ok=True)


def load_failures(cfg: Config) -> list[ExportFailure]:
    """Every failure record of the configured model; an unreadable record still counts as a failure."""
    root = failures_dir(cfg)
    if not root.is_dir():
        return []
    out: list[ExportFailure] = []
    for path in sorted(root.glob("*.json")):
        name = path.name[: -len(".json")]
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            out.append(ExportFailure(name, str(data["target"]), str(data["precision"]), str(data["reason"])))
        except (OSError, ValueError, KeyError, TypeError):
            target, _, precision = name.partition("@")[0].partition("-")
            out.append(ExportFailure(name, target, precision, f"unreadable failure record {path}"))
    return out


@dataclass(frozen=True)
class ExportSummary:
    """Every requested artifact in plan order: (name, its manifest) or (name, its failure)."""

    entries: tuple[tuple[str, Manifest | ExportFailure], ...]

    @property
    def built(self) -> list[Manifest]:
        return [e for _, e in self.entries if isinstance(e, Manifest)]

    @property
    def failures(self) -> list[ExportFailure]:
        return [e for _, e in self.entries if isinstance(e, ExportFailure)]

    def rows(self, why_width: int = 72) -> list[tuple[str, str, str]]:
        """(artifact, built|failed, size or why) per requested artifact, for a table renderer."""
        out = []
        for name, e in self.entries:
            if isinstance(e, Manifest):
                out.append((name, "built", f"{e.size_bytes / 1024:.1f} KiB"))
            else:
                why = e.reason if len(e.reason) <= why_width else e.reason[: why_width - 3] + "..."
                out.append((name, "failed", why))
        return out
