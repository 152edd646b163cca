"""The CPU models an emulated board may be: which qemu-user models emulate correctly, their
CPU class, and the /proc/cpuinfo a real chip of that model shows.

Pure data and functions over it: the config validates ``[devices.NAME] cpu`` against it, so it
sits on the ground floor of the layers contract (docs/architecture.md) with ssh_policy.py.
"""

from __future__ import annotations

from dataclasses import dataclass

ARCHES = ("arm64", "x86_64")


@dataclass(frozen=True)
class BoardCpu:
    cpu_class: str       # contract 2 of the brief
    flags: str           # the /proc/cpuinfo feature line of a real chip of this model
    part: str = ""       # arm64: "CPU part" (MIDR) of the model
    vendor: str = "GenuineIntel"


# CPU models verified to give correct results under qemu-user 7.2 (Debian 12). The x86 flag
# lines leave out what TCG drops with a warning (pcid, x2apic, invpcid, rdseed, xsavec).
_ARM_V80 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_ARM_DOTPROD = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
_HASWELL = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss "
            "syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology cpuid pni pclmulqdq ssse3 fma cx16 "
            "sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm "
            "fsgsbase bmi1 avx2 smep bmi2 erms xsaveopt")
CPUS: dict[str, dict[str, BoardCpu]] = {
    "arm64": {
        "cortex-a76": BoardCpu("arm64-dotprod", _ARM_DOTPROD, "0xd0b"),     # Raspberry Pi 5
        "neoverse-n1": BoardCpu("arm64-dotprod", _ARM_DOTPROD + " ssbs", "0xd0c"),   # Graviton2, Ampere Altra
        "cortex-a72": BoardCpu("arm64", _ARM_V80, "0xd08"),    # Raspberry Pi 4
        "cortex-a57": BoardCpu("arm64", _ARM_V80, "0xd07"),    # Jetson Nano / TX2
        "cortex-a53": BoardCpu("arm64", _ARM_V80, "0xd03"),    # Raspberry Pi 3, Zero 2 W
    },
    "x86_64": {
        "Haswell": BoardCpu("x86-avx2", _HASWELL),
        "Broadwell": BoardCpu("x86-avx2", _HASWELL + " adx smap"),
        "Skylake-Client": BoardCpu("x86-avx2", _HASWELL + " adx smap clflushopt xgetbv1"),
        "EPYC": BoardCpu("x86-avx2", _HASWELL + " adx smap clflushopt", vendor="AuthenticAMD"),   # Zen 1
    },
}
# models qemu knows but that must not be used, and why (measured, see docs/devices.md)
REFUSED: dict[str, dict[str, str]] = {
    "arm64": {
        "max": "LiteRT INT8 gives wrong results under -cpu max (cosine 0.18-0.42 vs FP32)",
        "a64fx": "an HPC CPU (SVE-512), not an edge board; reported to die with Illegal instruction in LiteRT",
    },
    "x86_64": {
        "max": "qemu's 'max' model is not a real CPU class; its numerics prove nothing about a shipped chip",
        "host": "'host' is this machine's CPU, not an emulated one (use the local device)",
    },
}


def cpu_error(arch: str, cpu: str) -> str | None:
    """Why ``cpu`` cannot be an emulated ``arch`` board, or None when it can."""
    if arch not in CPUS:
        return f"arch '{arch}' is not one of {', '.join(ARCHES)}"
    allowed = ", ".join(CPUS[arch])
    if cpu in REFUSED[arch]:
        return f"cpu '{cpu}' is refused: {REFUSED[arch][cpu]}; use one of {allowed}"
    if cpu not in CPUS[arch]:
        return f"cpu '{cpu}' is not verified for emulated {arch} boards; use one of {allowed}"
    return None


def board_cpu(arch: str, cpu: str) -> BoardCpu:
    return CPUS[arch][cpu]


def cpuinfo_text(arch: str, cpu: str, ncpu: int = 4) -> str:
    """A /proc/cpuinfo of ``ncpu`` cores of the emulated model (what the runtimes' CPU
    detection and the runner's feature report read inside the board's mount namespace)."""
    c = board_cpu(arch, cpu)
    blocks = []
    for i in range(ncpu):
        if arch == "arm64":
            blocks.append(f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {c.flags}\n"
                          "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\n"
                          f"CPU part\t: {c.part}\nCPU revision\t: 1\n")
        else:
            blocks.append(f"processor\t: {i}\nvendor_id\t: {c.vendor}\ncpu family\t: 6\n"
                          f"model name\t: qemu-user emulated {cpu}\nflags\t\t: {c.flags}\n")
    return "\n".join(blocks) + "\n"
