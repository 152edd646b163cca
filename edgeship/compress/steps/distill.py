"""distill: fine-tune the student against the original model's logits on [data] train.

Loss = alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * cross-entropy
on the labels (the KL term alone when [data] train has no labels). The model's first output
is taken as the logits. After each epoch the same loss is measured on the evaluation set and
the best epoch's weights are kept; training stops after ``patience`` epochs without
improvement (the evaluation set thus picks the epoch, which the record states). Deterministic
for a given seed: seeded shuffling, deterministic kernels, one thread.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from edgeship.compress.base import STEPS, Context, Step, StepResult
from edgeship.errors import ConfigError
from edgeship.lazy import require

EVAL_BATCH = 256


@STEPS.register("distill")
class Distill(Step):
    kind = "distill"

    def check(self, ctx: Context) -> None:
        if ctx.train is None:
            raise ConfigError(
                f"key '{self.key}': distill needs training data; set [data] train = \"pkg.module:fn\" "
                "(or a directory of .npz batches) in edgeship.toml"
            )

    def _apply(self, model: Any, ctx: Context) -> StepResult:
        torch = require("torch", "torch")
        c = self.cfg
        assert ctx.train is not None
        x_tr, y_tr = ctx.train()
        x_ev, y_ev = ctx.evaluation()
        names = ctx.input_names
        t_tr = logits(ctx.teacher, x_tr, names, torch)
        t_ev = logits(ctx.teacher, x_ev, names, torch)
        xt = {k: torch.from_numpy(v) for k, v in x_tr.items()}
        yt = None if y_tr is None else torch.from_numpy(y_tr.reshape(-1).astype(np.int64))
        n = len(t_tr)
        gen = torch.Generator().manual_seed(ctx.seed)
        opt = torch.optim.Adam(model.parameters(), lr=c.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)   # settles late epochs
        history: list[dict[str, float]] = []
        from edgeship.determinism import deterministic

        with torch.random.fork_rng(), deterministic(torch):
            torch.manual_seed(ctx.seed)
            start = self._eval_loss(model, x_ev, t_ev, y_ev, names, torch)
            best, best_state, best_epoch, since, steps = start, copy.deepcopy(model.state_dict()), 0, 0, 0
            ctx.say(f"  distill: {n} training rows, evaluation loss before {start:.4f}")
            for epoch in range(1, c.epochs + 1):
                model.train()
                perm = torch.randperm(n, generator=gen)
                total = 0.0
                for i in range(0, n, c.batch_size):
                    idx = perm[i : i + c.batch_size]
                    out = _first(model(*[xt[k][idx] for k in names]))
                    loss = self.loss(out, t_tr[idx], None if yt is None else yt[idx], torch)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                    steps += 1
                    if c.max_steps is not None and steps >= c.max_steps:
                        break
                sched.step()
                model.eval()
                ev = self._eval_loss(model, x_ev, t_ev, y_ev, names, torch)
                history.append({"epoch": epoch, "train_loss": total / n, "eval_loss": ev})
                mark = ""
                if ev < best - 1e-6:
                    best, best_state, best_epoch, since, mark = ev, copy.deepcopy(model.state_dict()), epoch, 0, " (best)"
                else:
                    since += 1
                ctx.say(f"  distill epoch {epoch}/{c.epochs}: train loss {total / n:.4f}, evaluation loss {ev:.4f}{mark}")
                if since >= c.patience or (c.max_steps is not None and steps >= c.max_steps):
                    break
        model.load_state_dict(best_state)
        model.eval()
        return StepResult(model, {
            "loss": f"{c.alpha:g} * T^2 * KL(teacher/T || student/T) + {1 - c.alpha:g} * cross-entropy"
                    if y_tr is not None else "T^2 * KL(teacher/T || student/T) (no labels in [data] train)",
            "temperature": c.temperature, "lr": c.lr, "lr_schedule": f"cosine over {c.epochs} epochs", "batch_size": c.batch_size, "seed": ctx.seed,
            "train_source": ctx.train_ref, "train_rows": n, "steps": steps, "epochs_run": len(history),
            "best_epoch": best_epoch, "eval_loss_before": start, "eval_loss_after": best,
            "early_stopping": f"patience {c.patience} on the evaluation-set loss (the evaluation set picks the epoch)",
            "history": history,
        })

    def loss(self, student: Any, teacher: Any, labels: Any, torch: Any) -> Any:
        F = torch.nn.functional
        T = self.cfg.temperature
        kl = F.kl_div(F.log_softmax(student / T, -1), F.log_softmax(teacher / T, -1), log_target=True,
                      reduction="batchmean") * T * T
        if labels is None:
            return kl
        a = self.cfg.alpha
        return a * kl + (1 - a) * F.cross_entropy(student, labels)

    def _eval_loss(self, model: Any, x: dict[str, np.ndarray], teacher: Any, y: np.ndarray | None,
                   names: tuple[str, ...], torch: Any) -> float:
        s = logits(model, x, names, torch)
        labels = None if y is None else torch.from_numpy(y.reshape(-1).astype(np.int64))
        with torch.no_grad():
            return float(self.loss(s, teacher, labels, torch))


def logits(model: Any, x: dict[str, np.ndarray], names: tuple[str, ...], torch: Any) -> Any:
    """The first output of ``model`` on stacked inputs, batched, without gradients."""
    n = len(next(iter(x.values())))
    outs = []
    with torch.no_grad():
        for i in range(0, n, EVAL_BATCH):
            outs.append(_first(model(*[torch.from_numpy(x[k][i : i + EVAL_BATCH]) for k in names])))
    return torch.cat(outs).float()


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out
