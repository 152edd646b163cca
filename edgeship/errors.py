"""The one exception tree of edgeship.

    EdgeshipError                 base; the CLI prints ``str(exc)`` on one line
    ├── UsageError                user error: bad config, bad input, missing file (exit 2)
    │   ├── ConfigError           edgeship.toml: unknown key, wrong type, bad reference
    │   ├── InputDataError        calibration/evaluation data, inputs.npz shape/dtype
    │   ├── ArtifactError         corrupt artifact, manifest sha256 mismatch
    │   ├── MissingDependency     an optional extra is not installed (says what to install)
    │   └── UnknownNameError      a registry lookup of an unknown name
    ├── ExportError               a conversion failed (op cannot be lowered, inf/NaN outputs)
    ├── RuntimeFailure            loading or running an artifact failed
    └── DeviceError               a device is unreachable, timed out, or a remote step failed

Foreign errors (torch, onnxruntime, coremltools, ssh) are re-raised as one of these
``from exc`` with context: which model, target, precision, device or file. Every subclass of
EdgeshipError is a user-facing condition (exit 2 from the CLI); a traceback means a bug.
"""

from __future__ import annotations

import re

# Terminal control sequences (CSI colours, OSC titles) and other control characters: torch
# colours its error text, which must not reach a CI log or a piped stderr as escape codes.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|[\x00-\x08\x0b-\x1f\x7f]")


def one_line(msg: str) -> str:
    """An error's text as one plain line: lines joined, terminal escapes and control characters dropped."""
    return " ".join(part.strip() for part in _CONTROL.sub("", msg).splitlines() if part.strip())


class EdgeshipError(Exception):
    """Base of every error edgeship raises on purpose."""

    exit_code = 2


class UsageError(EdgeshipError):
    """The user asked for something impossible: fix the input and run again."""


class ConfigError(UsageError):
    """edgeship.toml is invalid; the message names the file and key."""


class InputDataError(UsageError):
    """Calibration, evaluation or profiling inputs are missing or malformed."""


class ArtifactError(UsageError):
    """An artifact directory is missing, corrupt, or does not match its manifest."""


class MissingDependency(UsageError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str, purpose: str = "") -> None:
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"python module '{module}' is not installed{what}: pip install 'edgeship[{extra}]'"
        )
        self.module = module
        self.extra = extra


class UnknownNameError(UsageError):
    """A registry was asked for a name it does not know."""


class ExportError(EdgeshipError):
    """Converting a model to a target format failed."""


class AccuracyFallbackFailed(ExportError):
    """Accuracy-aware INT8 could not meet the budget within [quantization] max_float_fraction."""

    exit_code = 1


class RuntimeFailure(EdgeshipError):
    """Loading or running an artifact with its runtime failed."""


class DeviceError(EdgeshipError):
    """A device could not be reached or a step on it failed or timed out."""


# Ctrl-C while a C extension initialises (numpy, onnxruntime's pybind11 module) does not reach
# us as KeyboardInterrupt: the extension reports "ImportError: initialization failed" and the
# interrupt is gone. The CLI's SIGINT handler records every interrupt here, so a backend error
# that follows one is reported as the interrupt it was, never recorded as a failed artifact.
_interrupted = False


def note_interrupt(signum: int = 2, frame: object = None) -> None:
    """SIGINT handler: remember the interrupt, then interrupt as Python's default handler does."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def interrupted() -> bool:
    return _interrupted
