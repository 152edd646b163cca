"""Say when INT8 does not pay: an INT8 artifact that is not clearly faster than FP32 on a device.

Whether integer kernels beat float ones depends on the CPU (x86 without VNNI: TFLite INT8 ran
at 0.8-1.0x of FP32 on an AVX2-only host, ~1.5x on an AVX512-VNNI Xeon). Nobody should ship
INT8 for a speed-up the device does not give, so for every device and target whose INT8
median (any int8* precision) is not at least ``MIN_SPEEDUP`` times faster than the FP32
median of the same target on the same device, one line says so. Used by the profile summary
and by the gate's reports (from report.json's results, so reports stay reproducible).

Only static and dynamic INT8 (``int8``, ``int8-dynamic``) are built to be faster: their integer
kernels are the point. A weight-only build (``int8-weight``) computes in float and is for size;
being no faster is expected, so its line says what it saves instead of "does not pay".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

MIN_SPEEDUP = 1.1
# float compute with int8 weights: built for size, not speed
WEIGHT_ONLY = ("int8-weight",)


def median_ms(result: dict[str, Any]) -> float | None:
    """p50 of a profile result (``timing``) or of a report.json result (``summary_ms``)."""
    if result.get("summary_ms"):
        v = result["summary_ms"].get("p50")
    elif result.get("timing"):
        from edgeship.measure.stats import timing_summary

        v = timing_summary(result["timing"]).p50
    else:
        return None
    return None if v is None or math.isnan(v) or v <= 0 else float(v)


def cpu_label(env: dict[str, Any] | None) -> str:
    """The CPU class when the runner reports cpu_features, else what it reports (the model name)."""
    cpu = (env or {}).get("cpu")
    if isinstance(cpu, dict):
        return str(cpu.get("cpu_class") or cpu.get("model") or "unknown")
    return str(cpu) if cpu else "unknown"


def int8_does_not_pay(results: Iterable[dict[str, Any]], min_speedup: float = MIN_SPEEDUP) -> list[str]:
    """One line per (device, INT8 artifact) slower than ``min_speedup`` x its target's FP32."""
    groups: dict[tuple[str, str], dict[str, list[tuple[dict[str, Any], float]]]] = {}
    for r in results:
        med = median_ms(r) if r.get("status") == "ok" else None
        if med is None:
            continue
        a = r.get("artifact") or {}
        precision, target = str(a.get("precision") or ""), a.get("target")
        kind = "fp32" if precision == "fp32" else "int8" if precision.startswith("int8") else None
        if kind and target:   # a result without target/precision (hand-made report) cannot be paired
            groups.setdefault((r["device"]["name"], target), {}).setdefault(kind, []).append((r, med))
    lines = []
    for (device, target), g in groups.items():
        if not g.get("fp32") or not g.get("int8"):
            continue
        # the artifact for the default device class when several fp32 builds were profiled
        fp32, fp_med = next((x for x in g["fp32"] if x[0]["artifact"]["name"] == f"{target}-fp32"), g["fp32"][0])
        for r, med in g["int8"]:
            speed = fp_med / med
            if speed >= min_speedup:
                continue
            if r["artifact"].get("precision") in WEIGHT_ONLY:
                lines.append(f"{device}: {r['artifact']['name']} is {speed:.2f}x the speed of {fp32['artifact']['name']}: "
                             f"weight-only INT8 computes in float and saves size{_sizes(r, fp32)}, not time")
            else:
                lines.append(
                    f"{device}: {r['artifact']['name']} is {speed:.2f}x the speed of {fp32['artifact']['name']} "
                    f"(median {med:.3g} ms vs {fp_med:.3g} ms): INT8 does not pay on this CPU ({cpu_label(r.get('env'))})")
    return lines


def _sizes(r: dict[str, Any], fp32: dict[str, Any]) -> str:
    a, b = (x.get("artifact", {}).get("size_bytes") for x in (r, fp32))
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return ""
    return f" ({a / 1024:.0f} KiB vs {b / 1024:.0f} KiB)"
