"""Which integer-dot features this CPU offers, and the CPU class they put it in.

INT8 numerics and speed depend on them: onnxruntime's x86 u8s8 kernels without VNNI use
VPMADDUBSW, whose 16-bit sums saturate; VNNI/AMX and arm64 dotprod/i8mm accumulate in int32.

Standalone like the rest of the runner (Python >= 3.8, stdlib only). Sources, best first:

- x86-64: the CPUID instruction itself (a 30-byte stub run through ctypes), because that is
  what onnxruntime's kernel dispatch asks. Under qemu-user ``/proc/cpuinfo`` is the HOST's
  while CPUID is the emulated CPU's; where executable memory is refused, ``/proc/cpuinfo``.
- arm64: the ELF auxiliary vector (``/proc/self/auxv`` AT_HWCAP/AT_HWCAP2, what
  onnxruntime's getauxval sees; qemu-user emulates it too), else ``Features`` in /proc/cpuinfo.

``cpu_features()`` -> ``{"arch", "features", "cpu_class", "source"}``.
"""

import os
import platform
import struct
import sys
from typing import Any, Dict, Iterable, List, Optional

CLASSES = ("x86-avx2", "x86-vnni", "x86-amx", "arm64", "arm64-dotprod", "arm64-i8mm", "unknown")
X86_FLAGS = ("avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
ARM_FLAGS = ("asimddp", "i8mm", "sve")

# Linux arm64 hwcaps (arch/arm64/include/uapi/asm/hwcap.h)
_HWCAP_ASIMDDP = 1 << 20
_HWCAP_SVE = 1 << 22
_HWCAP2_I8MM = 1 << 13
_AT_HWCAP, _AT_HWCAP2 = 16, 26

# void cpuid(uint32 leaf, uint32 subleaf, uint32 out[4])  (System V x86-64 ABI)
_CPUID_STUB = bytes([
    0x53,                    # push rbx
    0x89, 0xF8,              # mov eax, edi
    0x89, 0xF1,              # mov ecx, esi
    0x49, 0x89, 0xD0,        # mov r8, rdx
    0x0F, 0xA2,              # cpuid
    0x41, 0x89, 0x00,        # mov [r8], eax
    0x41, 0x89, 0x58, 0x04,  # mov [r8+4], ebx
    0x41, 0x89, 0x48, 0x08,  # mov [r8+8], ecx
    0x41, 0x89, 0x50, 0x0C,  # mov [r8+12], edx
    0x5B,                    # pop rbx
    0xC3,                    # ret
])


def normalize_arch(machine: str) -> str:
    m = (machine or "").lower()
    if m in ("x86_64", "amd64", "x64"):
        return "x86_64"
    if m in ("aarch64", "arm64", "armv8l") or m.startswith("arm64"):
        return "arm64"
    return m or "unknown"


def classify(arch: str, features: Iterable[str]) -> str:
    """The CPU class (BRIEF contract 2) of an arch and its relevant feature flags."""
    f = set(features)
    if arch == "x86_64":
        if "amx_int8" in f:
            return "x86-amx"
        if "avx512_vnni" in f or "avx_vnni" in f:
            return "x86-vnni"
        # any x86-64 without VNNI: AVX2's (and SSSE3's) u8s8 kernels saturate alike
        return "x86-avx2"
    if arch == "arm64":
        if "i8mm" in f:
            return "arm64-i8mm"
        if "asimddp" in f:
            return "arm64-dotprod"
        return "arm64"
    return "unknown"


def parse_cpuinfo(text: str, machine: Optional[str] = None) -> Dict[str, Any]:
    """Features and class from the text of a /proc/cpuinfo (x86 ``flags``, arm64 ``Features``)."""
    flags = set()  # type: set
    arch_hint = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if not sep:
            continue
        if key == "flags":
            flags.update(value.split())
            arch_hint = "x86_64"
        elif key == "features":
            flags.update(value.split())
            arch_hint = arch_hint or "arm64"
        elif key == "cpu architecture" and value.strip() not in ("8", "AArch64"):
            arch_hint = "arm"   # 32-bit ARM lists Features too
    arch = normalize_arch(machine) if machine else (arch_hint or "unknown")
    wanted = X86_FLAGS if arch == "x86_64" else ARM_FLAGS if arch == "arm64" else ()
    features = sorted(f for f in flags if f in wanted)
    return {"arch": arch, "features": features, "cpu_class": classify(arch, features), "source": "/proc/cpuinfo"}


def x86_cpuid_features() -> Optional[List[str]]:
    """The relevant flags from CPUID, or None where the stub cannot run (no exec memory)."""
    try:
        import ctypes
        import mmap

        buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (ImportError, OSError, ValueError, AttributeError, TypeError):
        return None
    try:
        buf.write(_CPUID_STUB)
        holder = ctypes.c_char.from_buffer(buf)
        proto = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32 * 4))
        fn = proto(ctypes.addressof(holder))
        out = (ctypes.c_uint32 * 4)()

        def cpuid(leaf, sub=0):
            fn(leaf, sub, ctypes.byref(out))
            return tuple(out)

        if cpuid(0)[0] < 7:
            return []
        max_sub, ebx, ecx, edx = cpuid(7, 0)
        found = []
        if ebx >> 5 & 1:
            found.append("avx2")
        if ebx >> 30 & 1:
            found.append("avx512bw")
        if ecx >> 11 & 1:
            found.append("avx512_vnni")
        if edx >> 25 & 1:
            found.append("amx_int8")
        if max_sub >= 1 and cpuid(7, 1)[0] >> 4 & 1:
            found.append("avx_vnni")
        return sorted(found)
    except (OSError, ValueError, TypeError):
        return None
    finally:
        try:
            buf.close()
        except BufferError:
            pass


def arm64_hwcap_features(path: str = "/proc/self/auxv") -> Optional[List[str]]:
    """dotprod/i8mm/sve from AT_HWCAP/AT_HWCAP2 in the auxiliary vector, or None if unreadable."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    caps = {}  # type: Dict[int, int]
    for i in range(0, len(data) - 15, 16):
        key, value = struct.unpack("<QQ", data[i:i + 16])
        if key == 0:
            break
        caps[key] = value
    if _AT_HWCAP not in caps:
        return None
    hw, hw2 = caps[_AT_HWCAP], caps.get(_AT_HWCAP2, 0)
    found = []
    if hw & _HWCAP_ASIMDDP:
        found.append("asimddp")
    if hw2 & _HWCAP2_I8MM:
        found.append("i8mm")
    if hw & _HWCAP_SVE:
        found.append("sve")
    return sorted(found)


def cpu_features(cpuinfo_path: str = "/proc/cpuinfo") -> Dict[str, Any]:
    """This process's CPU: ``{"arch", "features", "cpu_class", "source"}`` (never raises)."""
    arch = normalize_arch(platform.machine())
    try:
        with open(cpuinfo_path) as fh:
            text = fh.read()
    except OSError:
        text = ""
    found = parse_cpuinfo(text, platform.machine())
    direct = None  # type: Optional[List[str]]
    if arch == "x86_64" and os.environ.get("EDGESHIP_NO_CPUID") != "1":
        direct, source = x86_cpuid_features(), "cpuid"
    elif arch == "arm64" and sys.platform.startswith("linux"):
        direct, source = arm64_hwcap_features(), "auxv hwcap"
    if direct is not None:
        found = {"arch": arch, "features": direct, "cpu_class": classify(arch, direct), "source": source}
    elif not text:
        # e.g. macOS: without a feature list we do not guess a class
        found.update(features=[], cpu_class="unknown", source="none (no /proc/cpuinfo)")
    return found


if __name__ == "__main__":
    import json

    print(json.dumps(cpu_features()))
