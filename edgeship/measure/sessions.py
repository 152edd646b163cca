"""Sessions: how much a device's latency moves from one measurement session to the next.

Rounds (edgeship/measure/rounds.py) make the runner process the unit of noise, but the rounds of one
``profile`` run all fall within the same minute: on a shared machine the host's speed drifts
over tens of minutes (docs/gate.md, "Stability": the same artifact measured 5.7 ms, then
11.3 ms, then 7 ms within an hour, each run's rounds agreeing within a few %). No statistic of
one session can see that drift; the history of earlier sessions can. So every ``profile``
result (and every gate that re-measured rounds) leaves one line in
``build/history/<device>.jsonl``: the artifact's digest, the runtime and threads, and the
session's pooled statistics. From the sessions of each artifact measured more than once, the
device's session-to-session noise is the pooled standard deviation of the log statistic
(one-way random effects: deviations from each artifact's own mean, ``sum(n_i - 1)`` degrees of
freedom), and the gate widens a verdict's interval to at least
``point * exp(+-t(df) * sd)``: the spread a new session of this artifact would show. A history
that drifted 2x makes that interval wide, and the verdict MARGINAL, which is the truth about
such a machine. ``[devices.<name>] session_cv`` states the noise for a device whose history
is not kept (a fresh CI machine); the larger of the stated and the learned value is used.

The history is edgeship's own cache; keep ``build/history/`` between CI runs to let the
device's noise be learned (docs/gate.md).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeship.config import Config
from edgeship.errors import UsageError

# Records kept per device file (oldest dropped first): a line is ~300 bytes.
MAX_RECORDS = 2000
# Fewest residual degrees of freedom for a learned noise to be used (2 sessions of each of
# 3 artifacts, or 3 sessions of one): fewer leave the standard deviation itself unknown.
MIN_DF = 2
STATS = ("p50", "p90", "p99", "mean")


def history_path(cfg: Config, device: str) -> Path:
    return cfg.build / "history" / f"{device}.jsonl"


def session_record(result: dict[str, Any]) -> dict[str, Any] | None:
    """The history line of one profile result: None when it has no measured samples (skipped,
    emulated, or a native tool's aggregates only)."""
    import numpy as np

    from edgeship.measure.stats import statistic

    timing = result.get("timing") or {}
    samples = timing.get("samples_ns") or []
    art = result.get("artifact") or {}
    if result.get("status") != "ok" or not samples or timing.get("emulated") or not art.get("artifact_digest"):
        return None
    from edgeship.measure.rounds import cpu_shares

    ms = np.asarray(samples, dtype=np.float64) / 1e6
    rt = result.get("runtime") or {}
    shares = cpu_shares(timing)
    return {
        "created": result.get("created"), "artifact": art.get("name"), "digest": art["artifact_digest"],
        "runtime": f"{rt.get('name')} {rt.get('version') or ''}".strip(),
        "threads": (result.get("settings") or {}).get("threads"),
        "rounds": len(timing.get("rounds") or [samples]), "samples": int(ms.size),
        "stats": {s: round(float(statistic(ms, s)), 6) for s in STATS},
        "cpu_share": round(float(np.median(shares)), 4) if shares else None,
    }


def read_history(cfg: Config, device: str) -> list[dict[str, Any]]:
    """Every record of ``device``'s history file (none when there is no file)."""
    path = history_path(cfg, device)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            ok = isinstance(rec, dict) and isinstance(rec.get("digest"), str) and isinstance(rec.get("stats"), dict)
        except json.JSONDecodeError:
            ok = False
        if not ok:
            raise UsageError(f"{path} line {i}: not a session record; delete the file to start the device's "
                             "history afresh (it only widens latency intervals, see docs/gate.md)")
        out.append(rec)
    return out


def record_sessions(cfg: Config, device: str, results: Iterable[dict[str, Any]]) -> int:
    """Add (or replace: same digest and ``created``) the sessions of ``results``; returns how many."""
    from edgeship.artifact.atomic import exclusive, write_text_atomic

    new = [r for r in (session_record(res) for res in results) if r is not None]
    if not new:
        return 0
    keys = {(r["digest"], r["created"]) for r in new}
    path = history_path(cfg, device)
    with exclusive(path.parent):
        kept = [r for r in read_history(cfg, device) if (r["digest"], r.get("created")) not in keys]
        lines = [json.dumps(r, sort_keys=True) for r in [*kept, *new][-MAX_RECORDS:]]
        write_text_atomic(path, "\n".join(lines) + "\n")
    return len(new)


@dataclass(frozen=True)
class SessionNoise:
    """The device's session-to-session noise of one statistic, on the log scale."""

    sd: float            # standard deviation of log(statistic) between sessions (~ the CV)
    df: float            # its degrees of freedom (math.inf when stated in the config)
    sessions: int        # sessions it was learned from (0 when stated)
    groups: int          # artifacts (digest x runtime x threads) measured more than once
    source: str          # "learned", "configured" or "configured; learned 3.1%"
    set_aside: int = 0   # sessions left out as another state of the device (or contended)

    def describe(self, device: str) -> str:
        if self.sessions:
            aside = f", {self.set_aside} set aside as another state" if self.set_aside else ""
            return (f"sessions on '{device}' vary {100 * self.sd:.1f}% ({self.source} from {self.sessions} sessions of "
                    f"{self.groups} artifact(s){aside})")
        return f"sessions on '{device}' vary {100 * self.sd:.1f}% ({self.source})"

    def quantile(self, q: float) -> float:
        """Student-t quantile with the noise's degrees of freedom (normal when stated)."""
        from statistics import NormalDist

        from edgeship.measure.stats import t_quantile

        return NormalDist().inv_cdf(q) if math.isinf(self.df) else t_quantile(q, max(1, int(self.df)))

    def to_dict(self) -> dict[str, Any]:
        return {"cv": self.sd, "df": None if math.isinf(self.df) else self.df, "sessions": self.sessions,
                "groups": self.groups, "source": self.source, "set_aside": self.set_aside}


# A session further than this many robust standard deviations from its artifact's median
# session is another state of the device (a co-tenant's spell, a throttled hour), not its
# usual noise: left out of the learned spread so one bad hour does not make every verdict of
# the next week MARGINAL. Loose (a normal session is beyond 3.5 sd once in 2000) because the
# robust sd comes from few sessions; the gate still meets such a session: a current session
# like it is a changed state (gating.STATE_CONFIDENCE).
CLIP_SD = 3.5
# ... as long as such sessions are rare: a state the device is in for more than 1 session in 5
# is part of its usual noise (a bimodal host), and nothing is set aside.
MAX_ASIDE = 0.2


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["digest"], r.get("runtime"), r.get("threads"))


def _usual(records: Sequence[dict[str, Any]], stat: str, since: _dt.datetime | None) -> tuple[dict[tuple[Any, ...], list[float]], int]:
    """Per artifact key, log(stat) of its sessions in the device's usual state, and how many were
    set aside: contended sessions (the runner was descheduled: rounds.CONTENDED_SHARE), then
    sessions beyond ``CLIP_SD`` robust sd (pooled MAD of the deviations from each artifact's
    median) of their artifact's median, unless more than ``MAX_ASIDE`` of them are."""
    from statistics import median

    from edgeship.measure.rounds import CONTENDED_SHARE

    groups: dict[tuple[Any, ...], list[float]] = {}
    aside = 0
    for r in records:
        v = (r.get("stats") or {}).get(stat)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
            continue
        if since is not None and not _newer(r.get("created"), since):
            continue
        share = r.get("cpu_share")
        if isinstance(share, (int, float)) and share < CONTENDED_SHARE:
            aside += 1
            continue
        groups.setdefault(_key(r), []).append(math.log(v))
    # deviations from a median of n are smaller than from the centre: sqrt(n / (n - 1)) undoes it
    devs = [abs(x - median(logs)) * math.sqrt(len(logs) / (len(logs) - 1))
            for logs in groups.values() if len(logs) >= 2 for x in logs]
    robust = 1.4826 * median(devs) if devs else 0.0
    if robust > 0:
        clipped = {key: [x for x in logs if abs(x - median(logs)) <= CLIP_SD * robust] if len(logs) >= 2 else logs
                   for key, logs in groups.items()}
        out = sum(len(logs) - len(clipped[key]) for key, logs in groups.items())
        if out <= MAX_ASIDE * len(devs):
            groups, aside = clipped, aside + out
    return groups, aside


def learn_noise(records: Sequence[dict[str, Any]], stat: str, since: _dt.datetime | None = None) -> SessionNoise | None:
    """Pooled within-artifact standard deviation of log(stat) over the sessions of ``records``
    (newer than ``since``) in the device's usual state; None below ``MIN_DF`` degrees of freedom."""
    groups, aside = _usual(records, stat, since)
    ss, df, n, g = 0.0, 0, 0, 0
    for logs in groups.values():
        if len(logs) < 2:
            continue
        mean = sum(logs) / len(logs)
        ss += sum((x - mean) ** 2 for x in logs)
        df += len(logs) - 1
        n += len(logs)
        g += 1
    if df < MIN_DF:
        return None
    return SessionNoise(math.sqrt(ss / df), float(df), n, g, "learned", aside)


def window_start(cfg: Config, now: _dt.datetime | None = None) -> _dt.datetime:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now - _dt.timedelta(hours=cfg.gate.session_window_hours)


def device_noise(cfg: Config, device: str, stat: str, records: Sequence[dict[str, Any]] | None = None,
                 now: _dt.datetime | None = None) -> SessionNoise | None:
    """The noise the gate applies on ``device``: the larger of the learned one (sessions within
    ``[gate] session_window_hours``) and ``[devices.<device>] session_cv``; None when neither."""
    records = read_history(cfg, device) if records is None else records
    learned = learn_noise(records, stat, window_start(cfg, now))
    dev = cfg.devices.get(device)
    stated = getattr(dev, "session_cv", None) if dev is not None else None
    if stated is None:
        return learned
    if learned is None or learned.sd <= stated:
        why = "configured" if learned is None else f"configured; learned {100 * learned.sd:.1f}%"
        return SessionNoise(float(stated), math.inf, 0, 0, why)
    return learned


def earlier_sessions(cfg: Config, records: Sequence[dict[str, Any]], result: dict[str, Any], stat: str,
                     now: _dt.datetime | None = None) -> list[float]:
    """``stat`` of the earlier sessions (within the window, in the device's usual state) of the
    artifact, runtime and threads that ``result`` measured, the session of ``result`` itself
    left out."""
    own = session_record(result)
    if own is None:
        return []
    groups, _ = _usual(without(records, own), stat, window_start(cfg, now))
    return [math.exp(x) for x in groups.get(_key(own), [])]


def without(records: Sequence[dict[str, Any]], own: dict[str, Any] | None) -> list[dict[str, Any]]:
    """``records`` less the session ``own`` (a ``session_record``) itself."""
    if own is None:
        return list(records)
    return [r for r in records if (r["digest"], r.get("created")) != (own["digest"], own["created"])]


def state_shift(point: float, earlier: Sequence[float], noise: SessionNoise, confidence: float) -> float | None:
    """The relative shift of this session's ``point`` from the geometric mean of the earlier
    sessions of the same artifact when it lies beyond their prediction interval
    (``t * sd * sqrt(1 + 1/k)`` on the log scale), else None. The artifact is the same, so such
    a shift is the device's state (co-tenants, thermal, another load), not the artifact."""
    if not earlier or not point > 0:
        return None
    k = len(earlier)
    mean = sum(math.log(v) for v in earlier) / k
    t = noise.quantile(1.0 - (1.0 - confidence) / 2.0)
    d = math.log(point) - mean
    return math.expm1(d) if abs(d) > t * noise.sd * math.sqrt(1.0 + 1.0 / k) else None


def _newer(created: Any, since: _dt.datetime) -> bool:
    try:
        t = _dt.datetime.fromisoformat(str(created))
    except ValueError:
        return False
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t >= since
