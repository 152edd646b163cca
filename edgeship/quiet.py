"""Silence converter chatter (torch.onnx, onnxruntime.quantization, litert) during exports.

The converters log through ``warnings`` and the root logger; edgeship records the decisions
that matter in the manifest, so their noise is dropped. Errors still raise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    if os.environ.get("EDGESHIP_VERBOSE"):
        yield
        return
    root = logging.getLogger()
    names = ["torch.onnx", "torch._export", "torch.export", "onnxscript", "absl", "jax", "coremltools"]
    loggers = [root] + [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)
