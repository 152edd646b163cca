"""CPU classes -> the INT8 recipes worth trying on them, best documented choice first.

onnxruntime's quantization guide ("Data type selection"): on x86-64 with AVX2/AVX-512 but
no VNNI the u8s8 kernels (VPMADDUBSW) can saturate their 16-bit intermediate sums, so use
``reduce_range`` (7-bit weights) or U8U8 there; with VNNI/AMX, and on arm64, u8s8/s8s8 run
full range. Neither remedy wins everywhere (issue 12: on an AVX2 host reduce_range kept a
static CNN at 0.9994 cosine but dropped a dynamic BERT encoder to 0.885, where u8u8 gave
0.984 but ran a MobileNetV2 slower than FP32), so a class gets a short candidate list and the
exporter measures them (fidelity first, speed second) on a CPU of that class where it can.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgeship.runtimes.cpuinfo import CLASSES

X86_NO_VNNI_WHY = ("x86 without VNNI: ORT's u8s8 kernels (VPMADDUBSW) saturate 16-bit sums; "
                   "ORT's guide prescribes reduce_range or U8U8 there")


@dataclass(frozen=True)
class OrtRecipe:
    """One point of onnxruntime's quantization space."""

    name: str
    activation_type: str        # "uint8" | "int8" (dynamic quantization: always uint8)
    weight_type: str            # "int8" | "uint8"
    reduce_range: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


U8S8 = "u8s8"
U8S8_RR = "u8s8+reduce_range"
U8U8 = "u8u8"
S8S8 = "s8s8"


def _r(name: str, why: str) -> OrtRecipe:
    act = "int8" if name == S8S8 else "uint8"
    weight = "uint8" if name == U8U8 else "int8"
    return OrtRecipe(name, act, weight, name == U8S8_RR, why)


def onnx_candidates(cpu_class: str, dynamic: bool) -> list[OrtRecipe]:
    """ORT INT8 recipes for ``cpu_class``, in documented order of preference."""
    if cpu_class not in CLASSES:
        raise ValueError(f"unknown CPU class {cpu_class!r}")
    if cpu_class in ("x86-avx2", "unknown"):
        lead = X86_NO_VNNI_WHY if cpu_class == "x86-avx2" else "class unknown: recipes that do not saturate on any CPU"
        if dynamic:
            # measured on BERT-style MatMuls: reduce_range loses more than it saves there
            return [_r(U8U8, f"{lead}; u8u8 keeps 8-bit weights (dynamic MatMul: best fidelity)"),
                    _r(U8S8_RR, f"{lead}; 7-bit weights keep u8s8 speed")]
        return [_r(U8S8_RR, f"{lead}; 7-bit weights keep the fast u8s8 kernels"),
                _r(U8U8, f"{lead}; u8u8 keeps 8-bit weights but can run slower than FP32")]
    if cpu_class in ("x86-vnni", "x86-amx"):
        why = f"{cpu_class}: VNNI/AMX accumulate u8xs8 in int32 without saturation; u8s8 full range is ORT's fast path"
        return [_r(U8S8, why)]
    if dynamic:
        # quantize_dynamic has u8 activations only; arm64's u8s8 GEMM is dot-product based
        return [_r(U8S8, f"{cpu_class}: dynamic activations are uint8; int8 weights, full range")]
    return [_r(S8S8, f"{cpu_class}: arm64 sdot/smmla kernels favour s8 activations x s8 weights, full range, no saturation")]


def cpu_label(cpu: Any) -> str:
    """One-line CPU description from a result's ``env["cpu"]`` (a dict now, a string in old results)."""
    if isinstance(cpu, dict):
        model = cpu.get("model") or cpu.get("arch") or "cpu"
        return f"{model} [{cpu.get('cpu_class', 'unknown')}]"
    return str(cpu or "")




@dataclass(frozen=True)
class CpuTarget:
    """The CPU an artifact is built for: its class, features, and how edgeship knows them."""

    cpu_class: str
    features: tuple[str, ...] = ()
    known_from: str = ""
    devices: tuple[str, ...] = ()

    def built_for(self, recipe: str, why: str, candidates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The manifest's ``built_for`` block (BRIEF contract 5)."""
        return {"cpu_class": self.cpu_class, "features": list(self.features), "recipe": recipe, "why": why,
                "candidates": list(candidates or []), "known_from": self.known_from, "devices": list(self.devices)}


def host_target() -> CpuTarget:
    from edgeship.runtimes.cpuinfo import cpu_features

    f = cpu_features()
    return CpuTarget(f["cpu_class"], tuple(f["features"]), f"detected on this host ({f.get('source')})", ("local",))


__all__ = ["CLASSES", "CpuTarget", "OrtRecipe", "cpu_label", "host_target", "onnx_candidates"]
