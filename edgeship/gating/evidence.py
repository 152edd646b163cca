"""The evidence chain: which measurement may stand for which artifact, and what to re-run.

An artifact's digest is the sha256 of its ``manifest.json`` bytes (the manifest holds the
sha256 of every file, so the digest covers the whole artifact). Every profile result and
every eval entry records the digest of the artifact it measured (``artifact_digest``) and the
config digest it ran under (``config_digest``). The gate re-reads the artifacts on disk and
accepts a piece of evidence only when its artifact digest matches:

- no evidence at all                      -> FAIL, "run `<command>`"
- evidence without an artifact digest     -> FAIL (stale: written before digests existed)
- evidence with another artifact digest   -> FAIL (stale: measured on another build)
- evidence with another config digest     -> a warning, not a FAIL: the config digest covers
  ``[[budgets]]`` and ``[gate]`` too, so tightening a budget must not void every measurement;
  what was measured is pinned by the artifact digest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from edgeship.config import Config

EVAL_SCHEMA_V1 = "edgeship.eval/1"
EVAL_SCHEMA_V2 = "edgeship.eval/2"


def judged_artifact(cfg: Config, device: str, target: str, precision: str) -> str:
    """The name of the artifact judged on ``device`` for ``target``/``precision``.

    The build made for the device's CPU class (``<target>-<precision>@<class>``, contract 5)
    when one is on disk, else the default-class one ``<target>-<precision>``: the same choice
    ``profile`` makes, so the gate asks for evidence of the artifact that ships to the device.
    """
    from edgeship.exporting.failures import failures_dir
    from edgeship.measure.profile import known_device_class

    cls = known_device_class(cfg, device)
    name = f"{target}-{precision}@{cls}"
    # a failed build for the class is judged (as failed) too, and so is one whose name leads nowhere
    # (a dangling link): neither may be replaced by the default-class one
    if cls is not None and (os.path.lexists(cfg.artifacts_dir / name) or (failures_dir(cfg) / f"{name}.json").is_file()):
        return name
    return f"{target}-{precision}"


def promised_artifacts(cfg: Config) -> list[tuple[str, str]]:
    """(target, precision) of every artifact the config promises: what a plain ``edgeship export``
    builds (``[targets.*] precisions``). The gate asks for each of these whether or not it is on
    disk, so an artifact that is missing (removed, a dangling link, an interrupted export) is a
    FAIL row naming the export command, never a check that silently disappears."""
    from edgeship.exporting.pipeline import plan

    return [(t.value, p.value) for t, p in plan(cfg, None, None)]


def export_command(target: str, precision: str) -> str:
    return f"edgeship export --target {target} --precision {precision}"


def profile_command(device: str, target: str, precision: str) -> str:
    return f"edgeship profile --device {device} --target {target} --precision {precision}"


def eval_command(device: str, target: str, precision: str) -> str:
    on = "" if device in ("local", "*") else f" --device {device}"
    return f"edgeship eval{on} --target {target} --precision {precision}"


def eval_entries(report: dict[str, Any] | None) -> dict[tuple[str, str], dict[str, Any]]:
    """eval.json as {(device, artifact name): entry}, for schema v2 and the older v1.

    v1 (``artifacts``: name -> entry) was measured in-process on this host, so its entries are
    device ``local``; they carry no artifact digest, so the gate treats them as stale.
    """
    if not isinstance(report, dict):
        return {}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if report.get("schema") == EVAL_SCHEMA_V1:
        for name, e in (report.get("artifacts") or {}).items():
            if isinstance(e, dict):
                out[("local", name)] = {**e, "device": "local", "artifact": name}
        return out
    for key, e in (report.get("entries") or {}).items():
        if not isinstance(e, dict):
            continue
        device, _, name = str(key).partition("/")
        out[(str(e.get("device") or device), str(e.get("artifact") or name))] = e
    return out


@dataclass(frozen=True)
class Staleness:
    """Why a piece of evidence cannot stand for the artifact on disk (empty: it can)."""

    reason: str = ""
    config_changed: bool = False

    @property
    def stale(self) -> bool:
        return bool(self.reason)


def _short(digest: str | None) -> str:
    return (digest or "none")[:12]


def check_evidence(recorded_digest: str | None, recorded_config: str | None, digest: str,
                   cfg: Config, what: str) -> Staleness:
    """Compare the digests a piece of evidence recorded with the artifact on disk now.

    ``what`` names the evidence ("profile result for tflite-int8 on local").
    """
    if not recorded_digest:
        return Staleness(f"stale {what}: it records no artifact digest (written by an older edgeship)")
    if recorded_digest != digest:
        return Staleness(f"stale {what}: from another build (digest {_short(recorded_digest)}, "
                         f"artifact on disk {_short(digest)})")
    return Staleness(config_changed=bool(recorded_config) and bool(cfg.digest) and recorded_config != cfg.digest)


def config_warning(count: int) -> str:
    return (f"{count} piece(s) of evidence were measured under another edgeship.toml (config digest "
            "differs); expected after editing [[budgets]], but re-run profile/eval if [profile], "
            "[data] or [devices] changed")
