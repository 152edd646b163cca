"""weights4: 4-bit weights, simulated in torch so their accuracy cost is measured here.

4-bit storage is a property of the exported file, which only a backend can write; so the
bytes come from the export precision ``int4-weight`` (ONNX: onnxruntime's MatMulNBits on
MatMul/Gemm). This step rounds the same weights (Linear layers, blocks of ``block_size``
along the input dimension, symmetric, 16 levels) in the PyTorch model, so the compress table
shows the accuracy of 4-bit weights and a following ``distill`` can recover from it. The
model stays FP32 in size until exported with ``int4-weight``; the record says so.
"""

from __future__ import annotations

from typing import Any

from edgeship.compress.base import STEPS, Context, Step, StepResult
from edgeship.lazy import require


@STEPS.register("weights4")
class Weights4(Step):
    kind = "weights4"

    def _apply(self, model: Any, ctx: Context) -> StepResult:
        torch = require("torch", "torch")
        bs = self.cfg.block_size
        done: dict[str, list[int]] = {}
        with torch.no_grad():
            for name, m in model.named_modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.copy_(round4(m.weight, bs, torch))
                    done[name] = list(m.weight.shape)
        return StepResult(model, {
            "method": f"symmetric 4-bit per block of {bs} input weights (16 levels), simulated in FP32",
            "layers": done, "export_precision": "int4-weight",
            "size": "unchanged in PyTorch; 4-bit bytes only in an int4-weight export",
        }, [] if done else ["weights4: the model has no Linear layer; nothing rounded"])


def round4(w: Any, block: int, torch: Any) -> Any:
    """Round ``w`` (out x in) to 4-bit blocks along the input dimension; returns a new tensor."""
    out_f, in_f = w.shape
    pad = (-in_f) % block
    x = torch.nn.functional.pad(w, (0, pad)).reshape(out_f, -1, block)
    scale = x.abs().amax(-1, keepdim=True) / 8.0
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.clamp(torch.round(x / scale), -8, 7) * scale
    return q.reshape(out_f, -1)[:, :in_f]
