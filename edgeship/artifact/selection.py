"""Which targets x precisions a command works on: parsed once from CLI/API strings."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edgeship.artifact.manifest import Manifest, read_manifest
from edgeship.config import Config
from edgeship.errors import ArtifactError, UsageError
from edgeship.types import Precision, Target


def _parse(value: str | Iterable[str] | None, enum: type, what: str) -> tuple | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [str(i).strip() for i in items if str(i).strip()]
    if not items or "all" in items:
        return None
    out = []
    for item in items:
        try:
            out.append(enum(item))
        except ValueError:
            choices = [e.value for e in enum] + ["all"]
            near = difflib.get_close_matches(item, choices, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise UsageError(f"unknown {what} '{item}' (choose from {', '.join(choices)}){hint}") from None
    return tuple(dict.fromkeys(out))


def parse_targets(value: str | Iterable[str] | None) -> tuple[Target, ...] | None:
    return _parse(value, Target, "target")


def parse_precisions(value: str | Iterable[str] | None) -> tuple[Precision, ...] | None:
    return _parse(value, Precision, "precision")


@dataclass(frozen=True)
class ArtifactRef:
    path: Path
    manifest: Manifest

    @property
    def name(self) -> str:
        """Opaque id (contract 5): the directory name, ``onnx-int8`` or ``onnx-int8@x86-avx2``."""
        return self.path.name

    @property
    def built_for_class(self) -> str | None:
        """The CPU class a class-specific INT8 artifact was built for; None for the rest."""
        bf = self.manifest.built_for
        if not isinstance(bf, dict) or bf.get("same_for_all_classes"):
            return None
        return bf.get("cpu_class")

    @property
    def target(self) -> Target:
        return Target(self.manifest.target)

    @property
    def precision(self) -> Precision:
        return Precision(self.manifest.precision)

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file


def find_artifacts(
    cfg: Config,
    targets: tuple[Target, ...] | None = None,
    precisions: tuple[Precision, ...] | None = None,
    verify: bool = True,
) -> list[ArtifactRef]:
    """Exported artifacts of the configured model, filtered, in target/precision order.

    Directories starting with '.' are in-progress temp dirs and never listed.
    """
    root = cfg.artifacts_dir
    found: list[ArtifactRef] = []
    if not root.is_dir():
        raise UsageError(f"no artifacts under {root}; run 'edgeship export' first")
    order = {t: i for i, t in enumerate(Target)}
    porder = {p: i for i, p in enumerate(Precision)}
    for d in sorted(root.iterdir()):
        if d.name.startswith("."):
            continue
        if d.is_symlink() and not d.exists():   # its version dir was deleted by hand
            raise ArtifactError(f"{d}: its version directory {d.readlink()} is missing; re-run 'edgeship export'")
        if not d.is_dir():
            continue
        m = read_manifest(d, verify=verify, expect_model=cfg.model.name)
        ref = ArtifactRef(d, m)
        if targets and ref.target not in targets:
            continue
        if precisions and ref.precision not in precisions:
            continue
        found.append(ref)
    # the default-class artifact (plain name) first, then the @class builds
    found.sort(key=lambda r: (order[r.target], porder[r.precision], "@" in r.name, r.name))
    if not found:
        what = f" matching target={','.join(map(str, targets or ['all']))} precision={','.join(map(str, precisions or ['all']))}"
        raise UsageError(f"no artifacts under {root}{what}; run 'edgeship export' first")
    return found


@dataclass(frozen=True)
class BrokenArtifact:
    """An artifact directory that could not be read (corrupt, tampered, half-written by hand).

    Its target and precision come from the directory name, the only place left to read them:
    ``<target>-<precision>`` or ``<target>-<precision>@<class>`` (contract 5).
    """

    path: Path
    target: str
    precision: str
    reason: str

    @property
    def name(self) -> str:
        return self.path.name


def _name_parts(dirname: str) -> tuple[str, str] | None:
    target, sep, rest = dirname.partition("-")
    precision = rest.partition("@")[0]
    if not sep or target not in {t.value for t in Target} or precision not in {p.value for p in Precision}:
        return None
    return target, precision


def scan_artifacts(cfg: Config) -> tuple[list[ArtifactRef], list[BrokenArtifact]]:
    """Every artifact directory of the configured model: the readable ones and the broken ones.

    Unlike ``find_artifacts`` a corrupt artifact does not stop the listing: the gate must judge
    it (FAIL) rather than lose its checks. A directory that is neither readable nor named like
    an artifact is bad input (ArtifactError), as it says nothing about which budgets it meets.
    """
    from edgeship.errors import ArtifactError

    root = cfg.artifacts_dir
    good: list[ArtifactRef] = []
    broken: list[BrokenArtifact] = []
    if not root.is_dir():
        return good, broken
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or not d.is_dir():
            continue
        parts = _name_parts(d.name)
        try:
            m = read_manifest(d, verify=True, expect_model=cfg.model.name)
            if _name_parts(f"{m.target}-{m.precision}") is None:
                raise ArtifactError(f"{d}: manifest.json names an unknown target/precision "
                                    f"{m.target!r}/{m.precision!r}; re-run 'edgeship export'")
            if parts is not None and parts != (m.target, m.precision):
                raise ArtifactError(f"{d}: manifest.json says target {m.target!r} precision {m.precision!r}, "
                                    f"the directory name says otherwise; re-run 'edgeship export'")
            good.append(ArtifactRef(d, m))
        except ArtifactError as exc:
            if parts is None:
                raise
            broken.append(BrokenArtifact(d, parts[0], parts[1], str(exc)))
    return good, broken


def unreachable_artifacts(cfg: Config) -> list[BrokenArtifact]:
    """Names under the artifacts directory that look like artifacts but lead to none, and why.

    An artifact name is a symlink to its version directory (edgeship/artifact/atomic.py). A link whose
    version directory was removed, a link loop, or a name that is not a directory is listed
    here (``scan_artifacts`` skips them: there is nothing to read), so the gate can judge the
    artifact as missing instead of losing its checks.
    """
    import errno
    import os

    root = cfg.artifacts_dir
    out: list[BrokenArtifact] = []
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        parts = _name_parts(d.name)
        if d.name.startswith(".") or parts is None or d.is_dir():
            continue
        if not d.is_symlink():
            why = f"{d} is not an artifact directory"
        else:
            target = os.readlink(d)
            try:
                os.stat(d)
                why = f"{d} links to {target}, which is not an artifact directory"
            except OSError as exc:
                why = (f"{d} is a symlink loop ({d.name} -> {target})" if exc.errno == errno.ELOOP
                       else f"{d} links to its version directory {target}, which is missing")
        out.append(BrokenArtifact(d, parts[0], parts[1], f"artifact {d.name} is missing: {why}"))
    return out


def pick_for_class(refs: list[ArtifactRef], cpu_class: str | None) -> list[ArtifactRef]:
    """Per (target, precision): the artifact built for ``cpu_class`` if there is one, else the
    default-class one (plain name). ``cpu_class`` None (not known yet) keeps every artifact."""
    if cpu_class is None:
        return refs
    built = {(r.target, r.precision) for r in refs if r.built_for_class == cpu_class}
    default = {r.name for r in refs if r.name == f"{r.target}-{r.precision}"}
    return [r for r in refs
            if (r.built_for_class == cpu_class if (r.target, r.precision) in built else r.name in default)]
