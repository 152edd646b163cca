"""Parsers for the native benchmark tools run on phones (no python there).

Formats follow the tools' sources (quoted in tests/data/README.md):

LiteRT ``benchmark_model`` (tensorflow/lite/tools/benchmark/benchmark_model.cc) logs with an
``INFO: `` prefix; one ``Stat`` line per phase (warmup, then the measured runs), in us:

    INFO: Initialized session in 29.452ms.
    INFO: count=85 first=11958 curr=11819 min=11693 max=12372 avg=11850.1 std=104
    INFO: Inference timings in us: Init: 29452, First inference: 25063, Warmup (avg): 12795.2, Inference (avg): 11850.1
    INFO: Memory footprint delta from the start of the tool (MB): init=6.39062 overall=9.10547
    INFO: Overall peak memory footprint (MB) via periodic monitoring: 13.8945

A phase whose runs all took the same time prints ``count=N curr=X(all same)``.

``onnxruntime_perf_test`` (onnxruntime/test/perftest/performance_runner.cc), with ``-s``:

    Session creation time cost: 0.0293 s
    First inference time cost: 2 ms
    Total inference requests: 1000
    Average inference time cost: 1.44 ms
    Peak working set size: 40402944 bytes
    Min Latency: 0.0013 s  (then Max, P50, P90, P95, P99, P999 Latency: ... s)

Neither prints every sample. Results therefore carry ``timing.aggregate`` (what the tool
printed, converted to ns) and an EMPTY ``samples_ns``: nothing is synthesized.
"""

from __future__ import annotations

import re
from typing import Any

from edgeship.errors import DeviceError

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


class ToolOutputError(DeviceError):
    """The native tool failed or printed nothing we can read."""


def _last(pattern: str, text: str) -> re.Match[str] | None:
    found = list(re.finditer(pattern, text))
    return found[-1] if found else None


def fail_line(text: str) -> str:
    """The line that best explains a failed run (first error-looking line, else the last)."""
    for ln in text.splitlines():
        low = ln.lower()
        if any(k in low for k in ("error", "failed", "could not", "no such file", "not found", "fatal")):
            return ln.strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _stat_lines(text: str) -> list[dict[str, float]]:
    """Every ``count=...`` Stat line, in order (warmup first, measured runs last)."""
    out = []
    for m in re.finditer(r"count=(\d+)(.*)", text):
        fields = {k: float(v) for k, v in re.findall(r"\b(first|curr|min|max|avg|std|p5|median|p95)=" + _NUM, m.group(2))}
        fields["count"] = float(m.group(1))
        if "(all same)" in m.group(2) or ("curr" in fields and "avg" not in fields):
            for k in ("min", "max", "avg"):
                fields[k] = fields["curr"]
            fields["std"] = 0.0
        out.append(fields)
    return out


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """LiteRT benchmark_model output -> the timing/memory blocks of the result schema."""
    timings = _last(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM
                    + r", Warmup \(avg\): " + _NUM + r", Inference \(avg\): " + _NUM, text)
    if timings is None:
        raise ToolOutputError(f"benchmark_model did not finish: {fail_line(text)}")
    init_us, first_us, warm_avg_us, _avg_us = (float(g) for g in timings.groups())
    stats = _stat_lines(text)
    if not stats or stats[-1]["count"] == 0:
        raise ToolOutputError("benchmark_model printed no measured 'count=... avg=...' statistics line")
    meas = stats[-1]
    warm = stats[-2] if len(stats) > 1 else None
    us = 1e3   # the tool prints microseconds
    agg: dict[str, Any] = {"unit": "ns", "source": "benchmark_model", "count": int(meas["count"]),
                           "min": meas["min"] * us, "max": meas["max"] * us, "mean": meas["avg"] * us,
                           "std": meas["std"] * us}
    for key, name in (("p50", "median"), ("p5", "p5"), ("p95", "p95")):
        if name in meas:
            agg[key] = meas[name] * us
    memory: dict[str, Any] = {"method": "benchmark_model", "baseline_kb": None, "init_peak_kb": None,
                              "steady_peak_kb": None, "rss_anon_kb": None, "rss_file_kb": None}
    delta = _last(r"Memory footprint delta from the start of the tool \(MB\): init=" + _NUM + r" overall=" + _NUM, text)
    peak = _last(r"(?:Overall peak memory footprint \(MB\) via periodic monitoring|Peak memory footprint \(MB\)): " + _NUM, text)
    if delta:
        # deltas of max RSS from the tool's start: init and whole run
        memory["init_peak_kb"] = float(delta.group(1)) * 1024
        memory["steady_peak_kb"] = float(delta.group(2)) * 1024
        memory["tool_init_delta_mb"], memory["tool_overall_delta_mb"] = float(delta.group(1)), float(delta.group(2))
    if peak:
        # absolute peak of the whole process (includes the tool itself): the budget-relevant number
        memory["tool_peak_mb"] = float(peak.group(1))
        memory["steady_peak_kb"] = float(peak.group(1)) * 1024
    return {
        "timing": {"load_ns": round(init_us * us), "first_ns": round(first_us * us),
                   "warmup_runs": int(warm["count"]) if warm else 0,
                   "warmup_mean_ns": warm_avg_us * us, "samples_ns": [], "aggregate": agg},
        "memory": memory,
    }


def parse_perf_test(text: str) -> dict[str, Any]:
    """onnxruntime_perf_test output -> the timing/memory blocks of the result schema."""
    avg = _last(r"Average inference time cost: " + _NUM + r" ms", text)
    if avg is None:
        raise ToolOutputError(f"onnxruntime_perf_test did not finish: {fail_line(text)}")
    count = _last(r"Total inference requests: (\d+)", text)
    session = _last(r"Session creation time cost: " + _NUM + r" s", text)
    first = _last(r"First inference time cost: " + _NUM + r" ms", text)
    if count is None or session is None or first is None:
        raise ToolOutputError("onnxruntime_perf_test output lacks 'Total inference requests', 'Session creation "
                              "time cost' or 'First inference time cost' (edgeship needs onnxruntime >= 1.10's tool)")
    agg: dict[str, Any] = {"unit": "ns", "source": "onnxruntime_perf_test", "count": int(count.group(1)),
                           "mean": float(avg.group(1)) * 1e6}
    for name, key in (("Min", "min"), ("Max", "max"), ("P50", "p50"), ("P90", "p90"), ("P95", "p95"),
                      ("P99", "p99"), ("P999", "p999")):
        m = _last(r"\b" + name + r" Latency: " + _NUM + r" s", text)
        if m:
            agg[key] = float(m.group(1)) * 1e9
    ws = _last(r"Peak working set size: ?(\d+)", text)
    return {
        "timing": {"load_ns": round(float(session.group(1)) * 1e9),
                   # the tool truncates the first inference to whole milliseconds
                   "first_ns": int(float(first.group(1)) * 1e6),
                   "warmup_runs": 1, "samples_ns": [], "aggregate": agg},
        "memory": {"method": "onnxruntime_perf_test", "baseline_kb": None, "init_peak_kb": None,
                   "steady_peak_kb": int(ws.group(1)) / 1024 if ws else None,
                   "rss_anon_kb": None, "rss_file_kb": None},
    }


PARSERS = {"tflite": parse_benchmark_model, "onnx": parse_perf_test}
