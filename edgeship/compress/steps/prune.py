"""prune: structured L1/L2 channel pruning with dependency handling (torch-pruning).

Whole output channels of Conv/Linear layers are removed together with everything that
depends on them (BatchNorm, the next layer's input channels, residual partners), so the
model stays a plain dense model that every backend runs faster. The layers producing the
model's outputs are never pruned (their width is the output's shape). ``unstructured``
then zeroes the smallest remaining weights: dense runtimes still compute and store those
zeros, so it only saves bytes after general-purpose compression; the record says so.
"""

from __future__ import annotations

from typing import Any

from edgeship.compress.base import STEPS, Context, Step, StepResult
from edgeship.errors import ExportError
from edgeship.lazy import require


@STEPS.register("prune")
class Prune(Step):
    kind = "prune"

    def _apply(self, model: Any, ctx: Context) -> StepResult:
        torch = require("torch", "torch")
        c = self.cfg
        record = self._prune(model, ctx.example)
        notes = []
        if c.unstructured > 0:
            record["unstructured"] = {
                "fraction": c.unstructured, "zeros": magnitude_zero(model, c.unstructured, torch),
                "saves": "nothing in a dense runtime; bytes only after general-purpose compression of the file",
            }
            notes.append(f"unstructured {c.unstructured:.0%} zeros: dense runtimes store and compute them")
        return StepResult(model, record, notes)

    def rebuild(self, model: Any, record: dict[str, Any], example: tuple[Any, ...]) -> Any:
        # the channel counts per layer depend only on the ratios, not on the weights' values
        again = self._prune(model, example)
        if again["channels"] != record["channels"]:
            from edgeship.errors import ArtifactError

            raise ArtifactError(f"{self.key} (prune): the model's layers no longer prune to the recorded "
                                "widths (did the model factory change?); re-run 'edgeship compress'")
        return model

    def _prune(self, model: Any, example: tuple[Any, ...]) -> dict[str, Any]:
        torch = require("torch", "torch")
        tp = require("torch_pruning", "compress", "structured pruning")
        c = self.cfg
        layers = {n: m for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Linear))}
        unknown = [n for n in c.ignore if n not in layers]
        if unknown:
            from edgeship.errors import ConfigError

            raise ConfigError(f"key '{self.key}.ignore': no Conv/Linear layer named {unknown}; layers: {', '.join(layers)}")
        heads = output_layers(model, example, layers)
        ignored = sorted(set(heads) | set(c.ignore))
        ratios = {}
        for name, m in layers.items():
            if name in ignored:
                continue
            r = c.linear if isinstance(m, torch.nn.Linear) else c.conv
            ratios[m] = c.sparsity if r is None else r
        before = {n: _width(m) for n, m in layers.items()}
        importance = tp.importance.MagnitudeImportance(p=1 if c.norm == "l1" else 2)
        try:
            pruner = tp.pruner.MetaPruner(
                model, example, importance=importance, pruning_ratio=c.sparsity,
                pruning_ratio_dict=ratios, ignored_layers=[layers[n] for n in ignored],
            )
            pruner.step()
        except Exception as exc:
            raise ExportError(f"{self.key} (prune): torch-pruning failed on this model: {type(exc).__name__}: {exc}") from exc
        after = {n: _width(m) for n, m in model.named_modules() if n in layers}
        return {
            "method": f"torch-pruning MetaPruner, {c.norm.upper()} magnitude of whole channels, per layer",
            "sparsity": c.sparsity, "conv": c.conv, "linear": c.linear, "kept_whole": ignored,
            "channels": {n: [before[n], after[n]] for n in layers if before[n] != after[n]},
        }


def output_layers(model: Any, example: tuple[Any, ...], layers: dict[str, Any]) -> list[str]:
    """Names of the Conv/Linear layers whose output is (one of) the model's outputs.

    Falls back to the last layer called when the output passes through a reshape.
    """
    torch = require("torch", "torch")
    produced: dict[int, str] = {}
    order: list[str] = []
    hooks = [m.register_forward_hook(_record(n, produced, order)) for n, m in layers.items()]
    try:
        with torch.no_grad():
            out = model(*example)
    finally:
        for h in hooks:
            h.remove()
    outs = out if isinstance(out, (tuple, list)) else (out,)
    heads = [produced[id(o)] for o in outs if id(o) in produced]
    return heads or order[-1:]


def _record(name: str, produced: dict[int, str], order: list[str]) -> Any:
    def hook(_m: Any, _i: Any, out: Any) -> None:
        produced[id(out)] = name
        order.append(name)

    return hook


def _width(m: Any) -> int:
    width: Any = getattr(m, "out_channels", None) or getattr(m, "out_features", 0)
    return int(width)


def magnitude_zero(model: Any, fraction: float, torch: Any) -> int:
    """Zero the ``fraction`` smallest-magnitude weights of each Conv/Linear; returns the count."""
    total = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Linear)):
                w = m.weight
                k = int(w.numel() * fraction)
                if k == 0:
                    continue
                thresh = w.abs().flatten().kthvalue(k).values
                mask = w.abs() > thresh
                total += int((~mask).sum())
                w.mul_(mask)
    return total
