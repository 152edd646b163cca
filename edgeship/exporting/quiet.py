"""Silence converter chatter (torch.onnx, onnxruntime.quantization, litert) during exports.

The converters log through ``warnings``, the root logger, and from native code (absl/MLIR
``I0000 ...`` lines, TensorFlow's oneDNN banner) straight to file descriptors 1 and 2.
edgeship records the decisions that matter in the manifest, so that noise is dropped: Python
loggers are raised to ERROR and both descriptors point at a scratch file while a converter
runs. Errors still raise, with the message that names the op or file. ``EDGESHIP_VERBOSE=1``
keeps everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
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
        with warnings.catch_warnings(), _native_output_dropped():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


@contextlib.contextmanager
def _native_output_dropped() -> Iterator[None]:
    """Point fds 1 and 2 at a scratch file for the block (native libraries bypass sys.stderr)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as scratch:
            os.dup2(scratch.fileno(), 1)
            os.dup2(scratch.fileno(), 2)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)
