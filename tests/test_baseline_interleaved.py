"""gate --baseline with the baseline's build: both measured now, in interleaved round pairs, the
answer slower / not slower / unknown with a stated false-alarm rate (edgeship/gating/baseline.py).

The error rates are properties of the rule, checked here on simulated machines (drift that a
saved baseline would read as a regression, an order effect, heavy-tailed noise) with a fixed
seed: no test depends on how busy this machine is. The measured rates on a real machine are
benchmarks/gate_power.py's job (docs/gate.md).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeship.gating.baseline import NOT_SLOWER, SLOWER, UNKNOWN, compare_interleaved, decide_pairs
from edgeship.measure.interleave import Pair
from edgeship.measure.stats import sign_flip_pvalue
from edgeship.types import Verdict
from tests.conftest import cli_project, make_config


def simulate(rng: np.random.Generator, true_ratio: float, pairs: int = 10, drift: float = 0.15,
             noise: float = 0.015, order_effect: float = 0.02) -> list[float]:
    """Log ratios of ``pairs`` interleaved pairs on a machine whose speed wanders by ``drift``
    (a random walk, common to both rounds of a pair), with per-round noise (a t(3) tail: a
    preempted round now and then) and a penalty for whichever artifact runs second."""
    level = np.cumsum(drift / math.sqrt(pairs) * rng.standard_normal(pairs))
    out = []
    for i in range(pairs):
        cand_first = rng.integers(0, 2) == 1
        base = level[i] + noise * rng.standard_t(3) + (0.0 if not cand_first else order_effect)
        cand = level[i] + math.log(true_ratio) + noise * rng.standard_t(3) + (order_effect if not cand_first else 0.0)
        out.append(cand - base)
    return out


def test_sign_flip_is_exact_over_all_sign_patterns() -> None:
    p, floor = sign_flip_pvalue([0.1] * 10)
    assert p == floor == 1 / 1024
    p, _ = sign_flip_pvalue([0.1] * 9 + [-0.01])     # the one reversed pair is small
    assert p == 2 / 1024
    assert sign_flip_pvalue([-0.1] * 10)[0] == 1.0


def test_a_a_false_alarm_rate_is_within_alpha_however_the_machine_drifts() -> None:
    """2000 A/A comparisons on a drifting machine with an order effect: "slower" at most at
    alpha (1%) per comparison; most say "not slower" at the 5% minimum effect."""
    rng = np.random.default_rng(27)
    outcomes = [decide_pairs(simulate(rng, 1.0), 0.01, 0.05, looks=2).outcome for _ in range(2000)]
    slower = outcomes.count(SLOWER) / len(outcomes)
    assert slower <= 0.01 and outcomes.count(NOT_SLOWER) / len(outcomes) > 0.6, (slower, outcomes.count(UNKNOWN))
    # the same test without the coin (baseline always first) is not protected from an order effect
    biased = [decide_pairs(list(np.array(simulate(rng, 1.0, order_effect=0.0)) + 0.08), 0.01, 0.05).outcome
              for _ in range(200)]
    assert biased.count(SLOWER) > 100


def test_power_against_a_true_10_percent_slowdown() -> None:
    rng = np.random.default_rng(10)
    outcomes = [decide_pairs(simulate(rng, 1.10), 0.01, 0.05, looks=2).outcome for _ in range(1000)]
    assert outcomes.count(SLOWER) / len(outcomes) >= 0.9
    noisy = decide_pairs(simulate(np.random.default_rng(1), 1.10, noise=0.3), 0.01, 0.05, looks=2)
    assert noisy.outcome == UNKNOWN          # a machine this noisy cannot tell: run more, never a guess


def test_unknown_measures_more_pairs_once_then_says_run_more(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    asked: list[int] = []
    rng = np.random.default_rng(3)

    def measure(n: int) -> list[Pair]:
        asked.append(n)
        # a 4% slowdown in very noisy pairs: neither slower (below 5%) nor ruled out
        return [Pair((1_000_000,), (int(1_000_000 * math.exp(0.04 + 0.2 * rng.standard_normal())),), bool(i % 2))
                for i in range(n)]

    res = compare_interleaved(cfg, "local", "onnx-fp32", "onnx-fp32", measure)
    assert asked == [10, 5] and res.verdict is Verdict.MARGINAL and res.detail.startswith("unknown: run more: median")
    assert "over 15 interleaved round pairs" in res.detail and "false-alarm rate <= 0.01" in res.detail
    asked.clear()
    res = compare_interleaved(cfg, "local", "onnx-fp32", "onnx-fp32", measure, more=False)
    assert asked == [10]


def test_slower_and_not_slower_are_fail_and_pass(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)

    def pairs(ratio: float):
        return lambda n: [Pair((1_000_000 + i,), (int((1_000_000 + i) * ratio * (1 + 0.002 * (-1) ** i)),), bool(i % 2))
                          for i in range(n)]

    res = compare_interleaved(cfg, "local", "onnx-fp32", "onnx-fp32", pairs(1.10))
    assert res.verdict is Verdict.FAIL and not res.passed and res.detail.startswith("slower: median 1.100x")
    assert res.value == pytest.approx(1.10, rel=1e-3) and res.low > 1.05
    res = compare_interleaved(cfg, "local", "onnx-fp32", "onnx-fp32", pairs(1.0))
    assert res.verdict is Verdict.PASS and res.passed and res.detail.startswith("not slower") and res.high < 1.05


def test_cli_measures_the_baseline_build_interleaved(profiled: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A/A through the CLI: the baseline build is a copy of this one. Its check is never "slower"
    at a 50% minimum effect, busy machine or not; the row names the pairs and the test."""
    from edgeship.cli import main

    shutil.copytree(profiled / "build", tmp_path / "build")
    shutil.copytree(profiled / "build" / "artifacts", tmp_path / "main-build" / "artifacts")
    budget = 'device = "local"\ntarget = "*"\nprecision = "*"\nlatency_ms = { p90 = 1.0 }'
    toml = cli_project(tmp_path, {budget: budget.replace('target = "*"\nprecision = "*"', 'target = "onnx"\nprecision = "fp32"')})
    code = main(["--config", str(toml), "gate", "--baseline", str(tmp_path / "main-build"), "--threshold", "0.5"])
    out, err = capsys.readouterr()
    report = json.loads((tmp_path / "build" / "reports" / "report.json").read_text())
    (c,) = [c for c in report["checks"] if c["metric"] == "latency_regression"]
    assert c["device"] == "local" and c["artifact"] == "onnx-fp32" and c["verdict"] in ("PASS", "MARGINAL"), c
    assert "interleaved round pairs, sign-flip p=" in c["detail"] and report["baseline"] is True
    assert code == (0 if all(x["passed"] for x in report["checks"]) else 1), out + err
    # a folder with no artifacts of the model: one line, exit 2
    (tmp_path / "empty").mkdir()
    assert main(["--config", str(toml), "gate", "--baseline", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "--baseline" in err and "no artifacts/digits_cnn/ there" in err and "Traceback" not in err
