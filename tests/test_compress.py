"""compress: each recipe on a tiny model, the stage end to end, and bad recipes at the CLI.

The tiny model labels its own synthetic data (labels = its argmax), so the original is 100%
accurate and every drop in the tables is caused by compression.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edgeship.cli import main
from edgeship.config import load_config

IN = [1, 1, 8, 8]


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.fc = nn.Linear(128, 64)
        self.head = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc(self.features(x).flatten(1))))


def tiny_net() -> nn.Module:
    m = TinyNet().eval()
    with torch.no_grad():   # non-trivial BatchNorm statistics, so pruning has to carry them
        for bn in (m.features[1], m.features[4]):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
        m.head.weight.mul_(30.0)   # confident logits, like a trained classifier's
    return m


def _data(seed: int, n: int) -> dict[str, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((n, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = tiny_net()(torch.from_numpy(x)).argmax(1).numpy()
    return {"image": x, "label": y.astype(np.int64)}


def train_data() -> Any:
    d = _data(1, 512)
    for i in range(0, 512, 64):
        yield {k: v[i : i + 64] for k, v in d.items()}


def eval_data() -> Any:
    yield _data(2, 128)


def write_project(tmp: Path, steps: str, extra: str = "", train: bool = True) -> Path:
    text = f"""
[model]
name = "tiny"
factory = "tests.test_compress:tiny_net"
outputs = ["logits"]
inputs = [{{ name = "image", shape = {IN}, dtype = "float32" }}]

[data]
calibration = "tests.test_compress:train_data"
evaluation = "tests.test_compress:eval_data"
{'train = "tests.test_compress:train_data"' if train else ''}
calibration_samples = 16

[targets.onnx]
precisions = ["fp32", "int8"]

[targets.tflite]
precisions = ["fp32"]

[compress]
seed = 0
{steps}
{extra}
"""
    path = tmp / "edgeship.toml"
    path.write_text(text)
    return path


PRUNE = '[[compress.steps]]\nkind = "prune"\nsparsity = 0.5\n'
DISTILL = '[[compress.steps]]\nkind = "distill"\nepochs = 6\nlr = 0.003\npatience = 6\n'


def _compress(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["-c", str(path), "compress"]) == 0
    out = capsys.readouterr().out
    assert "original" in out and "accuracy" in out   # the per-step table
    return json.loads((path.parent / "build/compressed/tiny/manifest.json").read_text())


def _kl_to_teacher(model: nn.Module) -> float:
    x = torch.from_numpy(_data(2, 128)["image"])
    with torch.no_grad():   # the saved program is batch-1, like the input spec
        t, s = tiny_net()(x), torch.cat([model(x[i : i + 1]) for i in range(len(x))])
    return float(torch.nn.functional.kl_div(s.log_softmax(1), t.log_softmax(1), log_target=True, reduction="batchmean"))


def test_prune_keeps_shapes_and_every_export_path_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.artifact.manifest import read_manifest
    from edgeship.compress.store import load_verified
    from edgeship.measure.evaluate import evaluate

    budgets = ('[[budgets]]\ntarget = "onnx"\nprecision = "fp32"\nmax_accuracy_drop = 0.0\n\n'
               '[[budgets]]\ntarget = "onnx"\nprecision = "fp32"\nmax_accuracy_drop = 0.0\nrelative_to = "original"\n')
    path = write_project(tmp_path, PRUNE + '[[compress.steps]]\nkind = "prune"\nsparsity = 0.0\nunstructured = 0.3\n',
                         budgets)
    m = _compress(path, capsys)
    prune = m["steps"][0]
    assert prune["channels"]["features.0"] == [16, 8] and prune["channels"]["features.3"] == [32, 16]
    assert prune["channels"]["fc"] == [64, 32]
    assert "head" in prune["kept_whole"] and "head" not in prune["channels"]    # output width kept
    assert m["steps"][1]["unstructured"]["zeros"] > 0
    assert m["compressed"]["params"] < 0.35 * m["original"]["params"]
    model, _, _ = load_verified(load_config(path))
    assert model(torch.zeros(IN)).shape == (1, 4)
    assert main(["-c", str(path), "export", "--target", "onnx,tflite"]) == 0
    cfg = load_config(path)
    for name in ("onnx-fp32", "onnx-int8", "tflite-fp32"):
        man = read_manifest(cfg.artifacts_dir / name)
        assert man.recipe["source"]["kind"] == "compressed", name
        assert man.size_bytes < 0.6 * 4 * m["original"]["params"]
    report = evaluate(cfg, None, None)
    e = report["entries"]["local/onnx-fp32"]
    assert e["source"] == "compressed" and e["cosine_min"] > 0.999     # vs the compressed FP32 model
    assert e["accuracy_drop_original"] == pytest.approx(1.0 - e["accuracy"])   # original is 100%
    assert e["accuracy"] < 1.0    # pruning without distillation costs accuracy on this net
    from edgeship.gating.judge import gate

    verdicts = [(c.check.budget, c.passed) for c in gate(cfg).checks]
    # vs the compressed FP32 model the export is exact; vs the original it lost accuracy
    assert verdicts == [(0, True), (1, False)]
    _relative_to_judges_cosine_too(path, e)
    # --from original exports the uncompressed model and says so
    assert main(["-c", str(path), "export", "--target", "onnx", "--precision", "fp32", "--from", "original"]) == 0
    man = read_manifest(cfg.artifacts_dir / "onnx-fp32")
    assert man.recipe["source"] == {"kind": "original"}
    assert man.size_bytes > 4 * m["original"]["params"]


def _relative_to_judges_cosine_too(path: Path, e: dict[str, Any]) -> None:
    """relative_to = "original" judges min_cosine against the original FP32 model as it does the
    accuracy drop: a pruned model agrees with its compressed self, not with the model it replaces."""
    from edgeship.gating.judge import gate

    # the labels are the original model's argmax: top-1 agreement with it is the accuracy
    assert e["top1_agreement_original"] == pytest.approx(e["accuracy"])
    assert e["cosine_mean_original"] < e["cosine_mean"] and e["cosine_min_original"] <= e["cosine_mean_original"]
    mid = (e["cosine_mean_original"] + e["cosine_mean"]) / 2    # a limit between the two figures
    budget = f'[[budgets]]\ntarget = "onnx"\nprecision = "fp32"\nmin_cosine = {mid!r}\n'
    path.write_text(path.read_text() + f'\n{budget}\n{budget}relative_to = "original"\n')
    checks = {c.check.budget: c for c in gate(load_config(path)).checks if c.check.metric == "cosine_mean"}
    assert checks[2].passed and checks[2].value == e["cosine_mean"]
    assert "vs the compressed FP32 model" in checks[2].detail and checks[2].to_dict()["relative_to"] == "source"
    assert not checks[3].passed and checks[3].value == e["cosine_mean_original"]
    assert "vs the original FP32 model" in checks[3].detail and checks[3].to_dict()["relative_to"] == "original"


def test_tampered_or_stale_compressed_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_project(tmp_path, PRUNE)
    _compress(path, capsys)
    for name in ("weights.npz", "model.pt2"):
        f = path.parent / "build/compressed/tiny" / name
        good = f.read_bytes()
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
        assert main(["-c", str(path), "export", "--target", "onnx", "--precision", "fp32"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "sha256 does not match" in err[0] and name in err[0]
        f.write_bytes(good)
    _compress(path, capsys)
    path.write_text(path.read_text().replace("sparsity = 0.5", "sparsity = 0.25"))
    assert main(["-c", str(path), "export", "--target", "onnx", "--precision", "fp32"]) == 2
    assert "re-run 'edgeship compress'" in capsys.readouterr().err


def test_distillation_reduces_the_students_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.compress.store import load_verified

    hard = '[[compress.steps]]\nkind = "prune"\nsparsity = 0.75\n'
    pruned_dir = tmp_path / "p"
    pruned_dir.mkdir()
    pruned_cfg = write_project(pruned_dir, hard)
    _compress(pruned_cfg, capsys)
    pruned, _, _ = load_verified(load_config(pruned_cfg))
    path = write_project(tmp_path, hard + DISTILL)
    assert main(["-c", str(path), "compress"]) == 0
    progress = capsys.readouterr().err
    assert "distill epoch 1/6" in progress
    m = json.loads((tmp_path / "build/compressed/tiny/manifest.json").read_text())
    d = m["steps"][1]
    assert d["eval_loss_after"] < 0.8 * d["eval_loss_before"]
    assert d["history"][-1]["train_loss"] < d["history"][0]["train_loss"]
    distilled, _, _ = load_verified(load_config(path))
    assert _kl_to_teacher(distilled) < 0.8 * _kl_to_teacher(pruned)   # measured independently
    assert m["table"][2]["accuracy"] > m["table"][1]["accuracy"]
    # deterministic: the same seed gives the same student
    assert main(["-c", str(path), "compress"]) == 0
    again = json.loads((tmp_path / "build/compressed/tiny/manifest.json").read_text())
    assert again["steps"][1]["history"] == d["history"]


def test_low_rank_keeps_the_energy_fraction() -> None:
    from edgeship.compress.base import Context
    from edgeship.compress.steps.low_rank import LowRank
    from edgeship.config import LowRankStep

    model = tiny_net()
    w = model.fc.weight.detach().clone()
    ctx = Context(teacher=None, example=(torch.zeros(IN),), input_names=("image",), seed=0, train=None,
                  evaluation=lambda: ({}, None))
    res = LowRank(LowRankStep(kind="low_rank", energy=0.8, min_features=32), 0).apply(model, ctx)
    rec = res.record["layers"]["fc"]
    a, b = res.model.fc[0].weight.detach(), res.model.fc[1].weight.detach()
    assert a.shape == (rec["rank"], 128) and b.shape == (64, rec["rank"]) and rec["rank"] < 64
    err = float(((b @ a - w) ** 2).sum() / (w ** 2).sum())
    assert rec["energy_kept"] >= 0.8 and err == pytest.approx(1 - rec["energy_kept"], abs=1e-4)
    assert "head" in res.record["skipped"]          # 4 outputs: below min_features
    assert res.model(torch.zeros(IN)).shape == (1, 4)


def test_weights4_rounds_to_16_levels_and_onnx_int4_weight_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    from edgeship.artifact.manifest import read_manifest
    from edgeship.compress.steps.weights4 import round4

    w = torch.randn(8, 96)
    q = round4(w, 32, torch)
    for blk in q.reshape(8, 3, 32).reshape(-1, 32):
        assert len(torch.unique(blk)) <= 16
    path = write_project(tmp_path, '[[compress.steps]]\nkind = "weights4"\nblock_size = 32\n')
    m = _compress(path, capsys)
    assert set(m["steps"][0]["layers"]) == {"fc", "head"}
    assert main(["-c", str(path), "export", "--target", "onnx,tflite", "--precision", "fp32,int4-weight"]) == 0
    cfg = load_config(path)
    graph = onnx.load(str(cfg.artifacts_dir / "onnx-int4-weight" / "model.onnx")).graph
    assert sum(n.op_type == "MatMulNBits" for n in graph.node) == 2
    tfl = read_manifest(cfg.artifacts_dir / "tflite-int4-weight")
    assert tfl.recipe["quantizer"] == "ai_edge_quantizer weight_only_wi4_afp32"
    assert tfl.size_bytes < 0.45 * read_manifest(cfg.artifacts_dir / "tflite-fp32").size_bytes
    capsys.readouterr()
    # coreml has no int4-weight: one line, exit 2, before any work
    assert main(["-c", str(path), "export", "--target", "coreml", "--precision", "int4-weight"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no precision 'int4-weight'" in err[0]


@pytest.mark.parametrize("steps, train, needle", [
    ('[[compress.steps]]\nkind = "prune"\nsparsity = 1.0\n', True, "compress.steps[0].sparsity"),
    ('[[compress.steps]]\nkind = "low_rank"\nrank = 0\n', True, "compress.steps[0].rank"),
    ('[[compress.steps]]\nkind = "low_rank"\nenergy = 0\n', True, "compress.steps[0].energy"),
    (PRUNE + DISTILL, False, "[data] train"),
    ("", True, "no [compress] steps"),
])
def test_bad_recipes_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         steps: str, train: bool, needle: str) -> None:
    path = write_project(tmp_path, steps, train=train)
    assert main(["-c", str(path), "compress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "build/compressed").exists()    # nothing written


def test_export_needs_the_compressed_model_when_compress_is_configured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_project(tmp_path, PRUNE)
    assert main(["-c", str(path), "export", "--target", "onnx", "--precision", "fp32"]) == 2
    assert "run 'edgeship compress' first" in capsys.readouterr().err


def _published(parent: Path, name: str) -> Path:
    """The one version directory ``parent/name`` links to; it must be a directory, not a link."""
    link = parent / name
    assert link.is_symlink(), f"{link} is not the published link"
    target = parent / os.readlink(link)
    assert target.is_dir() and not target.is_symlink(), f"{link} -> {os.readlink(link)} is a chain, not one level"
    return target


def test_compress_reruns_keep_one_link_and_export_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every run publishes one new version behind the same link (it once nested one level per run,
    and the 7th failed with 'File name too long'); a chain older edgeship left is undone."""
    from edgeship.artifact.manifest import read_manifest

    path = write_project(tmp_path, PRUNE)
    parent = tmp_path / "build/compressed"
    seen: set[str] = set()
    for i in range(8):
        _compress(path, capsys)
        version = _published(parent, "tiny")
        assert version.name not in seen   # a new version each run
        seen.add(version.name)
        assert sorted(p.name for p in parent.iterdir()) == sorted(["tiny", version.name]), f"run {i + 1}"
        if i == 5:   # the chain older edgeship made: tiny -> .tiny.vA (a link) -> ..tiny.vA.vB (the model)
            nested = parent / f".{version.name}.v{'0' * 32}"
            version.rename(nested)
            version.symlink_to(nested.name)
    assert main(["-c", str(path), "export", "--target", "onnx", "--precision", "fp32"]) == 0
    capsys.readouterr()
    src = read_manifest(load_config(path).artifacts_dir / "onnx-fp32").recipe["source"]
    assert src["kind"] == "compressed" and Path(src["path"]) == parent.resolve() / "tiny"


def test_every_registered_step_is_tested_here() -> None:
    from edgeship.compress.base import STEPS

    tested = {"prune", "low_rank", "distill", "weights4"}   # the tests above, one per recipe
    assert set(STEPS.names()) == tested
