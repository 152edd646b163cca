"""'INT8 does not pay': synthetic results in, one line per slow INT8 artifact out (no timing)."""

from __future__ import annotations

from typing import Any

from edgeship.gating.int8_speed import int8_does_not_pay


def _result(device: str, target: str, precision: str, median_ms: float, cpu: Any = None,
            name: str | None = None) -> dict[str, Any]:
    # 101 samples around the median: p50 is exactly median_ms
    ns = int(median_ms * 1e6)
    samples = [ns - 1000 + 20 * i for i in range(101)]
    return {"status": "ok", "device": {"name": device, "kind": "local"},
            "artifact": {"name": name or f"{target}-{precision}", "target": target, "precision": precision},
            "timing": {"samples_ns": samples}, "env": {"cpu": cpu if cpu is not None else "Some CPU"}}


def test_slow_int8_is_named_with_its_speed_medians_and_cpu_class() -> None:
    cls = {"arch": "x86_64", "features": ["avx2"], "cpu_class": "x86-avx2"}
    lines = int8_does_not_pay([
        _result("local", "tflite", "fp32", 2.9, cls), _result("local", "tflite", "int8", 3.1, cls),
        _result("local", "onnx", "fp32", 3.0, cls), _result("local", "onnx", "int8", 2.0, cls),   # 1.5x: pays
    ])
    assert lines == [("local: tflite-int8 is 0.94x the speed of tflite-fp32 (median 3.1 ms vs 2.9 ms): "
                      "INT8 does not pay on this CPU (x86-avx2)")]


def test_threshold_is_1_1x_and_every_int8_variant_counts_per_device() -> None:
    results = [
        _result("board", "onnx", "fp32", 2.0), _result("board", "onnx", "int8-dynamic", 1.85),    # 1.08x: no
        _result("board", "onnx", "int8", 1.80),                                                    # 1.11x: pays
        _result("board", "onnx", "int8", 1.9, name="onnx-int8@x86-avx2"),                          # 1.05x: no
        _result("local", "onnx", "int8", 9.0),                      # no fp32 on local: nothing to compare
        _result("board", "tflite", "fp16", 5.0), _result("board", "tflite", "int8", 9.0),   # fp16 is no baseline
    ]
    lines = int8_does_not_pay(results)
    assert [ln.split(" is ")[0] for ln in lines] == ["board: onnx-int8-dynamic", "board: onnx-int8@x86-avx2"]
    assert "(Some CPU)" in lines[0]                          # a runner without cpu_features: its CPU model
    skipped = dict(results[0], status="skipped")
    assert int8_does_not_pay([skipped, results[1]]) == []


def test_reports_carry_the_line() -> None:
    from edgeship.reports.markdown import render_markdown
    from edgeship.reports.terminal import render_terminal, terminal_notes

    def row(precision: str, p50: float) -> dict[str, Any]:
        return {"status": "ok", "device": {"name": "local"}, "env": {"cpu": {"cpu_class": "x86-avx2"}},
                "artifact": {"name": f"tflite-{precision}", "target": "tflite", "precision": precision, "size_bytes": 1024},
                "summary_ms": {"p50": p50, "p90": p50, "p99": p50, "mean": p50, "std": 0.0, "count": 100}, "memory": {}}

    report = {"model": "m", "verdict": "PASS", "counts": {"PASS": 0}, "checks": [], "edgeship": "0", "created": "t",
              "results": [row("fp32", 2.9), row("int8", 3.1)]}
    want = "local: tflite-int8 is 0.94x the speed of tflite-fp32 (median 3.1 ms vs 2.9 ms): INT8 does not pay on this CPU (x86-avx2)"
    assert f"note: {want}" in terminal_notes(report) and "does not pay" not in render_terminal(report)
    assert f"- ⚠️ {want}" in render_markdown(report).splitlines()
    report["results"][1]["summary_ms"]["p50"] = 2.0
    assert "does not pay" not in " ".join(terminal_notes(report)) + render_markdown(report)


def test_profile_summary_says_it_on_stderr_from_the_saved_results(tmp_path, capsys) -> None:
    from edgeship.artifact.atomic import write_json_atomic
    from edgeship.commands.profile import _say_int8_speed
    from tests.conftest import make_config

    cfg = make_config(tmp_path)
    for precision, ms in (("fp32", 2.0), ("int8", 2.5)):
        r = _result("local", "onnx", precision, ms, {"cpu_class": "x86-avx2"})
        r["artifact"]["model"] = cfg.model.name
        write_json_atomic(cfg.build / "results" / "local" / f"onnx-{precision}.json", r)
    _say_int8_speed(cfg, "local")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert " ".join(captured.err.split()) == ("note: local: onnx-int8 is 0.80x the speed of onnx-fp32 (median 2.5 ms vs "
                                              "2 ms): INT8 does not pay on this CPU (x86-avx2)")
    assert max(len(ln) for ln in captured.err.splitlines()) <= 100      # wrapped like the tables when piped


def test_weight_only_int8_is_for_size_and_its_note_says_so() -> None:
    """tflite-int8-weight computes in float: 1.00x FP32 is expected, not "INT8 does not pay"."""
    fp32 = _result("local", "tflite", "fp32", 2.0)
    fp32["artifact"]["size_bytes"] = 150 * 1024
    weight = _result("local", "tflite", "int8-weight", 2.0)
    weight["artifact"]["size_bytes"] = 41 * 1024
    lines = int8_does_not_pay([fp32, weight, _result("local", "tflite", "int8-dynamic", 2.1)])
    assert lines[0] == ("local: tflite-int8-weight is 1.00x the speed of tflite-fp32: weight-only INT8 computes in "
                        "float and saves size (41 KiB vs 150 KiB), not time")
    assert "does not pay" not in lines[0] and lines[1].startswith("local: tflite-int8-dynamic is 0.95x")
    assert lines[1].endswith("INT8 does not pay on this CPU (Some CPU)") and len(lines) == 2
