"""low_rank: SVD factorization of Linear and 1x1 Conv layers.

W (out x in) = U S V^T is cut to the smallest rank r whose singular values keep ``energy`` of
sum(S^2) (or a fixed ``rank``), and the layer becomes two: in -> r (V^T, no bias) and
r -> out (U S, the bias). A layer is factorized only where r * (in + out) < in * out, i.e.
where it actually gets smaller; the record lists each layer's rank and kept energy.
"""

from __future__ import annotations

from typing import Any

from edgeship.compress.base import STEPS, Context, Step, StepResult
from edgeship.lazy import require


@STEPS.register("low_rank")
class LowRank(Step):
    kind = "low_rank"

    def _apply(self, model: Any, ctx: Context) -> StepResult:
        torch = require("torch", "torch")
        c = self.cfg
        nn = torch.nn
        candidates = {
            n: m for n, m in model.named_modules()
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
                                             and m.groups == 1 and m.stride == (1, 1) and m.padding in ((0, 0), 0))
        }
        layers: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        for name, m in candidates.items():
            w = m.weight.detach().reshape(m.weight.shape[0], -1)
            out_f, in_f = w.shape
            if min(out_f, in_f) < c.min_features:
                skipped[name] = f"{out_f}x{in_f} below min_features={c.min_features}"
                continue
            s = torch.linalg.svdvals(w.double())
            rank, kept = choose_rank(s, c.energy, c.rank)
            if rank * (in_f + out_f) >= in_f * out_f:
                skipped[name] = f"rank {rank} of {out_f}x{in_f} would not save parameters"
                continue
            _replace(model, name, factorize(m, rank, torch))
            layers[name] = {"shape": [out_f, in_f], "rank": rank, "energy_kept": kept}
        return StepResult(model, {"method": "truncated SVD, W = (U S) V^T", "energy": c.energy, "rank": c.rank,
                                  "layers": layers, "skipped": skipped},
                          [] if layers else ["low_rank: no layer got smaller"])


    def rebuild(self, model: Any, record: dict[str, Any], example: tuple[Any, ...]) -> Any:
        torch = require("torch", "torch")
        modules = dict(model.named_modules())
        for name, rec in record["layers"].items():
            _replace(model, name, factorize(modules[name], int(rec["rank"]), torch))
        return model


def choose_rank(s: Any, energy: float, fixed: int | None) -> tuple[int, float]:
    """Smallest rank keeping ``energy`` of sum(s^2) (or ``fixed``), and the fraction kept."""
    e = (s ** 2).cumsum(0) / (s ** 2).sum()
    if fixed is not None:
        rank = min(int(fixed), len(s))
    else:
        rank = int((e < energy - 1e-12).sum().item()) + 1
        rank = min(rank, len(s))
    return rank, float(e[rank - 1].item())


def factorize(m: Any, rank: int, torch: Any) -> Any:
    nn = torch.nn
    w = m.weight.detach().reshape(m.weight.shape[0], -1).double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    first = (vh[:rank]).float()                    # rank x in
    second = (u[:, :rank] * s[:rank]).float()      # out x rank
    if isinstance(m, nn.Linear):
        a = nn.Linear(m.in_features, rank, bias=False)
        b = nn.Linear(rank, m.out_features, bias=m.bias is not None)
        a.weight.data.copy_(first)
        b.weight.data.copy_(second)
    else:
        a = nn.Conv2d(m.in_channels, rank, 1, bias=False)
        b = nn.Conv2d(rank, m.out_channels, 1, bias=m.bias is not None)
        a.weight.data.copy_(first[:, :, None, None])
        b.weight.data.copy_(second[:, :, None, None])
    if m.bias is not None:
        b.bias.data.copy_(m.bias.detach())
    return nn.Sequential(a, b)


def _replace(model: Any, name: str, new: Any) -> None:
    parent = model
    *path, last = name.split(".")
    for p in path:
        parent = getattr(parent, p)
    setattr(parent, last, new)
