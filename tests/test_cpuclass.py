"""CPU classes: feature detection, recipe candidates per class, and ONNX INT8 built for a class.

The x86-avx2 numerics are checked for real: onnxruntime runs under
``qemu-x86_64-static -cpu Haswell`` (AVX2, no VNNI), so its u8s8 kernels saturate there as on
an AVX2-only EPYC, whatever this host's CPU is.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from edgeship.exporting.cpuclass import onnx_candidates
from edgeship.runtimes.cpuinfo import arm64_hwcap_features, classify, cpu_features, parse_cpuinfo

EPYC_ROME = """processor\t: 0
vendor_id\t: AuthenticAMD
model\t\t: 49
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext ssbd ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 clzero xsaveerptr arat npt nrip_save umip rdpid
"""
XEON_SPR = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt avx_vnni avx512_bf16 avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq movdiri movdir64b fsrm md_clear serialize tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8 arch_capabilities
"""
XEON_CLX = "model name\t: Intel(R) Xeon(R) Gold 6230\nflags\t\t: fpu sse sse2 ssse3 avx avx2 avx512f avx512bw avx512vl avx512_vnni\n"
SKYLAKE_SP = "model name\t: Intel(R) Xeon(R) Gold 6130\nflags\t\t: fpu sse sse2 ssse3 avx avx2 avx512f avx512bw avx512vl\n"
CORTEX_A76 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
"""
NEOVERSE_V1 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd40
"""
CORTEX_A53 = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\nCPU architecture: 8\n"
ARMV7 = "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt\nCPU architecture: 7\n"


@pytest.mark.parametrize("text,arch,cls,features", [
    (EPYC_ROME, "x86_64", "x86-avx2", ["avx2"]),
    (SKYLAKE_SP, "x86_64", "x86-avx2", ["avx2", "avx512bw"]),
    (XEON_CLX, "x86_64", "x86-vnni", ["avx2", "avx512_vnni", "avx512bw"]),
    (XEON_SPR, "x86_64", "x86-amx", ["amx_int8", "avx2", "avx512_vnni", "avx512bw", "avx_vnni"]),
    (CORTEX_A76, "arm64", "arm64-dotprod", ["asimddp"]),
    (NEOVERSE_V1, "arm64", "arm64-i8mm", ["asimddp", "i8mm", "sve"]),
    (CORTEX_A53, "arm64", "arm64", []),
    (ARMV7, "arm", "unknown", []),
])
def test_cpuinfo_snippets_classify(text: str, arch: str, cls: str, features: list[str]) -> None:
    got = parse_cpuinfo(text)
    assert (got["arch"], got["cpu_class"], got["features"]) == (arch, cls, features)


def test_machine_overrides_the_text_and_classes_are_exhaustive() -> None:
    # under qemu-aarch64 /proc/cpuinfo is the x86 host's: the interpreter's machine wins
    assert parse_cpuinfo(EPYC_ROME, "aarch64")["arch"] == "arm64"
    assert classify("riscv64", ["v"]) == "unknown"
    assert classify("x86_64", ["avx_vnni", "avx2"]) == "x86-vnni"


def test_arm64_hwcaps_from_an_auxv(tmp_path: Path) -> None:
    auxv = tmp_path / "auxv"
    hwcap = (1 << 20) | (1 << 22)         # ASIMDDP | SVE
    hwcap2 = 1 << 13                      # I8MM
    auxv.write_bytes(struct.pack("<6Q", 16, hwcap, 26, hwcap2, 0, 0))
    assert arm64_hwcap_features(str(auxv)) == ["asimddp", "i8mm", "sve"]
    auxv.write_bytes(struct.pack("<4Q", 16, 1 << 20, 0, 0))
    assert arm64_hwcap_features(str(auxv)) == ["asimddp"]
    assert arm64_hwcap_features(str(tmp_path / "missing")) is None


def test_this_host_is_classified_and_the_runner_reports_it() -> None:
    import json
    import subprocess
    import sys

    f = cpu_features()
    assert f["cpu_class"] in ("x86-avx2", "x86-vnni", "x86-amx", "arm64", "arm64-dotprod", "arm64-i8mm", "unknown")
    assert f["features"] == sorted(f["features"])
    out = subprocess.run([sys.executable, "-m", "edgeship.runtimes.runner", "--info"], capture_output=True,
                         text=True, check=True, timeout=120)
    cpu = json.loads(out.stdout)["env"]["cpu"]
    assert cpu["cpu_class"] == f["cpu_class"] and cpu["features"] == f["features"] and cpu["model"]


def _qemu() -> str:
    """qemu-x86_64-static, or skip with the install command (a failure under CI=true)."""
    from tests.conftest import require_tool

    return require_tool("qemu-x86_64-static", "apt-get install qemu-user-static")


def test_cpuid_sees_the_emulated_cpu_not_the_hosts_cpuinfo() -> None:
    """Under qemu -cpu Haswell /proc/cpuinfo is still the host's; CPUID is Haswell's."""
    import json
    import platform
    import subprocess
    import sys

    if platform.machine() != "x86_64":
        pytest.skip("x86-64 host only")
    qemu = _qemu()
    import edgeship.runtimes.cpuinfo as mod

    out = subprocess.run([qemu, "-cpu", "Haswell", sys.executable, mod.__file__], capture_output=True, text=True,
                         check=True, timeout=120)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"arch": "x86_64", "features": ["avx2"], "cpu_class": "x86-avx2", "source": "cpuid"}


def test_recipe_candidates_per_class() -> None:
    names = lambda cls, dyn: [r.name for r in onnx_candidates(cls, dyn)]
    assert names("x86-avx2", False) == ["u8s8+reduce_range", "u8u8"]
    assert names("x86-avx2", True) == ["u8u8", "u8s8+reduce_range"]   # reduce_range hurt dynamic BERT
    for cls in ("x86-vnni", "x86-amx"):
        assert names(cls, False) == ["u8s8"] and names(cls, True) == ["u8s8"]
    for cls in ("arm64", "arm64-dotprod", "arm64-i8mm"):
        assert names(cls, False) == ["s8s8"]
    rr = onnx_candidates("x86-avx2", False)[0]
    assert rr.reduce_range and rr.activation_type == "uint8" and rr.weight_type == "int8" and "VNNI" in rr.why
    u8u8 = onnx_candidates("x86-avx2", False)[1]
    assert (u8u8.activation_type, u8u8.weight_type, u8u8.reduce_range) == ("uint8", "uint8", False)
    with pytest.raises(ValueError):
        onnx_candidates("x86-avx3", False)


def test_declared_class_is_validated(tmp_path: Path) -> None:
    from edgeship.errors import ConfigError
    from tests.conftest import make_config

    with pytest.raises(ConfigError, match=r"devices\.b\.cpu_class.*did you mean 'x86-avx2'"):
        make_config(tmp_path, devices={"b": {"kind": "ssh", "host": "h", "cpu_class": "x86-avx"}})


def test_unreachable_undeclared_device_is_a_usage_error(tmp_path: Path) -> None:
    from edgeship.errors import UsageError
    from edgeship.exporting.for_device import export_targets
    from tests.conftest import make_config

    cfg = make_config(tmp_path, devices={"b": {"kind": "ssh", "host": "nobody@127.0.0.1", "port": 1,
                                               "connect_timeout_s": 2}})
    with pytest.raises(UsageError, match=r"device 'b'.*\[devices\.b\] cpu_class"):
        export_targets(cfg, ("b",))
    with pytest.raises(UsageError, match="no \\[devices.nope\\]"):
        export_targets(cfg, ("nope",))
    # default: the budgets' devices; the demo's name only "local", whose class is detected here
    assert [t.cpu_class for t in export_targets(cfg)] == [cpu_features()["cpu_class"]]


# -- a net that saturates ORT's u8s8 kernels on AVX2 (the lead's repro) ----------------------
def saturating_net():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(64 * 16 * 16, 10)).eval()


def saturating_calibration():
    rng = np.random.default_rng(0)
    for _ in range(4):
        yield {"x": rng.random((8, 3, 16, 16), dtype=np.float32)}


DEVICES = {
    "avx2box": {"kind": "ssh", "host": "avx2.invalid", "cpu_class": "x86-avx2"},
    "vnnibox": {"kind": "ssh", "host": "vnni.invalid", "cpu_class": "x86-vnni"},
    "armbox": {"kind": "ssh", "host": "arm.invalid", "cpu_class": "arm64-dotprod"},
}


@pytest.fixture(scope="module")
def per_class(tmp_path_factory: pytest.TempPathFactory):
    """The saturating net's onnx-int8 exported --for three declared classes (avx2 first: default)."""
    from edgeship.exporting.pipeline import export
    from edgeship.types import Precision, Target
    from tests.conftest import make_config

    cfg = make_config(tmp_path_factory.mktemp("perclass"), devices=DEVICES, budgets=[],
                      model={"name": "sat", "factory": "tests.test_cpuclass:saturating_net", "outputs": ["y"],
                             "inputs": [{"name": "x", "shape": [1, 3, 16, 16], "dtype": "float32"}]},
                      data={"calibration": "tests.test_cpuclass:saturating_calibration", "calibration_samples": 32})
    export(cfg, (Target.ONNX,), (Precision.INT8,), for_devices=("avx2box", "vnnibox", "armbox"))
    return cfg


def test_export_for_a_declared_avx2_device(per_class) -> None:
    from edgeship.artifact.manifest import read_manifest
    from edgeship.exporters._onnx_recipes import how_measurable

    m = read_manifest(per_class.artifacts_dir / "onnx-int8")      # the first --for device's class: plain name
    bf = m.built_for
    assert bf["cpu_class"] == "x86-avx2" and bf["known_from"] == "declared in [devices.avx2box] cpu_class"
    assert [c["recipe"] for c in bf["candidates"]] == ["u8s8+reduce_range", "u8u8"]
    assert bf["recipe"] in ("u8s8+reduce_range", "u8u8") and m.recipe["recipe"] == bf["recipe"]
    mode = how_measurable("x86-avx2")
    for c in bf["candidates"]:
        assert c["measured"].startswith({"native": "native", "emulated": "emulated", "none": "not measured"}[mode])
        if mode == "none":
            assert "cosine_mean" not in c
        else:
            assert c["cosine_mean"] > 0.99
    if mode != "none":
        best = max(c["cosine_mean"] for c in bf["candidates"])
        chosen = next(c for c in bf["candidates"] if c["recipe"] == bf["recipe"])
        assert chosen["cosine_mean"] >= best - 1e-4
    else:
        assert "documented rule" in bf["why"] and bf["recipe"] == "u8s8+reduce_range"
    assert m.recipe["reduce_range"] is (bf["recipe"] == "u8s8+reduce_range")


def test_two_classes_make_two_artifacts(per_class) -> None:
    from edgeship.artifact.selection import find_artifacts

    refs = find_artifacts(per_class)
    assert [(r.name, r.built_for_class) for r in refs] == [
        ("onnx-int8", "x86-avx2"), ("onnx-int8@arm64-dotprod", "arm64-dotprod"), ("onnx-int8@x86-vnni", "x86-vnni")]
    arm = next(r for r in refs if r.built_for_class == "arm64-dotprod").manifest
    assert arm.recipe["activation_type"] == "int8" and arm.built_for["recipe"] == "s8s8"
    vnni = next(r for r in refs if r.built_for_class == "x86-vnni").manifest
    assert vnni.built_for["recipe"] == "u8s8" and vnni.recipe["reduce_range"] is False
    assert all(r.target.value == "onnx" and r.precision.value == "int8" for r in refs)


def test_avx2_artifact_holds_under_haswell_where_plain_u8s8_saturates(per_class) -> None:
    """Real AVX2 kernels (qemu -cpu Haswell): the x86-avx2 build keeps cosine >= 0.999, u8s8 does not."""
    import platform

    from edgeship.exporters._onnx_recipes import run_emulated
    from edgeship.metrics import fidelity
    from edgeship.model.reference import load_reference, run_reference

    if platform.machine() != "x86_64":
        pytest.skip("x86-64 host only")
    _qemu()
    rng = np.random.default_rng(123)   # held out: not the calibration samples
    feeds = [{"x": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(6)]
    model = load_reference(per_class)
    ref = [run_reference(model, f, per_class.model.inputs) for f in feeds]
    arts = per_class.artifacts_dir
    runs = run_emulated({"avx2": arts / "onnx-int8" / "model.onnx", "u8s8": arts / "onnx-int8@x86-vnni" / "model.onnx"},
                        feeds)
    avx2 = fidelity(ref, runs["avx2"]["outputs"])
    u8s8 = fidelity(ref, runs["u8s8"]["outputs"])
    assert avx2["cosine_mean"] >= 0.999, avx2
    assert u8s8["cosine_mean"] < 0.999, u8s8


def test_devices_check_reports_the_class_and_a_wrong_declaration(tmp_path: Path) -> None:
    from edgeship.devices.check import check
    from tests.conftest import make_config

    here = cpu_features()["cpu_class"]
    other = "arm64-i8mm" if here != "arm64-i8mm" else "x86-avx2"
    r = check(make_config(tmp_path), "local")
    assert r.cpu["cpu_class"] == here and r.cpu["model"] and not any("cpu_class" in m for m in r.missing)
    r = check(make_config(tmp_path, devices={"local": {"kind": "local", "cpu_class": other}}), "local")
    assert r.usable and any(m.startswith("warning:") and other in m and here in m for m in r.missing)


def test_each_device_class_picks_its_own_build(per_class) -> None:
    from edgeship.artifact.selection import find_artifacts, pick_for_class

    refs = find_artifacts(per_class)
    assert [r.name for r in pick_for_class(refs, "x86-vnni")] == ["onnx-int8@x86-vnni"]
    assert [r.name for r in pick_for_class(refs, "x86-avx2")] == ["onnx-int8"]
    assert [r.name for r in pick_for_class(refs, "arm64-i8mm")] == ["onnx-int8"]    # no build for it: the default
    assert pick_for_class(refs, None) == refs


def test_an_undeclared_ssh_device_is_asked_for_its_class(tmp_path: Path) -> None:
    """Real OpenSSH on loopback: export --for board learns the class from the runner's --info there."""
    import sys

    from edgeship.exporting.for_device import export_targets
    from tests.conftest import make_config, require_tool
    from tests.sshd import start_sshd

    require_tool("sshd", "apt-get install openssh-server", "/usr/sbin/sshd")
    server = start_sshd(tmp_path / "sshd")
    try:
        cfg = make_config(tmp_path, devices={"board": server.device_config(sys.executable)})
        (t,) = export_targets(cfg, ("board",))
        assert t.cpu_class == cpu_features()["cpu_class"] and t.devices == ("board",)
        assert t.known_from.startswith("runner --info on device 'board'") and list(t.features) == cpu_features()["features"]
    finally:
        server.kill()


def test_an_avx2_host_does_not_reject_an_artifact_for_another_class(tmp_path: Path, monkeypatch) -> None:
    """TEST DOUBLE for the host CPU (this machine's class cannot be changed in-process): on an
    x86-avx2 host the export check of an arm64 build records the host's cosine without
    enforcing the bound, since u8s8/s8s8 saturate only on the host."""
    import edgeship.exporters.onnx as onnx_exporter
    from edgeship.exporting.cpuclass import CpuTarget
    from edgeship.exporting.pipeline import export
    from edgeship.types import Precision, Target
    from tests.conftest import make_config

    monkeypatch.setattr(onnx_exporter, "host_target", lambda: CpuTarget("x86-avx2", ("avx2",), "test double"))
    cfg = make_config(tmp_path, devices={"armbox": DEVICES["armbox"]}, budgets=[],
                      model={"name": "sat", "factory": "tests.test_cpuclass:saturating_net", "outputs": ["y"],
                             "inputs": [{"name": "x", "shape": [1, 3, 16, 16], "dtype": "float32"}]},
                      data={"calibration": "tests.test_cpuclass:saturating_calibration", "calibration_samples": 8})
    (m,) = export(cfg, (Target.ONNX,), (Precision.INT8,), for_devices=("armbox",))
    assert m.built_for["cpu_class"] == "arm64-dotprod" and m.built_for["recipe"] == "s8s8"
    check = m.recipe["fidelity_check"]
    assert check["bound_enforced"] is False and "arm64-dotprod" in check["why"] and check["cosine_mean"] > 0
    assert "not measured" in m.built_for["candidates"][0]["measured"] and "documented rule" in m.built_for["why"]
