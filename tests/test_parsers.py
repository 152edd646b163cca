"""Native benchmark tool parsers on output in the tools' documented formats (tests/data/).

The samples follow the print statements of LiteRT benchmark_model.cc / stats_calculator.h and
onnxruntime perftest/performance_runner.cc line by line (see tests/data/README.md); they
were not captured from a phone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeship.devices._parsers import PARSERS, ToolOutputError, fail_line, parse_benchmark_model, parse_perf_test
from edgeship.errors import DeviceError

DATA = Path(__file__).parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_benchmark_model_ok() -> None:
    r = parse_benchmark_model(read("benchmark_model_ok.txt"))
    t, m = r["timing"], r["memory"]
    assert t["load_ns"] == 3_412_000 and t["first_ns"] == 412_000
    assert t["warmup_runs"] == 2914 and t["warmup_mean_ns"] == pytest.approx(171_300)
    assert t["samples_ns"] == []                       # the tool prints no per-run samples: none invented
    assert t["aggregate"] == {"unit": "ns", "source": "benchmark_model", "count": 5853, "min": 158_000.0,
                              "max": 1_023_000.0, "mean": pytest.approx(170_200.0), "std": 19_000.0}
    assert m["method"] == "benchmark_model"
    assert m["init_peak_kb"] == pytest.approx(2.64062 * 1024)
    assert m["steady_peak_kb"] == pytest.approx(9.65234 * 1024)   # periodic monitoring wins over the delta
    assert m["tool_overall_delta_mb"] == pytest.approx(3.07812)


def test_benchmark_model_without_peak_monitoring_uses_overall_delta() -> None:
    text = read("benchmark_model_ok.txt").replace("INFO: Overall peak memory footprint (MB) via periodic monitoring: 9.65234\n", "")
    m = parse_benchmark_model(text)["memory"]
    assert m["steady_peak_kb"] == pytest.approx(3.07812 * 1024) and "tool_peak_mb" not in m


def test_benchmark_model_all_same_stat_line() -> None:
    t = parse_benchmark_model(read("benchmark_model_all_same.txt"))["timing"]
    agg = t["aggregate"]
    assert (agg["count"], agg["min"], agg["max"], agg["mean"], agg["std"]) == (3, 75_000.0, 75_000.0, 75_000.0, 0.0)
    assert t["warmup_runs"] == 1
    mem = parse_benchmark_model(read("benchmark_model_all_same.txt"))["memory"]
    assert mem["init_peak_kb"] is None and mem["steady_peak_kb"] is None   # not printed: unknown, not zero


def test_benchmark_model_optional_percentiles() -> None:
    text = read("benchmark_model_ok.txt").replace("avg=170.2 std=19", "avg=170.2 std=19 p5=160 median=168 p95=190")
    agg = parse_benchmark_model(text)["timing"]["aggregate"]
    assert (agg["p5"], agg["p50"], agg["p95"]) == (160_000.0, 168_000.0, 190_000.0)


@pytest.mark.parametrize("name, line", [
    ("benchmark_model_alloc_fail.txt", "tensorflow/lite/kernels/reshape.cc:92 num_input_elements != num_output_elements (784 != 1000)"),   # the root cause, not the summary
    ("benchmark_model_missing_model.txt", "Could not open '/data/local/tmp/edgeship/tflite-int8/model.tflite'."),
    ("benchmark_model_fail.txt", "Could not open '/data/local/tmp/edgeship/missing.tflite'."),
])
def test_benchmark_model_failures(name: str, line: str) -> None:
    with pytest.raises(ToolOutputError) as exc:
        parse_benchmark_model(read(name))
    assert str(exc.value) == f"benchmark_model did not finish: ERROR: {line}"
    assert isinstance(exc.value, DeviceError)


def test_benchmark_model_truncated_output() -> None:
    text = read("benchmark_model_ok.txt")
    cut = text[: text.index("INFO: Inference timings")]          # device dropped before the summary
    with pytest.raises(ToolOutputError, match="benchmark_model did not finish"):
        parse_benchmark_model(cut)
    no_stats = "\n".join(ln for ln in text.splitlines() if "count=" not in ln)
    with pytest.raises(ToolOutputError, match="no measured 'count="):
        parse_benchmark_model(no_stats)


def test_perf_test_ok() -> None:
    r = parse_perf_test(read("perf_test_ok.txt"))
    t, m = r["timing"], r["memory"]
    assert t["load_ns"] == 13_502_100 and t["first_ns"] == 0 and t["samples_ns"] == []
    agg = t["aggregate"]
    assert agg["count"] == 1000 and agg["mean"] == pytest.approx(165_838)
    assert agg["min"] == pytest.approx(152_000) and agg["max"] == pytest.approx(421_000)
    assert [agg[k] for k in ("p50", "p90", "p95", "p99", "p999")] == pytest.approx([162_000, 178_000, 187_000, 231_000, 398_000])
    assert m["method"] == "onnxruntime_perf_test" and m["steady_peak_kb"] == 31506432 / 1024


def test_perf_test_without_statistics_flag() -> None:
    text = read("perf_test_ok.txt").split("Avg CPU usage:96")[0]     # no -s: no percentiles printed
    agg = parse_perf_test(text)["timing"]["aggregate"]
    assert set(agg) == {"unit", "source", "count", "mean"}


@pytest.mark.parametrize("name, line", [
    ("perf_test_missing_model.txt", ("Load model from /data/local/tmp/edgeship/onnx-int8/model.onnx failed:Load model "
                                     "/data/local/tmp/edgeship/onnx-int8/model.onnx failed. File doesn't exist")),
    ("perf_test_run_fail.txt", ("PerformanceRunner::RunOneIteration caught exception: Non-zero status code returned "
                                "while running Conv node. Name:'/conv1/Conv' Status Message: Invalid input shape: {1,1,28}")),
])
def test_perf_test_failures(name: str, line: str) -> None:
    with pytest.raises(ToolOutputError) as exc:
        parse_perf_test(read(name))
    assert str(exc.value) == f"onnxruntime_perf_test did not finish: {line}"


def test_perf_test_old_format_is_refused_clearly() -> None:
    old = "Total time cost:0.2\nTotal iterations:1000\nAverage time cost:0.2 ms\n"
    with pytest.raises(ToolOutputError, match="did not finish"):
        parse_perf_test(old)
    partial = "Average inference time cost: 0.2 ms\n"
    with pytest.raises(ToolOutputError, match="lacks 'Total inference requests'"):
        parse_perf_test(partial)


def test_fail_line_and_registry() -> None:
    assert fail_line("") == "no output"
    assert fail_line("a\nb\n") == "b"
    assert PARSERS == {"tflite": parse_benchmark_model, "onnx": parse_perf_test}
