from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from edgeship.artifact.atomic import write_text_atomic
from edgeship.commands import command
from edgeship.config import CONFIG_NAME
from edgeship.errors import UsageError

STARTER = '''\
# edgeship project. Every key is documented in docs/config.md.

[model]
name = "my_model"
factory = "my_package.models:build"     # returns a torch.nn.Module; or: source = "model.pt2"
outputs = ["output"]
inputs = [{ name = "input", shape = [1, 3, 224, 224], dtype = "float32" }]

[data]
calibration = "calibration_data/"      # .npz files keyed by input name, or "pkg.module:fn"
# evaluation = "my_package.data:eval_batches"   # may also yield "label"
calibration_samples = 256

[quantization]
method = "minmax"                      # minmax | percentile | entropy
per_channel = true

[targets.onnx]
precisions = ["fp32", "fp16", "int8"]

[targets.tflite]
precisions = ["fp32", "fp16", "int8"]

[profile]
threads = 1

# [[budgets]]
# device = "local"
# target = "tflite"
# precision = "int8"
# latency_ms = { p90 = 5.0 }
# peak_memory_mb = 40
# size_kb = 500
# max_accuracy_drop = 0.01
'''


@command("init", help="write a starter edgeship.toml in the current directory", order=0,
         example="edgeship init && edgeship export && edgeship profile && edgeship gate")
class Init:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--force", action="store_true", help="overwrite an existing edgeship.toml")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        path = Path(args.config or CONFIG_NAME)
        if path.exists() and not args.force:
            raise UsageError(f"{path} exists; pass --force to overwrite it")
        write_text_atomic(path, STARTER)
        print(f"wrote {path}")
        cfg = "" if path.name == CONFIG_NAME and path.parent == Path() else f" -c {shlex.quote(str(path))}"
        print("next: edit [model] (factory, inputs) and [data], then:")
        print(f"  edgeship{cfg} export      # build the artifacts into build/artifacts/")
        print(f"  edgeship{cfg} profile     # measure latency and memory on this CPU")
        print(f"  edgeship{cfg} gate        # judge them against [[budgets]] (exit 1 on a failure)")
        return 0
