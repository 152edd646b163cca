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

Each line also says where it came from (the project's git commit and dirty flag, edgeship's
version, the config digest, the device's CPU class) and what the artifact weighed and held
(``size_bytes``, ``memory_kb``); ``eval`` leaves a line of ``kind`` "eval" per device and
artifact with its fidelity, and the gate marks the lines it judged with its verdicts and
budgets (``record_verdicts``). ``edgeship history`` (edgeship/gating/trends.py) draws them.
Only ``kind`` "profile" lines (the default of lines written before kinds) teach the noise.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeship import __version__
from edgeship.config import Config
from edgeship.errors import UsageError
from edgeship.untrusted import UntrustedJSONError, dumps, loads

# Records kept per device file (oldest dropped first): a line is ~300 bytes.
MAX_RECORDS = 2000
# Fewest residual degrees of freedom for a learned noise to be used (2 sessions of each of
# 3 artifacts, or 3 sessions of one): fewer leave the standard deviation itself unknown.
MIN_DF = 2
STATS = ("p50", "p90", "p99", "mean")
# The line format of a history file (docs/gate.md, "History that travels"); lines without "v"
# were written before it was numbered and read the same.
HISTORY_VERSION = 1


def history_path(cfg: Config, device: str) -> Path:
    """``<history_dir>/<device>.jsonl`` (``[gate] history_dir``, default build/history)."""
    return cfg.history_dir / f"{device}.jsonl"


PROFILE, EVAL = "profile", "eval"
# what eval leaves per device and artifact (edgeship/measure/scoring.py's entry keys)
FIDELITY = ("cosine_mean", "cosine_min", "accuracy", "accuracy_drop", "top1_agreement")


def kind_of(record: dict[str, Any]) -> str:
    return str(record.get("kind") or PROFILE)


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
    mem = result.get("memory") or {}
    peaks = [v for v in (mem.get("init_peak_kb"), mem.get("steady_peak_kb")) if isinstance(v, (int, float))]
    return {
        "v": HISTORY_VERSION,
        "kind": PROFILE, "created": result.get("created"), "artifact": art.get("name"), "digest": art["artifact_digest"],
        "runtime": f"{rt.get('name')} {rt.get('version') or ''}".strip(),
        "threads": (result.get("settings") or {}).get("threads"),
        "rounds": len(timing.get("rounds") or [samples]), "samples": int(ms.size),
        "stats": {s: round(float(statistic(ms, s)), 6) for s in STATS},
        "cpu_share": round(float(np.median(shares)), 4) if shares else None,
        "memory_kb": max(peaks) if peaks else None, "size_bytes": art.get("size_bytes"),
        "config_digest": result.get("config_digest"), "edgeship": __version__,
        "device_class": _cpu_class((result.get("env") or {}).get("cpu")),
    }


def eval_record(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The history line of one eval.json entry (fidelity and size): None unless it was measured."""
    if entry.get("status") != "ok" or not isinstance(entry.get("artifact_digest"), str):
        return None
    return {
        "v": HISTORY_VERSION, "kind": EVAL, "created": entry.get("created"), "artifact": entry.get("artifact"),
        "digest": entry["artifact_digest"], "samples": entry.get("samples"),
        "fidelity": {k: entry.get(k) for k in FIDELITY}, "size_bytes": entry.get("size_bytes"),
        "config_digest": entry.get("config_digest"), "edgeship": __version__,
        "device_class": _cpu_class(entry.get("cpu")),
    }


def _cpu_class(cpu: Any) -> str | None:
    cls = cpu.get("cpu_class") if isinstance(cpu, dict) else None
    return cls if isinstance(cls, str) and cls != "unknown" else None


def read_history(cfg: Config, device: str, kinds: tuple[str, ...] | None = (PROFILE,)) -> list[dict[str, Any]]:
    """The records of ``device``'s history file of ``kinds`` (default: the profile sessions;
    None: every line), none when there is no file. The file is untrusted input: a line that is
    not a record as ``session_record``/``eval_record`` write it is one UsageError naming the file
    and line, never a number that turns the noise into NaN."""
    path = history_path(cfg, device)
    again = "delete the file to start the device's history afresh (it only widens latency intervals, see docs/gate.md)"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the session history ({exc.strerror or exc}); check [gate] history_dir "
                         f"or {again}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UsageError(f"{path} line {line}: not UTF-8 text; {again}") from None
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = loads(line)
        except UntrustedJSONError as exc:
            raise UsageError(f"{path} line {i}: not a session record ({exc}); {again}") from None
        why = _bad_record(rec)
        if why is not None:
            raise UsageError(f"{path} line {i}: not a session record ({why}); {again}")
        if kinds is None or kind_of(rec) in kinds:
            out.append(rec)
    return out


# The fields of a session record the gate reads, and the JSON types each may hold (None: null).
_RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "created": (str, type(None)), "artifact": (str, type(None)), "runtime": (str, type(None)),
    "threads": (int, type(None)), "rounds": (int, type(None)), "samples": (int, type(None)),
    "cpu_share": (int, float, type(None)),
}


def _bad_record(rec: Any) -> str | None:
    """Why ``rec`` is not a session record, or None when it is one."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, expected an object"
    if not isinstance(rec.get("digest"), str):
        return "'digest' is not a string"
    for key, types in _RECORD_FIELDS.items():
        v = rec.get(key)
        if isinstance(v, bool) or not isinstance(v, types):
            return f"'{key}' is a {type(v).__name__}"
    kind = rec.get("kind", PROFILE)
    if kind not in (PROFILE, EVAL):
        return f"'kind' is {kind!r}, not {PROFILE!r} or {EVAL!r}"
    # a profile line's latency statistics; an eval line's fidelity (cosine, accuracy, drop may be < 0)
    field, nonneg = ("stats", True) if kind == PROFILE else ("fidelity", False)
    values = rec.get(field)
    if not isinstance(values, dict):
        return f"'{field}' is not an object"
    for name, v in values.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or (nonneg and v < 0)):
            return f"'{field}.{name}' is not a number" + (" >= 0" if nonneg else "")
    return None


def record_sessions(cfg: Config, device: str, results: Iterable[dict[str, Any]]) -> int:
    """Add (or replace: same digest and ``created``) the sessions of ``results``; returns how many."""
    return _record(cfg, device, [r for r in (session_record(res) for res in results) if r is not None])


def record_evals(cfg: Config, entries: Iterable[dict[str, Any]]) -> int:
    """One ``eval`` line per measured eval.json entry, in its device's history; returns how many."""
    by_device: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        rec = eval_record(e)
        if rec is not None and isinstance(e.get("device"), str):
            by_device.setdefault(e["device"], []).append(rec)
    return sum(_record(cfg, device, recs) for device, recs in by_device.items())


def _line_key(r: dict[str, Any]) -> tuple[str, Any, Any]:
    return (kind_of(r), r["digest"], r.get("created"))


def _record(cfg: Config, device: str, new: list[dict[str, Any]]) -> int:
    """Add ``new`` lines, replacing those of the same kind, digest and ``created``: a replaced
    line keeps the commit it was first recorded at and the gate's verdicts (a gate that
    re-measured rounds rewrites its session's line, maybe after a commit of unrelated files).

    The read-modify-write holds the history directory's lock (artifact/atomic.exclusive) and
    replaces the file atomically, so concurrent writers (two profiles, a cluster's devices, CI
    jobs sharing a ``[gate] history_dir`` on one host) lose no line and a reader never sees half of one.
    """
    from edgeship.artifact.atomic import exclusive, write_text_atomic
    from edgeship.measure.provenance import project_source

    if not new:
        return 0
    source = project_source(cfg)
    path = history_path(cfg, device)
    try:
        with exclusive(path.parent):
            old = {_line_key(r): r for r in read_history(cfg, device, kinds=None)}
            for r in new:
                before = old.get(_line_key(r), {})
                r.update({k: before.get(k, source[k]) for k in ("commit", "dirty")})
                if "verdicts" in before:
                    r["verdicts"] = before["verdicts"]
            keys = {_line_key(r) for r in new}
            kept = [r for k, r in old.items() if k not in keys]
            lines = [dumps(r, sort_keys=True) for r in [*kept, *new][-MAX_RECORDS:]]
            write_text_atomic(path, "\n".join(lines) + "\n")
    except OSError as exc:     # [gate] history_dir on a file, read-only or full: bad input, not a bug
        raise UsageError(f"{path.parent}: cannot write the device's history there ({exc.strerror or exc}); "
                         "fix [gate] history_dir (a writable folder)") from None
    return len(new)


def record_verdicts(cfg: Config, device: str, marks: dict[tuple[str, str, str], dict[str, dict[str, Any]]]) -> int:
    """Mark lines of ``device``'s history with the gate's verdicts: ``marks`` maps a line's
    (kind, digest, created) to ``{metric: {"verdict", "limit", "value", "low", "high"}}``,
    merged into its ``verdicts`` (a later gate of the same session overrides a metric's).
    Lines not in the history (dropped as old) are left out; returns how many were marked."""
    from edgeship.artifact.atomic import exclusive, write_text_atomic

    path = history_path(cfg, device)
    if not marks or not path.exists():
        return 0
    with exclusive(path.parent):
        records = read_history(cfg, device, kinds=None)
        hit = 0
        for r in records:
            mark = marks.get(_line_key(r))
            if mark:
                r["verdicts"] = {**(r.get("verdicts") or {}), **mark}
                hit += 1
        if hit:
            write_text_atomic(path, "\n".join(dumps(r, sort_keys=True) for r in records) + "\n")
    return hit


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
        if kind_of(r) != PROFILE:     # eval lines have no latency
            continue
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
    # each group's median once: edgeship history asks this for every session of a long history
    mid = {key: median(logs) for key, logs in groups.items() if len(logs) >= 2}
    # deviations from a median of n are smaller than from the centre: sqrt(n / (n - 1)) undoes it
    devs = [abs(x - mid[key]) * math.sqrt(len(logs) / (len(logs) - 1))
            for key, logs in groups.items() if len(logs) >= 2 for x in logs]
    robust = 1.4826 * median(devs) if devs else 0.0
    if robust > 0:
        clipped = {key: [x for x in logs if abs(x - mid[key]) <= CLIP_SD * robust] if len(logs) >= 2 else logs
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
