"""edgeship.toml, parsed once into typed, frozen objects.

Unknown keys, wrong types and bad values are ConfigError naming the file and the dotted key,
with a did-you-mean suggestion for typos. Paths in the file are relative to the file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgeship.errors import ConfigError
from edgeship.types import CalibrationMethod, IOType, OutputKind, Precision, QuantType, Target

CONFIG_NAME = "edgeship.toml"
DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")
# Model and device names become directory names under build/: plain names only, so no
# name can write outside build/ ("../../x") or hide itself (".x").
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_RULE = "a plain name: letters, digits, '_', '.', '-', starting with a letter or digit"
# Every duration in the file is finite and at most a day: `timeout_s = 1e300` is a typo, not
# a wish, and would overflow the clocks that use it.
MAX_SECONDS = 86400.0


def check_name(v: str, what: str) -> str:
    if not NAME_RE.match(v) or ".." in v:
        raise ValueError(f"{what} {v!r} must be {NAME_RULE}")
    return v


class _Frozen(BaseModel):
    # allow_inf_nan=False: TOML has inf and nan literals; no number edgeship reads may be one
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False, allow_inf_nan=False)


class InputSpec(_Frozen):
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    # Inclusive value range for integer inputs (token ids) used for synthetic profiling data.
    range: tuple[float, float] | None = None

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        if v not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
        return v

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(d <= 0 for d in v):
            raise ValueError("shape must be a non-empty list of positive integers")
        if any(d > 2**31 - 1 for d in v):
            raise ValueError("shape dimensions must be below 2**31")
        return v


class ModelConfig(_Frozen):
    name: str
    factory: str | None = None      # "pkg.module:fn" returning an nn.Module
    source: Path | None = None      # a saved torch.export program (.pt2)
    # torch.export.load unpickles; a .pt2 with pickled payloads is refused unless trusted
    trust_source: bool = False
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...] = ("output",)
    # output name -> kind (eval's metrics); an output not named here is inferred (edgeship/measure/output_kinds.py)
    output_kinds: dict[str, OutputKind] = {}

    @field_validator("output_kinds")
    @classmethod
    def _kinds_name_outputs(cls, v: dict[str, OutputKind], info: Any) -> dict[str, OutputKind]:
        outputs = info.data.get("outputs") or ()
        for name in v:
            if name not in outputs:
                raise ValueError(f"{name!r} is not one of the outputs ({', '.join(outputs)}); "
                                 "output_kinds maps an output name of 'model.outputs' to its kind")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.factory is None) == (self.source is None):
            raise ValueError("set exactly one of 'factory' (\"pkg.module:fn\") or 'source' (.pt2)")
        if len({i.name for i in self.inputs}) != len(self.inputs):
            raise ValueError("input names must be unique")
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "model name")


class DataConfig(_Frozen):
    # "pkg.module:fn" yielding dict[str, ndarray] batches, or a directory of .npz/.npy files.
    calibration: str | None = None
    evaluation: str | None = None
    train: str | None = None        # labelled training batches, for [compress] distill
    calibration_samples: int = Field(256, gt=0, le=10_000_000)
    evaluation_samples: int | None = Field(None, gt=0, le=10_000_000)
    label_key: str = "label"


class QuantizationConfig(_Frozen):
    method: CalibrationMethod = CalibrationMethod.MINMAX
    per_channel: bool = True
    percentile: float = Field(99.999, gt=50.0, le=100.0)
    activation_type: QuantType = QuantType.AUTO
    weight_type: QuantType = QuantType.INT8
    # accuracy-aware INT8 (edgeship/accuracy/search.py): when an INT8 build misses the budget that
    # applies (these, or [[budgets]] max_accuracy_drop/min_cosine), revert layers to float by rank
    accuracy_aware: bool = True
    max_drop: float | None = Field(None, ge=0, le=1)
    min_cosine: float | None = Field(None, ge=-1, le=1)
    max_float_fraction: float = Field(0.2, ge=0, le=1)
    fallback_step: int = Field(1, ge=1, le=1000)     # layers reverted per re-export


class TargetConfig(_Frozen):
    precisions: tuple[Precision, ...] | None = None   # None: every precision the target has
    opset: int = Field(18, ge=13, le=99)                    # onnx
    fp16_keep_float: tuple[str, ...] = ()             # onnx fp16: node names kept in float32
    int8_scope: Literal["auto", "transformer", "all"] = "auto"   # onnx int8: which ops (exporters/_onnx_int8_scope.py)
    io: IOType = IOType.FLOAT                         # tflite: full-integer I/O or float I/O
    deployment_target: str = "iOS16"                  # coreml
    compute_units: str = "CPU_ONLY"                   # coreml, on macOS


class ProfileConfig(_Frozen):
    threads: int = Field(1, ge=1, le=1024)
    warmup_runs: int = Field(10, ge=0, le=10_000_000)
    warmup_seconds: float = Field(1.0, ge=0, le=MAX_SECONDS)
    min_runs: int = Field(100, ge=1, le=10_000_000)
    min_seconds: float = Field(1.0, ge=0, le=MAX_SECONDS)
    max_seconds: float = Field(30.0, gt=0, le=MAX_SECONDS)
    max_runs: int = Field(10000, ge=0, le=10_000_000)    # bounds sample lists of microsecond-fast models
    timeout_s: float = Field(600.0, gt=0, le=MAX_SECONDS)
    rounds: int | None = Field(None, ge=1, le=1000)   # runner processes per artifact; None: 5 local, 3 ssh/adb


class GateConfig(_Frozen):
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    bootstrap_resamples: int = Field(2000, ge=100, le=1_000_000)
    max_rounds: int = Field(5, ge=0, le=100)          # extra rounds measured when the CI straddles
    max_round_cv: float = Field(0.10, gt=0, le=10)    # between-round CV above this: the device is too noisy
    regression_threshold: float = Field(0.05, ge=0, lt=1)   # baseline: minimum effect size
    regression_alpha: float = Field(0.01, gt=0, lt=1)
    # gate --baseline with the baseline's artifacts: round pairs measured interleaved (then
    # max_rounds more when the answer is unknown); 10 pairs let p reach 1/1024
    compare_pairs: int = Field(10, ge=2, le=1000)
    memory_tolerance_mb: float = Field(0.5, ge=0)
    # sessions within this many hours teach the gate each device's session-to-session noise
    # (edgeship/measure/sessions.py); older ones are kept but not used
    session_window_hours: float = Field(168.0, gt=0)
    # where the session history lives (default <build>/history): a CI cache path outside build/
    # lets a fresh checkout start with the runner's learned noise; relative to edgeship.toml
    history_dir: Path | None = None


class ClusterConfig(_Frozen):
    # "auto" (the local Ray cluster) or "ray://host:10001" / "host:6379": see docs/cluster.md
    address: str | None = Field(None, min_length=1)
    # how long to wait for the head to answer before one error line (Ray alone retries for minutes)
    connect_timeout_s: float = Field(15.0, gt=0, le=MAX_SECONDS)


class _DeviceBase(_Frozen):
    # declared CPU class (contract 2), for export --for a device that cannot be reached
    cpu_class: str | None = None
    # the latency CV between measurement sessions on this device, when its history is not kept
    # (a fresh CI machine): the gate widens latency intervals to at least this (docs/gate.md)
    session_cv: float | None = Field(None, gt=0, le=10)
    # "not representative": the device is emulated (an arm64 userland under qemu behind sshd, an
    # Android emulator): its numerics are gated, its latency and memory recorded but SKIPPED
    timing: Literal["representative", "not representative"] = "representative"

    @field_validator("cpu_class")
    @classmethod
    def _cpu_class(cls, v: str | None) -> str | None:
        from edgeship.runtimes.cpuinfo import CLASSES

        if v is not None and v not in CLASSES:
            raise ValueError(_choice_msg(v, list(CLASSES)))
        return v


class LocalDeviceConfig(_DeviceBase):
    kind: Literal["local"] = "local"
    python: str | None = None     # default: the interpreter running edgeship


class SSHDeviceConfig(_DeviceBase):
    kind: Literal["ssh"]
    host: str                      # ~/.ssh/config alias or user@host
    port: int | None = Field(None, ge=1, le=65535)
    python: str = "python3"
    workdir: str | None = None     # default: a fresh mktemp -d on the board
    env: dict[str, str] = {}
    identity_file: Path | None = None
    ssh_options: tuple[str, ...] = ()   # extra -o options, e.g. "UserKnownHostsFile=/x"
    connect_timeout_s: float = Field(10.0, gt=0, le=MAX_SECONDS)

    @field_validator("ssh_options")
    @classmethod
    def _host_keys_stay_checked(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from edgeship.devices.ssh_policy import weakens

        for opt in v:
            why = weakens(opt)
            if why:
                raise ValueError(f"{opt.strip()!r} is refused: {why}; add the board's host key to known_hosts "
                                 "instead (ssh-keyscan, then compare its fingerprint with the board's)")
        return v


class ADBDeviceConfig(_DeviceBase):
    kind: Literal["adb"]
    serial: str | None = None
    benchmark_binaries: dict[str, Path] = {}   # target -> local path of the native tool
    cpu_mask: str | None = None
    cooldown_s: float = Field(0.0, ge=0, le=MAX_SECONDS)
    adb: str = "adb"


class EmulatedDeviceConfig(_Frozen):
    """A board emulated by qemu-user (edgeship.devices.boards): numerics count, timings do not."""

    kind: Literal["emulated"]
    arch: Literal["arm64", "x86_64"]
    cpu: str                       # a qemu -cpu model verified for this arch (edgeship.devices.board_cpus.CPUS)
    python: str | None = None      # arm64: the board's python version ("3.11"); x86_64: this host's

    @field_validator("cpu")
    @classmethod
    def _known_cpu(cls, v: str, info: Any) -> str:
        from edgeship.devices.board_cpus import cpu_error

        err = cpu_error(info.data["arch"], v) if "arch" in info.data else None
        if err:
            raise ValueError(err)
        return v

    @field_validator("python")
    @classmethod
    def _board_python(cls, v: str | None, info: Any) -> str | None:
        import sys

        host = f"{sys.version_info[0]}.{sys.version_info[1]}"
        if info.data.get("arch") == "arm64" and v not in (None, "3.11"):
            raise ValueError(f"'{v}': emulated arm64 boards run Debian 12's python 3.11")
        if info.data.get("arch") == "x86_64" and v not in (None, host):
            raise ValueError(f"'{v}': emulated x86_64 boards run this host's python {host}; leave python unset")
        return v

    @property
    def cpu_class(self) -> str:
        from edgeship.devices.board_cpus import board_cpu

        return board_cpu(self.arch, self.cpu).cpu_class


DeviceConfig = Annotated[
    LocalDeviceConfig | SSHDeviceConfig | ADBDeviceConfig | EmulatedDeviceConfig, Field(discriminator="kind")
]


class LatencyBudget(_Frozen):
    p50: float | None = Field(None, gt=0)
    p90: float | None = Field(None, gt=0)
    p99: float | None = Field(None, gt=0)
    mean: float | None = Field(None, gt=0)


class BudgetConfig(_Frozen):
    device: str = "*"
    target: str = "*"
    precision: str = "*"
    latency_ms: LatencyBudget | None = None
    peak_memory_mb: float | None = Field(None, gt=0)
    size_kb: float | None = Field(None, gt=0)
    max_accuracy_drop: float | None = Field(None, ge=0, le=1)
    min_cosine: float | None = Field(None, ge=-1, le=1)
    # eval's retrieval_agreement (embedding outputs): fraction of nearest neighbours kept
    min_retrieval_agreement: float | None = Field(None, ge=0, le=1)
    # INT8 (or FP16) at least this many times the speed of the same target's FP32 on each device,
    # judged from their rounds interleaved in one profile session (gate/speedup.py)
    min_speedup_vs_fp32: float | None = Field(None, gt=0, le=1000)
    require: bool = False        # a SKIPPED run (no runtime on the device) counts as FAIL
    # every fidelity and accuracy limit (min_cosine, min_retrieval_agreement, max_accuracy_drop) vs the FP32
    # model the artifact was exported from, or vs the original
    relative_to: Literal["source", "original"] = "source"

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        if v != "*" and v not in {t.value for t in Target}:
            raise ValueError(_choice_msg(v, [t.value for t in Target] + ["*"]))
        return v

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        if v != "*" and v not in {p.value for p in Precision}:
            raise ValueError(_choice_msg(v, [p.value for p in Precision] + ["*"]))
        return v


class PruneStep(_Frozen):
    """Structured channel pruning (torch-pruning); ``unstructured`` zeroes weights on top."""

    kind: Literal["prune"]
    sparsity: float = Field(0.5, ge=0, lt=1)           # fraction of channels removed per layer
    conv: float | None = Field(None, ge=0, lt=1)       # per layer type, overrides sparsity
    linear: float | None = Field(None, ge=0, lt=1)
    norm: Literal["l1", "l2"] = "l2"
    ignore: tuple[str, ...] = ()      # module names kept whole; the output layer always is
    unstructured: float = Field(0.0, ge=0, lt=1)       # magnitude zeros: smaller only once compressed


class LowRankStep(_Frozen):
    """SVD of Linear and 1x1 Conv weights to the rank keeping ``energy`` of the spectrum."""

    kind: Literal["low_rank"]
    energy: float = Field(0.9, gt=0, le=1)
    rank: int | None = Field(None, ge=1)               # a fixed rank instead of ``energy``
    min_features: int = Field(32, ge=1)                # smaller layers are left alone


class DistillStep(_Frozen):
    """Fine-tune the student on [data] train against the original model's logits."""

    kind: Literal["distill"]
    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1)
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1)              # weight of the KL term; 1 - alpha: labels
    lr: float = Field(2e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    patience: int = Field(3, ge=1)                     # epochs without improvement on evaluation


class Weights4Step(_Frozen):
    """4-bit weights: rounds weights in torch (accuracy measured); export with int4-weight."""

    kind: Literal["weights4"]
    block_size: int = Field(32, ge=16)


CompressStep = Annotated[PruneStep | LowRankStep | DistillStep | Weights4Step, Field(discriminator="kind")]


_STEP_KINDS = ("prune", "low_rank", "distill", "weights4")
_DEVICE_KINDS = ("local", "ssh", "adb", "emulated")


class CompressConfig(_Frozen):
    steps: tuple[CompressStep, ...] = ()
    seed: int = 0


class Config(_Frozen):
    model: ModelConfig
    data: DataConfig = DataConfig()
    quantization: QuantizationConfig = QuantizationConfig()
    targets: dict[Target, TargetConfig] = {t: TargetConfig() for t in Target}
    profile: ProfileConfig = ProfileConfig()
    gate: GateConfig = GateConfig()
    devices: dict[str, DeviceConfig] = {"local": LocalDeviceConfig()}
    budgets: tuple[BudgetConfig, ...] = ()
    compress: CompressConfig = CompressConfig()
    build_dir: Path = Path("build")
    cluster: ClusterConfig = ClusterConfig()

    # Set by load_config, not by the file.
    path: Path | None = Field(None, exclude=True)
    digest: str = Field("", exclude=True)

    @field_validator("devices", mode="before")
    @classmethod
    def _device_names(cls, v: Any) -> Any:
        # a device name is a directory under build/results/
        for name in v if isinstance(v, dict) else ():
            check_name(str(name), "device name")
        return v

    @field_validator("devices")
    @classmethod
    def _local_always(cls, v: dict[str, Any]) -> dict[str, Any]:
        # the local CPU is always a device, whether or not the file names it
        return v if "local" in v else {"local": LocalDeviceConfig(), **v}

    @property
    def root(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def resolve(self, p: Path | str) -> Path:
        p = Path(p)
        return p if p.is_absolute() else self.root / p

    @property
    def build(self) -> Path:
        return self.resolve(self.build_dir)

    @property
    def history_dir(self) -> Path:
        """Where each device's session history is kept ([gate] history_dir, else build/history)."""
        h = self.gate.history_dir
        return self.build / "history" if h is None else self.resolve(Path(h).expanduser())

    @property
    def artifacts_dir(self) -> Path:
        return self.build / "artifacts" / self.model.name

    def target_config(self, target: Target) -> TargetConfig:
        return self.targets.get(target, TargetConfig())


def _choice_msg(value: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(value, choices, n=1)
    hint = f"; did you mean '{near[0]}'?" if near else ""
    return f"'{value}' is not one of {', '.join(choices)}{hint}"


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid keys of the table at ``loc`` (for did-you-mean on an unknown key)."""
    cls: Any = model
    kinds = {"local": LocalDeviceConfig, "ssh": SSHDeviceConfig, "adb": ADBDeviceConfig,
             "emulated": EmulatedDeviceConfig}
    steps = {"prune": PruneStep, "low_rank": LowRankStep, "distill": DistillStep, "weights4": Weights4Step}
    for i, part in enumerate(loc):
        if i == 2 and loc[0] == "devices" and part in kinds:
            cls = kinds[part]
            continue
        if i == 3 and loc[:2] == ("compress", "steps") and part in steps:
            cls = steps[part]
            continue
        if isinstance(part, int) or cls is None:
            continue
        if i == 1 and loc[0] in ("devices", "targets"):
            cls = TargetConfig if loc[0] == "targets" else None
            continue
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        cls = _model_in(ann)
    return list(getattr(cls, "model_fields", {}).keys()) if cls is not None else []


def _model_in(ann: Any) -> Any:
    """The BaseModel class inside an annotation like ``X | None`` or ``tuple[X, ...]``."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("LocalDeviceConfig", "SSHDeviceConfig", "ADBDeviceConfig", "EmulatedDeviceConfig") or str(
            part
        ) in ("local", "ssh", "adb", "emulated") and out.startswith("devices."):
            continue  # discriminated-union tags are noise in the user's key path
        elif out.startswith("compress.steps[") and out.endswith("]") and part in _STEP_KINDS:
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _first_error(exc: ValidationError, source: str) -> ConfigError:
    # a typo'd key also makes the real key "missing": report the typo, it is the cause
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = tuple(p for p in err["loc"] if p != "[key]")
    key = _format_loc(loc)
    if err["type"] == "extra_forbidden":
        valid = [f for f in _fields_at(Config, loc[:-1]) if f not in ("path", "digest")]
        near = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys: {', '.join(valid)}"
        return ConfigError(f"{source}: unknown key '{key}'{hint}")
    if err["type"] == "missing":
        return ConfigError(f"{source}: missing required key '{key}'")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] in ("union_tag_not_found", "union_tag_invalid"):
        tag = err.get("ctx", {}).get("tag")
        # the kinds of the table the error is in: a compress step's, else a device's
        kinds = list(_STEP_KINDS) if loc[:1] == ("compress",) else list(_DEVICE_KINDS)
        msg = (f"missing 'kind' (one of {', '.join(kinds)})" if tag is None
               else f"kind {_choice_msg(str(tag), kinds)}")
    elif "enum" in err["type"]:
        expected = err.get("ctx", {}).get("expected", "")
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",") if c.strip()]
        msg = _choice_msg(str(err.get("input")), choices)
    return ConfigError(f"{source}: key '{key}': {msg}")


def parse_config(data: dict[str, Any], source: str = CONFIG_NAME, path: Path | None = None) -> Config:
    """Validate a TOML document already loaded as a dict."""
    data = dict(data)
    if "build" in data:
        # [build] dir = "..." is the friendlier spelling of build_dir
        build = data.pop("build")
        if not isinstance(build, dict):
            raise ConfigError(f"{source}: key 'build' must be a table ([build] dir = \"build\")")
        unknown = sorted(set(build) - {"dir"})
        if unknown:
            raise ConfigError(f"{source}: unknown key 'build.{unknown[0]}'; valid keys: dir")
        if "build_dir" in data:
            raise ConfigError(f"{source}: set the build directory once: [build] dir or build_dir, not both")
        data["build_dir"] = build.get("dir", "build")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, source) from None
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return cfg.model_copy(update={"path": path, "digest": digest})


def find_config(explicit: Path | str | None = None) -> Path:
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found (pass --config PATH or run 'edgeship init')")
        return p
    p = Path.cwd() / CONFIG_NAME
    if not p.is_file():
        raise ConfigError(
            f"{CONFIG_NAME} not found in {Path.cwd()}: run 'edgeship init' or pass --config PATH"
        )
    return p


def load_config(path: Path | str | None = None) -> Config:
    """Find, read and validate edgeship.toml."""
    p = find_config(path).resolve()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    cfg = parse_config(data, source=str(p), path=p)
    if cfg.model.source is not None and not cfg.resolve(cfg.model.source).is_file():
        raise ConfigError(f"{p}: key 'model.source': file not found: {cfg.resolve(cfg.model.source)}")
    return cfg
