"""History over commits: every session of every device and artifact, and where it changed.

``build/history/<device>.jsonl`` (edgeship/measure/sessions.py) holds one line per measured
session (``profile``: latency, memory, size), per eval (fidelity, size), each with the
project's commit, and the gate's verdicts on it. This joins them into one series per device x
artifact, ordered by time, for ``edgeship history`` (edgeship/reports/history.py draws it).

A change is found by the gate's own test, never a second statistic: a session whose p90 lies
beyond the prediction interval of the earlier sessions (``sessions.state_shift`` at the gate's
``STATE_CONFIDENCE``, with the device's session-to-session noise as the gate would have
learned it at that session's time, ``sessions.device_noise``). The gate asks it of the
sessions of one artifact digest (has the device changed?); here the earlier sessions are
those of the same artifact *name* since the last change, whatever their digest, so a rebuilt
artifact that got slower is a change too, named at the first commit measured after it
(``artifact_changed`` says whether the digest changed there). The next session settles what
it was, by the same test against the sessions before the change: outside their interval too,
a ``step`` (the series goes on from the changed level); back within it, one session's
excursion (a co-tenant's spell; labelled ``one session``, and the series goes on from the
sessions before it). The latest session's change is ``unconfirmed``. On a steady device each
session is outside the interval 1 time in 100 (the gate's ``STATE_CONFIDENCE``), so a long
history shows such excursions; a false step needs two such sessions in a row. A contended session (the runner got less than
``CONTENDED_SHARE`` of a CPU) is tested and compared with like any other, and marked: the gate
sets such sessions aside when it learns a device's usual state, but on a machine that is
always shared every session is contended, and setting them all aside would leave nothing to
compare (the gate then learns no noise either: state ``[devices.<name>] session_cv``).
Without a learned or stated noise (too few repeated sessions) nothing can be called a change.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeship.config import Config
from edgeship.errors import UsageError
from edgeship.gating.judge import STATE_CONFIDENCE, session_interval
from edgeship.measure.rounds import CONTENDED_SHARE
from edgeship.measure.sessions import (
    EVAL,
    PROFILE,
    device_noise,
    kind_of,
    read_history,
    state_shift,
    without,
)

STAT = "p90"
# the noise is learned afresh once the sessions before have grown by this fraction (every
# session while there are fewer than 1 / REFRESH): a 5% larger history moves it by little
REFRESH = 0.05
ORDER = ("FAIL", "MARGINAL", "PASS")      # worst first: a session's verdict is its worst check's
KEYS = ("device", "artifact", "kind", "created", "commit", "dirty", "p50_ms", "p90_ms", "p90_low_ms", "p90_high_ms",
        "memory_mb", "size_bytes", "cosine", "accuracy_drop", "verdict", "verdicts", "budgets", "change", "contended",
        "digest", "config_digest", "edgeship", "device_class", "runtime", "threads")


@dataclass
class Series:
    """The sessions of one artifact on one device, oldest first (each a dict with ``KEYS``)."""

    device: str
    artifact: str
    points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changes(self) -> list[dict[str, Any]]:
        return [p for p in self.points if p["change"]]

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The changes that stayed (or, at the latest session, may have): not excursions."""
        return [p for p in self.changes if p["change"]["kind"] != "one session"]

    @property
    def excursions(self) -> list[dict[str, Any]]:
        return [p for p in self.changes if p["change"]["kind"] == "one session"]

    @property
    def profiled(self) -> list[dict[str, Any]]:
        return [p for p in self.points if p["kind"] == PROFILE]


@dataclass
class Trends:
    model: str
    series: list[Series]
    noise: dict[str, str]          # device -> how its noise was known at its latest session, or why none
    since: str | None = None

    def records(self) -> list[dict[str, Any]]:
        """One entry per session, with the stable ``KEYS`` (``--json``)."""
        return [dict(p) for s in self.series for p in s.points]


def history_devices(cfg: Config) -> list[str]:
    d = cfg.history_dir
    return sorted(p.stem for p in d.glob("*.jsonl")) if d.is_dir() else []


def parse_since(text: str, now: _dt.datetime | None = None) -> _dt.datetime:
    """``--since``: an ISO date or time (UTC unless it says), or an age: ``36h``, ``14d``, ``2w``."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hdw])\s*", text)
    if m:
        hours = float(m.group(1)) * {"h": 1, "d": 24, "w": 168}[m.group(2)]
        return now - _dt.timedelta(hours=hours)
    try:
        t = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r}: not a date (2025-06-01, 2025-06-01T12:00) or an age (36h, 14d, 2w)") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=_dt.timezone.utc)


def _time(created: Any) -> _dt.datetime:
    try:
        t = _dt.datetime.fromisoformat(str(created))
    except ValueError:
        return _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)    # an unreadable time sorts first
    return t if t.tzinfo is not None else t.replace(tzinfo=_dt.timezone.utc)


def trends(cfg: Config, devices: Sequence[str] | None = None, artifacts: Sequence[str] | None = None,
           since: _dt.datetime | None = None) -> Trends:
    """Every session in the history of ``devices`` (default: all with a history) and
    ``artifacts`` (default: all), with the changes found; ``since`` hides older sessions (the
    change test still learns from them). Unknown names are a UsageError naming the known ones."""
    have = history_devices(cfg)
    if not have:
        raise UsageError(f"no history under {cfg.build / 'history'}: `edgeship profile` (and `eval`) record one "
                         "line per session there; keep build/history/ between CI runs")
    for d in devices or ():
        if d not in have:
            raise UsageError(f"--device {d!r}: no history for it under {cfg.build / 'history'} "
                             f"(devices with a history: {', '.join(have)}); run `edgeship profile --device {d}`")
    out: list[Series] = []
    noise: dict[str, str] = {}
    for device in devices or have:
        series, noise[device] = _device_series(cfg, device)
        out += series
    known = sorted({s.artifact for s in out})
    for a in artifacts or ():
        if a not in known:
            raise UsageError(f"--artifact {a!r}: no session of it in the history (artifacts: {', '.join(known) or 'none'})")
    if artifacts:
        out = [s for s in out if s.artifact in artifacts]
    if since is not None:
        for s in out:
            s.points = [p for p in s.points if _time(p["created"]) >= since]
        out = [s for s in out if s.points]
    return Trends(cfg.model.name, out, noise, None if since is None else since.isoformat(timespec="seconds"))


def _device_series(cfg: Config, device: str) -> tuple[list[Series], str]:
    records = sorted(read_history(cfg, device, kinds=None), key=lambda r: _time(r.get("created")))
    profiles = [r for r in records if kind_of(r) == PROFILE]
    # the noise the gate would have applied at each session: learned from the sessions before it,
    # afresh while there are few, then each time they have grown by REFRESH (learning it is
    # linear in the sessions, so afresh at each of 2000 would take half a minute)
    noise_at: dict[int, Any] = {}
    why = f"no session-to-session noise for '{device}' yet (too few repeated sessions)"
    n, last = None, -1
    for i, r in enumerate(profiles):
        if last < 0 or i - last >= max(1, int(i * REFRESH)):
            n, last = device_noise(cfg, device, STAT, without(profiles[: i + 1], r), now=_time(r.get("created"))), i
        noise_at[id(r)] = n
        if n is not None:
            why = n.describe(device)
    series: dict[str, Series] = {}
    tested: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for r in records:
        name = str(r.get("artifact"))
        p = _point(device, r)
        series.setdefault(name, Series(device, name)).points.append(p)
        if p["kind"] == PROFILE:
            tested.setdefault(name, []).append((p, noise_at[id(r)]))
    for name, s in series.items():
        _detect(cfg, s, tested.get(name, []))
    return sorted(series.values(), key=lambda s: s.artifact), why


def _detect(cfg: Config, s: Series, sessions: list[tuple[dict[str, Any], Any]]) -> None:
    """Mark each point of ``s`` where the gate's state-shift test finds a change (module doc)."""
    segment: list[float] = []                        # p90 of the sessions since the last change
    before: list[float] = []                         # ... and of those before it, while unconfirmed
    pending: dict[str, Any] | None = None            # the point of an unconfirmed change
    last: dict[str, Any] | None = None
    for p, noise in sessions:
        point = p["p90_ms"]
        if not isinstance(point, (int, float)) or not point > 0:
            continue
        if noise is not None and p["p90_low_ms"] is None:
            low, high = session_interval(point, noise, cfg.gate.confidence)
            p["p90_low_ms"], p["p90_high_ms"] = round(low, 6), round(high, 6)
        if pending is not None and noise is not None:
            if state_shift(point, before, noise, STATE_CONFIDENCE) is None:
                # back within the sessions before the change: it was one session's excursion
                pending["change"]["kind"] = "one session"
                segment, before, pending, last = before + [point], [], None, p
                continue
            pending["change"]["kind"] = "step"      # this session is outside them too
            pending, before = None, []
        shift = None if noise is None else state_shift(point, segment, noise, STATE_CONFIDENCE)
        if shift is not None and noise is not None:
            usual = math.exp(sum(math.log(v) for v in segment) / len(segment))
            p["change"] = {
                # "unconfirmed" until the next session says whether it stayed ("step") or not
                "shift": round(shift, 4), "statistic": STAT, "kind": "unconfirmed", "commit": p["commit"],
                "before_commit": last["commit"] if last else None, "before_created": last["created"] if last else None,
                "artifact_changed": bool(last and last["digest"] != p["digest"]),
                "from_ms": round(usual, 6), "to_ms": point, "earlier_sessions": len(segment),
                "noise_cv": round(noise.sd, 4), "contended": p["contended"],
            }
            before, segment, pending = segment, [point], p
        else:
            segment.append(point)
        last = p


def _worst(verdicts: dict[str, Any]) -> str | None:
    got = {v.get("verdict") for v in verdicts.values() if isinstance(v, dict)}
    return next((v for v in ORDER if v in got), None)


def _point(device: str, r: dict[str, Any]) -> dict[str, Any]:
    stats = r.get("stats") or {}
    fid = r.get("fidelity") or {}
    verdicts = {k: v for k, v in (r.get("verdicts") or {}).items() if isinstance(v, dict)}
    lat = verdicts.get(f"latency_{STAT}_ms") or {}
    share = r.get("cpu_share")
    mem = r.get("memory_kb")
    return {
        "device": device, "artifact": str(r.get("artifact")), "kind": kind_of(r), "created": r.get("created"),
        "commit": r.get("commit"), "dirty": r.get("dirty"),
        "p50_ms": stats.get("p50"), "p90_ms": stats.get("p90"),
        # the gate's own interval when it judged this session's p90, else the session-noise one
        "p90_low_ms": lat.get("low"), "p90_high_ms": lat.get("high"),
        "memory_mb": round(mem / 1024.0, 3) if isinstance(mem, (int, float)) else None,
        "size_bytes": r.get("size_bytes"),
        "cosine": fid.get("cosine_mean") if kind_of(r) == EVAL else None,
        "accuracy_drop": fid.get("accuracy_drop") if kind_of(r) == EVAL else None,
        "verdict": _worst(verdicts), "verdicts": {k: v.get("verdict") for k, v in verdicts.items()},
        "budgets": {k: v.get("limit") for k, v in verdicts.items()},
        "change": None, "contended": isinstance(share, (int, float)) and share < CONTENDED_SHARE,
        "digest": r.get("digest"), "config_digest": r.get("config_digest"), "edgeship": r.get("edgeship"),
        "device_class": r.get("device_class"), "runtime": r.get("runtime"), "threads": r.get("threads"),
    }


def short(commit: Any) -> str:
    return str(commit)[:8] if commit else "no commit"


def change_line(s: Series, p: dict[str, Any], named: bool = True) -> str:
    """One sentence naming a change: where it came and what moved (``named``: led by the series)."""
    c = p["change"]
    at = f"commit {short(c['commit'])}{' (dirty)' if p.get('dirty') else ''}" if c["commit"] else f"the session of {p['created']}"
    before = f", after {short(c['before_commit'])}" if c["before_commit"] and c["before_commit"] != c["commit"] else ""
    what = "the artifact was rebuilt there" if c["artifact_changed"] else "same artifact: the device changed"
    kind = {"one session": "; one session only, the next came back",
            "unconfirmed": "; unconfirmed: the latest session, none after it yet"}.get(c["kind"], "")
    contended = "; a contended session" if c.get("contended") else ""
    lead = f"{s.device} · {s.artifact}: " if named else ""
    return (f"{lead}{c['statistic']} {100 * c['shift']:+.0f}% "
            f"({c['from_ms']:.4g} -> {c['to_ms']:.4g} ms over {c['earlier_sessions']} earlier session(s)) "
            f"first seen at {at}{before} ({what}{kind}{contended})")


def history_path_default(cfg: Config) -> Path:
    return cfg.build / "reports" / "history.html"
