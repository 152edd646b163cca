"""The bad-input corpus: every bad input is one line on stderr, the right exit code, and
nothing in build/ lost or half-written.

Each case copies one exported, evaluated, profiled and gated demo project (built once per
session), breaks one thing (config text, a manifest, a data module, a result file,
permissions ...), runs ``python -m edgeship`` in a subprocess and checks:

- the exit code (2 bad input, 3 internal error, 130 interrupted, 0/1 where a case says);
- stderr holds exactly one line that is not a progress line (``... ...`` or an indented
  detail), it contains no "Traceback", and it names what the case says (a key, file, device);
- a sha256 snapshot of build/ is unchanged, or changed only under the globs the case names
  (so an error never deletes good evidence or leaves temp files behind).

Cases owned by another engineer's branch are marked ``owner=`` and expected to fail here
until that branch is merged; ``PENDING_OWNERS`` lists the branches not merged yet (the lead
empties it after merging).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, missing_component, sigint_as_from_a_terminal

# Branches whose cases are expected to fail until the lead merges them: empty this set after
# merging h11a (evidence/gate verdicts), h11b (manifest integrity, atomic dirs, ssh) and
# h12b (eval.json v2).
PENDING_OWNERS: set[str] = set()

NOBODY = 65534
MODEL = "digits_cnn"
ART = f"build/artifacts/{MODEL}"
REPORTS = "build/reports"
RESULTS = "build/results/local"

FAST = {
    "min_runs = 100\nmin_seconds = 1.0":
        "min_runs = 64\nmin_seconds = 0.02\nwarmup_seconds = 0.02\nwarmup_runs = 2\ntimeout_s = 60",
    'precisions = ["fp32", "fp16", "int8", "int8-dynamic"]': 'precisions = ["fp32", "int8"]',
    'precisions = ["fp32", "fp16", "int8", "int8-dynamic", "int8-weight"]': 'precisions = ["fp32", "int8"]',
    # verdicts must not depend on how loaded the machine is: generous latency and memory
    "latency_ms = { p90 = 1.0 }": "latency_ms = { p90 = 1000.0 }",
    "peak_memory_mb = 400": "peak_memory_mb = 4000",
    'precision = "fp16"\nmin_cosine = 0.999': 'precision = "int8"\nmin_cosine = 0.9',
    # the gate judges every artifact the config promises: configure only what the base project exports
    '\n[targets.coreml]\nprecisions = ["fp32", "fp16", "int8", "int8-weight"]\n': "\n",
}

DATA_MODULE = '''\
"""Data and model functions the corpus points [data]/[model] at."""
import numpy as np


def _batch(n=4):
    return {"image": np.zeros((n, 1, 8, 8), np.float32), "label": np.zeros(n, np.int64)}


def midway():
    for i in range(64):
        if i == 3:
            raise ValueError("disk went away")
        yield _batch()


def raises_at_call():
    raise RuntimeError("no dataset mounted")


def returns_none():
    return None


def returns_dict():
    return _batch()


def yields_lists():
    yield [np.zeros((1, 1, 8, 8), np.float32)]


def wrong_shape():
    for _ in range(64):
        yield {"image": np.zeros((4, 3, 8, 8), np.float32)}


def wrong_dtype():
    for _ in range(64):
        yield {"image": np.full((4, 1, 8, 8), "x")}


def ragged():
    for _ in range(64):
        yield {"image": [[1.0, 2.0], [3.0]]}


def missing_input():
    for _ in range(64):
        yield {"img": np.zeros((4, 1, 8, 8), np.float32)}


def empty():
    return iter(())


def short_labels():
    for _ in range(64):
        b = _batch()
        b["label"] = np.zeros(3, np.int64)
        yield b


def scalar_label():
    for _ in range(64):
        b = _batch()
        b["label"] = np.int64(7)
        yield b


def labels_then_none():
    yield _batch()
    b = _batch()
    del b["label"]
    yield b


def model_raises():
    raise RuntimeError("checkpoint is missing")


def model_none():
    return None


def _poisoned(value, at=0, where=(0, 0, 3, 5), dtype=np.float32):
    for i in range(64):
        b = _batch()
        b["image"] = b["image"].astype(dtype)
        if i == at:
            b["image"][where] = value
        yield b


def nan_first():
    yield from _poisoned(np.nan)


def inf_late():
    yield from _poisoned(np.inf, at=5)


def neg_inf():
    yield from _poisoned(-np.inf, at=1, where=(2, 0, 0, 0))


def overflows_float32():
    # finite in float64, inf once cast to the input's float32
    yield from _poisoned(1e300, dtype=np.float64)


def model_ansi():
    # what torch's coloured error text looks like on a terminal
    raise RuntimeError("\x1b[1;31mcheckpoint\x1b[0m is \x1b[4mmissing\x1b[0m")
'''

# A pickle that creates a file when unpickled: a .pt2 must never be loaded like this.
EVIL_MARKER = "pwned.txt"


# --------------------------------------------------------------------------------------------
# the project every case starts from


class Project:
    """A copy of the demo project for one case, with small editing helpers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.toml = root / "edgeship.toml"
        self.build = root / "build"
        self.env: dict[str, str] = {}

    def path(self, rel: str) -> Path:
        return self.root / rel

    def edit(self, old: str, new: str) -> None:
        text = self.toml.read_text()
        assert old in text, f"{old!r} not in edgeship.toml"
        self.toml.write_text(text.replace(old, new, 1))

    def append(self, text: str) -> None:
        self.toml.write_text(self.toml.read_text() + "\n" + text + "\n")

    def write(self, rel: str, data: str | bytes) -> Path:
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
        return p

    def json(self, rel: str) -> object:
        return json.loads(self.path(rel).read_text())

    def manifest(self, artifact: str, **changes: object) -> None:
        rel = f"{ART}/{artifact}/manifest.json"
        m = self.json(rel)
        assert isinstance(m, dict)
        m.update(changes)
        self.write(rel, json.dumps(m, indent=2))

    def read_only(self, rel: str) -> None:
        for d, _dirs, _files in os.walk(self.path(rel)):
            os.chmod(d, 0o555)


def _run(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeship", "--config", str(root / "edgeship.toml"), *argv],
                          cwd=root, env=_env(root), capture_output=True, text=True, timeout=600, check=False)


def _env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGESHIP_")}
    env["EDGESHIP_CACHE_DIR"] = os.environ.get("EDGESHIP_CACHE_DIR", str(ROOT / "build" / "cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(ROOT)])
    env["MPLCONFIGDIR"] = str(root / ".home" / "mpl")
    env["HOME"] = str(root / ".home")
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def base_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo exported (onnx, tflite x fp32, int8), evaluated, profiled on local, gated."""
    root = tmp_path_factory.mktemp("bad_input") / "base"
    root.mkdir()
    (root / ".home" / "mpl").mkdir(parents=True)
    text = (ROOT / "edgeship.toml").read_text()
    for old, new in FAST.items():
        assert old in text, old
        text = text.replace(old, new)
    (root / "edgeship.toml").write_text(text)
    (root / "corpus_data.py").write_text(DATA_MODULE)
    for argv in (("export", "-t", "onnx,tflite", "-p", "fp32,int8"), ("eval",), ("profile", "--device", "local"),
                 ("gate", "--no-remeasure")):
        proc = _run(root, *argv)
        assert proc.returncode == 0, f"{argv}: {proc.stderr[-2000:]}"
    return root


# --------------------------------------------------------------------------------------------
# what one case is, and how it is checked


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    argv: tuple[str, ...]
    names: tuple[str, ...] = ()          # substrings the error line must contain
    setup: Callable[[Project], None] | None = None
    code: int = 2
    changes: tuple[str, ...] = ()        # globs (relative to the project) allowed to change
    owner: str | None = None             # another engineer's branch implements this
    as_nobody: bool = False              # needs permissions to bite (the suite may run as root)
    env: dict[str, str] = field(default_factory=dict)
    one_line: bool = True
    run: Callable[[Project, list[str], dict[str, str]], tuple[int, str]] | None = None
    check: Callable[[Project], None] | None = None
    out_names: tuple[str, ...] = ()      # substrings stdout must contain (exit 1: the verdict is there)
    absent: tuple[str, ...] = ()         # substrings the error line must not contain (misleading words)


def edit(old: str, new: str) -> Callable[[Project], None]:
    return lambda p: p.edit(old, new)


def append(text: str) -> Callable[[Project], None]:
    return lambda p: p.append(text)


def write(rel: str, data: str | bytes) -> Callable[[Project], None]:
    def run(p: Project) -> None:
        p.write(rel, data)

    return run


def both(*fns: Callable[[Project], None]) -> Callable[[Project], None]:
    def run(p: Project) -> None:
        for fn in fns:
            fn(p)

    return run


EXPORT = ("export", "-t", "onnx", "-p", "fp32")
EXPORT_INT8 = ("export", "-t", "onnx", "-p", "int8")
GATE = ("gate", "--no-remeasure")
EVAL = ("eval", "-t", "onnx", "-p", "fp32")
PROFILE = ("profile", "--device", "local", "-t", "onnx", "-p", "fp32")
# reports are published as one set: a versioned .report-set directory the names link into
GATE_WRITES = (f"{REPORTS}/report.*", f"{REPORTS}/junit.xml", f"{REPORTS}/.*report-set*")


def profile_key(key: str, value: str) -> Callable[[Project], None]:
    """Set ``[profile] key = value`` (replacing the line if the base project has one)."""

    def run(p: Project) -> None:
        text = p.toml.read_text()
        line = re.compile(rf"^{key} = .*$", re.MULTILINE)
        if line.search(text):
            p.toml.write_text(line.sub(f"{key} = {value}", text, count=1))
        else:
            p.edit("[profile]\n", f"[profile]\n{key} = {value}\n")

    return run


def budget(text: str) -> Callable[[Project], None]:
    """One more [[budgets]] entry for the local device with ``text`` in it."""
    return append(f'[[budgets]]\ndevice = "local"\n{text}')


def ssh_device(extra: str) -> Callable[[Project], None]:
    return append(f'[devices.pi]\nkind = "ssh"\nhost = "127.0.0.1"\nport = 1\n{extra}')


def calib(ref: str) -> Callable[[Project], None]:
    return edit('calibration = "edgeship.demo:calibration_data"', f'calibration = "{ref}"')


def evaluation(ref: str) -> Callable[[Project], None]:
    return edit('evaluation = "edgeship.demo:evaluation_data"', f'evaluation = "{ref}"')


def factory(ref: str) -> Callable[[Project], None]:
    return edit('factory = "edgeship.demo:build_model"', f'factory = "{ref}"')


def source(name: str, data: bytes) -> Callable[[Project], None]:
    return both(write(name, data), edit('factory = "edgeship.demo:build_model"', f'source = "{name}"'))


def evil_pt2() -> bytes:
    import io
    import pickle

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (open, (EVIL_MARKER, "w"))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model/version", "7\n")
        z.writestr("model/data.pkl", pickle.dumps(Payload()))
        z.writestr("model/models/model.json", "{}")
    return buf.getvalue()


def report_with(mutate: Callable[[dict], object]) -> Callable[[Project], None]:
    """bad.json: the base project's report.json, mutated in place."""

    def run(p: Project) -> None:
        rep = p.json(f"{REPORTS}/report.json")
        assert isinstance(rep, dict)
        mutate(rep)
        p.write("bad.json", json.dumps(rep))

    return run


def _drop_passed(rep: dict) -> None:
    del rep["checks"][0]["passed"]


def _string_samples(rep: dict) -> None:
    r = next(r for r in rep["results"] if r["status"] == "ok")
    r["timing"]["samples_ns"] = ["fast"] * len(r["timing"]["samples_ns"])


def _no_device(rep: dict) -> None:
    del rep["results"][0]["device"]


def _verdict_typo(rep: dict) -> None:
    rep["checks"][0]["verdict"] = "PASSED"


def _limit_string(rep: dict) -> None:
    rep["checks"][0]["limit"] = "1 ms"


def _fail_but_passed(rep: dict) -> None:
    """A check says FAIL and passed: true (the rest as the gate wrote it)."""
    rep["checks"][0]["verdict"] = "FAIL"


def _failing(rep: dict) -> None:
    """A consistently failing report: one check FAIL (passed false) and the verdict FAIL."""
    rep["checks"][0].update(verdict="FAIL", passed=False)
    rep["verdict"] = "FAIL"


def junit_failures(n: int) -> Callable[[Project], None]:
    def run(p: Project) -> None:
        import xml.etree.ElementTree as ET

        root = ET.parse(p.path("out/junit.xml")).getroot()
        assert root.get("failures") == str(n), ET.tostring(root)[:500]

    return run


def result_edit(mutate: Callable[[dict], object]) -> Callable[[Project], None]:
    def run(p: Project) -> None:
        rel = f"{RESULTS}/onnx-fp32.json"
        r = p.json(rel)
        assert isinstance(r, dict)
        mutate(r)
        p.write(rel, json.dumps(r))

    return run


def truncate(rel: str, keep: float = 0.5) -> Callable[[Project], None]:
    def run(p: Project) -> None:
        data = p.path(rel).read_bytes()
        p.path(rel).write_bytes(data[: int(len(data) * keep)])

    return run


def tamper(rel: str) -> Callable[[Project], None]:
    def run(p: Project) -> None:
        data = bytearray(p.path(rel).read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.path(rel).write_bytes(bytes(data))

    return run


MISSING_ONNX_FP32 = ("FAIL", "onnx-fp32", "edgeship export --target onnx --precision fp32")


def remove_version(name: str) -> Callable[[Project], None]:
    """Delete the version directory the artifact's link points to: the link dangles."""
    def run(p: Project) -> None:
        link = p.path(f"{ART}/{name}")
        shutil.rmtree(link.parent / os.readlink(link))

    return run


def relink(name: str, target: str) -> Callable[[Project], None]:
    """Point the artifact's name at ``target`` (a missing version, itself: a loop); the old
    version directory stays, as a hand edit or another tool would leave it."""
    def run(p: Project) -> None:
        link = p.path(f"{ART}/{name}")
        link.unlink()
        link.symlink_to(target)

    return run


def interrupted_migration(name: str) -> Callable[[Project], None]:
    """fsutil._swap_link killed between renaming an older plain directory to a version and
    linking the name to it: only ``.NAME.v<id>/`` is left, no ``NAME``."""
    def run(p: Project) -> None:
        link = p.path(f"{ART}/{name}")
        version = link.parent / os.readlink(link)
        link.unlink()
        version.rename(link.parent / f".{name}.v{'1' * 32}")

    return run


def fails_in_report(artifact: str, why: str) -> Callable[[Project], None]:
    """report.json has FAIL rows for the artifact's checks, saying why and naming the export."""
    def run(p: Project) -> None:
        rep = p.json(f"{REPORTS}/report.json")
        assert isinstance(rep, dict) and rep["verdict"] == "FAIL"
        rows = [c for c in rep["checks"] if c["artifact"] == artifact]
        metrics = {c["metric"] for c in rows}
        assert {"size_kb", "latency_p90_ms", "peak_memory_mb"} <= metrics, metrics
        assert all(c["verdict"] == "FAIL" and why in c["detail"] and c["rerun"].startswith("edgeship export")
                   for c in rows), rows

    return run


def copy_artifact(name: str, dest: str) -> Callable[[Project], None]:
    def run(p: Project) -> None:
        shutil.copytree(p.path(f"{ART}/{name}"), p.path(dest))

    return run


def adb_device(adb: str) -> Callable[[Project], None]:
    return append(f'[devices.phone]\nkind = "adb"\nadb = "{adb}"')


def not_executable_adb(p: Project) -> None:
    p.write("tools/adb", "#!/bin/sh\necho never\n")
    os.chmod(p.path("tools/adb"), 0o644)
    p.append(f'[devices.phone]\nkind = "adb"\nadb = "{p.path("tools/adb")}"')


def inject(code: str) -> Callable[[Project], None]:
    """A sitecustomize that breaks edgeship from the inside: the way to make a real bug."""
    return write("inject/sitecustomize.py", code)


BUG = "import edgeship.gating.judge as g\n\ndef gate(*a, **k):\n    return {}['no such key']\n\ng.gate = gate\n"


# --------------------------------------------------------------------------------------------
# cases that need more than one plain run


def _interrupt_export(p: Project, cmd: list[str], env: dict[str, str]) -> tuple[int, str]:
    """SIGINT once the export is under way (the first artifact is being written)."""
    argv = cmd[:cmd.index("--config") + 2] + ["export", "-t", "onnx,tflite", "-p", "fp32,int8"]
    proc = subprocess.Popen(sigint_as_from_a_terminal(argv), cwd=p.root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:   # progress lines: "export digits_cnn onnx-fp32 ..."
        lines.append(line)
        if line.startswith("export "):
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    return proc.returncode, "".join(lines) + rest


def _interrupt_profile(p: Project, cmd: list[str], env: dict[str, str]) -> tuple[int, str]:
    argv = cmd[:cmd.index("--config") + 2] + ["profile", "--device", "local", "--min-seconds", "30"]
    proc = subprocess.Popen(sigint_as_from_a_terminal(argv), cwd=p.root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = [proc.stderr.readline()]
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    return proc.returncode, "".join(lines) + rest


def _two_at_once(*argv: str) -> Callable[[Project, list[str], dict[str, str]], tuple[int, str]]:
    def run(p: Project, cmd: list[str], env: dict[str, str]) -> tuple[int, str]:
        full = cmd[:cmd.index("--config") + 2] + list(argv)
        procs = [subprocess.Popen(full, cwd=p.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [pr.communicate(timeout=300)[1] for pr in procs]
        codes = [pr.returncode for pr in procs]
        # both must succeed: one writer never fails because another raced it
        return (0 if codes == [0, 0] else max(codes)), "".join(outs)

    return run


def _concurrently(*argvs: tuple[str, ...]) -> Callable[[Project, list[str], dict[str, str]], tuple[int, str]]:
    """Each argv in its own process, all started at once."""

    def run(p: Project, cmd: list[str], env: dict[str, str]) -> tuple[int, str]:
        base = cmd[:cmd.index("--config") + 2]
        procs = [subprocess.Popen(base + list(a), cwd=p.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for a in argvs]
        outs = [pr.communicate(timeout=300)[1] for pr in procs]
        codes = [pr.returncode for pr in procs]
        return (0 if not any(codes) else max(codes)), "".join(outs)

    return run


TWO_EVALS = (("eval", "-t", "onnx", "-p", "fp32"), ("eval", "-t", "tflite", "-p", "int8"))
TWO_EVALED = ("local/onnx-fp32", "local/tflite-int8")


def _drop_two_eval_entries(p: Project) -> None:
    data = p.json(f"{REPORTS}/eval.json")
    assert isinstance(data, dict) and set(TWO_EVALED) <= set(data["entries"]), sorted(data["entries"])
    for key in TWO_EVALED:
        del data["entries"][key]
    p.write(f"{REPORTS}/eval.json", json.dumps(data))
    p.write("kept-entries.json", json.dumps(sorted(data["entries"])))


def _both_evals_kept(p: Project) -> None:
    """eval.json's read-modify-write holds the lock: neither concurrent eval loses the other's entry."""
    data = p.json(f"{REPORTS}/eval.json")
    assert isinstance(data, dict)
    kept = p.json("kept-entries.json")
    assert isinstance(kept, list)
    assert set(TWO_EVALED) | set(kept) <= set(data["entries"]), sorted(data["entries"])


def _closed_port(p: Project) -> None:
    """[cluster] address of a port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p.append(f'[cluster]\naddress = "127.0.0.1:{port}"\nconnect_timeout_s = 5')


def _silent_listener(p: Project, cmd: list[str], env: dict[str, str]) -> tuple[int, str]:
    """gate against a port where a plain TCP server accepts and says nothing: exit 2 within
    connect_timeout_s (5) plus a few seconds of the child's own start, never a hang."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(srv.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    p.append('[cluster]\nconnect_timeout_s = 5')
    argv = [*cmd[:cmd.index("--config") + 2], *GATE, "--cluster", f"127.0.0.1:{port}"]
    # how long this machine takes to start edgeship up to the connection: the same gate with
    # nothing to connect to, so the bound below does not depend on how loaded the machine is
    t0 = time.monotonic()
    subprocess.run([*argv[:-2], "--cluster", "127.0.0.1:1"], cwd=p.root, env=env, capture_output=True, timeout=300,
                   check=False)
    startup = time.monotonic() - t0
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=p.root, env=env, capture_output=True, text=True, timeout=300, check=False)
    finally:
        srv.close()
        for c in accepted:
            c.close()
    took = time.monotonic() - t0
    assert accepted, "edgeship never connected"
    assert 5 <= took <= startup + 5 + 10, f"took {took:.1f} s (start-up {startup:.1f} s, connect_timeout_s 5)"
    return proc.returncode, proc.stderr


def _artifacts_complete(p: Project) -> None:
    """Every artifact directory verifies against its manifest; no temp dirs are left."""
    from edgeship.artifact.manifest import read_manifest

    root = p.path(ART)
    names = sorted(d.name for d in root.iterdir())
    # an artifact name is a link to its published version (.NAME.v<id>); anything else hidden is a leftover
    published = {os.readlink(root / n) for n in names if (root / n).is_symlink()}
    assert not [n for n in names if n.startswith(".") and n not in published], f"temp dirs left behind: {names}"
    assert {"onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"} <= set(names), names
    for n in names:
        read_manifest(root / n, verify=True)


def _results_whole(p: Project) -> None:
    d = p.path(RESULTS)
    assert not [f.name for f in d.iterdir() if f.name.startswith(".")], "temp files left behind"
    for f in d.glob("*.json"):
        json.loads(f.read_text())


def _eval_kept_others(p: Project) -> None:
    """A subset eval merges into eval.json: the other artifacts' entries are still there."""
    data = p.json(f"{REPORTS}/eval.json")
    assert isinstance(data, dict)
    keys = set(data.get("entries") or {})
    assert any(k.endswith("/tflite-int8") for k in keys), sorted(keys)


def _no_payload(p: Project) -> None:
    assert not p.path(EVIL_MARKER).exists(), "the .pt2's pickle ran"


# --------------------------------------------------------------------------------------------
# the corpus

C: list[Case] = []


def case(*args: object, **kw: object) -> None:
    C.append(Case(*args, **kw))  # type: ignore[arg-type]


# -- config: unreadable files --------------------------------------------------------------
case("toml-not-utf8", "config", EXPORT, ("edgeship.toml", "UTF-8"),
     lambda p: p.toml.write_bytes(p.toml.read_bytes().replace(b"# The demo", b"# The d\xe9mo \xff")))
case("toml-syntax", "config", EXPORT, ("edgeship.toml", "invalid TOML"), append("[model"))
case("toml-duplicate-table", "config", EXPORT, ("edgeship.toml", "invalid TOML"), append("[profile]\nthreads = 2"))
case("toml-empty", "config", EXPORT, ("missing required key 'model'",), write("edgeship.toml", ""))
case("toml-is-directory", "config", ("--config", "confdir", *EXPORT), ("confdir",),
     lambda p: p.path("confdir").mkdir())
case("toml-missing", "config", ("--config", "nope.toml", *EXPORT), ("nope.toml", "not found"))
case("toml-unreadable", "config", EXPORT, ("edgeship.toml",), lambda p: os.chmod(p.toml, 0o000), as_nobody=True)

# -- config: unknown keys in every table ----------------------------------------------------
case("unknown-top-level", "config", EXPORT, ("modle",), append("modle = 1"))
case("unknown-model", "config", EXPORT, ("model.facory", "factory"), edit("factory =", "facory ="))
case("unknown-model-input", "config", EXPORT, ("model.inputs[0].dtyp",), edit('dtype = "float32" }', 'dtyp = "float32" }'))
case("unknown-data", "config", EXPORT, ("data.calibraton", "calibration"), edit("calibration =", "calibraton ="))
case("unknown-quantization", "config", EXPORT, ("quantization.methd",), edit('method = "minmax"', 'methd = "minmax"'))
case("unknown-targets-onnx", "config", EXPORT, ("targets.onnx.opsett",), edit("[targets.onnx]\n", "[targets.onnx]\nopsett = 17\n"))
case("unknown-target-table", "config", EXPORT, ("onnxx", "onnx"), append("[targets.onnxx]\nopset = 17"))
case("unknown-profile", "config", PROFILE, ("profile.min_run",), profile_key("min_run", "5"))
case("unknown-gate", "config", GATE, ("gate.confidance",), append("[gate]\nconfidance = 0.9"))
case("unknown-devices-local", "config", PROFILE, ("devices.box.pythn",), append('[devices.box]\nkind = "local"\npythn = "python3"'))
case("unknown-devices-ssh", "devices", PROFILE, ("devices.pi.hots", "host"), append('[devices.pi]\nkind = "ssh"\nhots = "pi"'))
case("unknown-devices-adb", "devices", PROFILE, ("devices.phone.serail", "serial"), append('[devices.phone]\nkind = "adb"\nserail = "x"'))
case("unknown-budgets", "config", GATE, ("latency", "latency_ms"), budget("latency = 3"))
case("unknown-budgets-latency", "config", GATE, ("p91",), edit("latency_ms = { p90 = 1000.0 }", "latency_ms = { p91 = 1000.0 }"))
case("unknown-build", "config", EXPORT, ("build.dri", "dir"), append('[build]\ndri = "out"'))
case("build-not-table", "config", EXPORT, ("build",), edit("[model]", 'build = "out"\n[model]'))
case("build-twice", "config", EXPORT, ("build",), edit("[model]", 'build_dir = "b1"\n[build]\ndir = "b2"\n[model]'))

# -- config: numbers that are not finite, negative, zero or absurd --------------------------
for key, value, name in [
    ("timeout_s", "nan", "nan"), ("timeout_s", "inf", "inf"), ("timeout_s", "1e300", "huge"),
    ("timeout_s", "-1", "negative"), ("timeout_s", "0", "zero"), ("max_seconds", "inf", "inf"),
    ("min_seconds", "-inf", "neg-inf"), ("warmup_seconds", "nan", "nan"), ("min_runs", "0", "zero"),
    ("threads", "-2", "negative"), ("threads", "1e9", "huge"), ("max_runs", "1e300", "huge"), ("min_runs", "2.5", "fraction"),
]:
    case(f"profile-{key}-{name}", "config", PROFILE, (f"profile.{key}",), profile_key(key, value))
for text, key, name in [
    ("latency_ms = { p90 = inf }", "latency_ms.p90", "inf"), ("latency_ms = { p90 = nan }", "latency_ms.p90", "nan"),
    ("latency_ms = { p90 = -1.0 }", "latency_ms.p90", "negative"), ("latency_ms = { mean = 0 }", "latency_ms.mean", "zero"),
]:
    case(f"budget-{key}-{name}", "config", GATE, (key,), edit("latency_ms = { p90 = 1000.0 }", text))
for key, value, name in [
    ("size_kb", "-inf", "neg-inf"), ("size_kb", "0", "zero"), ("max_accuracy_drop", "nan", "nan"),
    ("max_accuracy_drop", "-0.1", "negative"), ("min_cosine", "2.0", "over-one"), ("min_cosine", "nan", "nan"),
]:
    case(f"budget-{key}-{name}", "config", GATE, (key,), budget(f"{key} = {value}"))
case("budget-peak-memory-zero", "config", GATE, ("peak_memory_mb",), edit("peak_memory_mb = 4000", "peak_memory_mb = 0"))
for key, value, name in [
    ("regression_threshold", "nan", "nan"), ("regression_threshold", "-0.5", "negative"),
    ("regression_threshold", "1.5", "over-one"), ("confidence", "1.0", "one"), ("regression_alpha", "inf", "inf"),
    ("memory_tolerance_mb", "nan", "nan"), ("bootstrap_resamples", "1e300", "huge"),
]:
    case(f"gate-{key}-{name}", "config", GATE, (f"gate.{key}",), append(f"[gate]\n{key} = {value}"))
case("calibration-samples-zero", "config", EXPORT_INT8, ("data.calibration_samples",),
     edit("calibration_samples = 256", "calibration_samples = 0"))
case("calibration-samples-string", "config", EXPORT_INT8, ("data.calibration_samples",),
     edit("calibration_samples = 256", 'calibration_samples = "many"'))
case("quantization-percentile-nan", "config", EXPORT_INT8, ("quantization.percentile",),
     edit('method = "minmax"', 'method = "percentile"\npercentile = nan'))
case("input-shape-zero", "config", EXPORT, ("model.inputs[0].shape",), edit("shape = [1, 1, 8, 8]", "shape = [1, 0, 8, 8]"))
case("input-shape-huge", "config", EXPORT, ("model.inputs[0].shape",), edit("shape = [1, 1, 8, 8]", "shape = [1, 1, 8, 99999999999]"))
case("input-dtype", "config", EXPORT, ("model.inputs[0].dtype", "float32"), edit('dtype = "float32" }', 'dtype = "float64" }'))
case("budget-target-typo", "config", GATE, ("tflit", "tflite"), edit('target = "*"', 'target = "tflit"'))
case("budget-precision-typo", "config", GATE, ("int9",), edit('precision = "int8"', 'precision = "int9"'))

# -- config: names ---------------------------------------------------------------------------
case("model-name-escape", "config", EXPORT, ("model.name", "../evil"), edit('name = "digits_cnn"', 'name = "../evil"'))
case("model-name-empty", "config", EXPORT, ("model.name",), edit('name = "digits_cnn"', 'name = ""'))
case("model-name-hidden", "config", EXPORT, ("model.name",), edit('name = "digits_cnn"', 'name = ".cnn"'))
case("device-name-escape", "config", ("profile", "--device", "../../escaped"), ("../../escaped",),
     append('[devices."../../escaped"]\nkind = "local"'))
case("device-name-slash", "config", PROFILE, ("a/b",), append('[devices."a/b"]\nkind = "local"'))
case("device-name-space", "config", PROFILE, ("my phone",), append('[devices."my phone"]\nkind = "local"'))
case("device-name-hidden", "config", PROFILE, (".hidden",), append('[devices.".hidden"]\nkind = "local"'))

# -- model -----------------------------------------------------------------------------------
case("factory-typo", "model", EXPORT, ("model.factory", "build_model"), factory("edgeship.demo:build_modle"))
case("factory-no-module", "model", EXPORT, ("model.factory", "no_such_pkg"), factory("no_such_pkg.models:build"))
case("factory-not-a-ref", "model", EXPORT, ("model.factory",), factory("edgeship.demo.build_model"))
case("factory-raises", "model", EXPORT, ("model.factory", "checkpoint is missing"), factory("corpus_data:model_raises"))
case("factory-returns-none", "model", EXPORT, ("model.factory", "NoneType"), factory("corpus_data:model_none"))
case("factory-and-source", "model", EXPORT, ("factory", "source"), edit("[model]\n", '[model]\nsource = "m.pt2"\n'))
case("source-missing", "model", EXPORT, ("model.source", "m.pt2"), edit('factory = "edgeship.demo:build_model"', 'source = "m.pt2"'))
case("source-not-pt2", "model", EXPORT, ("model.source",), source("m.pt2", b"not a zip"))
case("source-untrusted-pickle", "model", EXPORT, ("model.source",), source("m.pt2", evil_pt2()), owner="h11b",
     check=_no_payload)
case("input-shape-wrong-for-model", "model", EXPORT, ("shape",), edit("shape = [1, 1, 8, 8]", "shape = [1, 3, 5, 5]"))

# -- data --------------------------------------------------------------------------------------
case("calibration-raises-midway", "data", EXPORT_INT8, ('[data] calibration = "corpus_data:midway"', "disk went away"),
     calib("corpus_data:midway"))
case("calibration-raises-at-call", "data", EXPORT_INT8, ("[data] calibration", "no dataset mounted"),
     calib("corpus_data:raises_at_call"))
case("calibration-returns-none", "data", EXPORT_INT8, ("[data] calibration", "NoneType"), calib("corpus_data:returns_none"))
# the same data checks through eval (no torch needed before the data is read: faster)
case("evaluation-returns-dict", "data", EVAL, ("[data] evaluation", "dict"), evaluation("corpus_data:returns_dict"))
case("evaluation-yields-lists", "data", EVAL, ("[data] evaluation", "list"), evaluation("corpus_data:yields_lists"))
case("calibration-wrong-shape", "data", EXPORT_INT8, ("[data] calibration", "shape"), calib("corpus_data:wrong_shape"))
case("calibration-wrong-dtype", "data", EXPORT_INT8, ("[data] calibration", "dtype"), calib("corpus_data:wrong_dtype"))
case("evaluation-ragged", "data", EVAL, ("[data] evaluation", "image"), evaluation("corpus_data:ragged"))
case("calibration-missing-input", "data", EXPORT_INT8, ("[data] calibration", "image"), calib("corpus_data:missing_input"))
case("evaluation-empty", "data", EVAL, ("[data] evaluation", "no samples"), evaluation("corpus_data:empty"))
case("calibration-dir-missing", "data", EXPORT_INT8, ("data.calibration", "calib_images"), calib("calib_images/"))
case("calibration-corrupt-npz", "data", EXPORT_INT8, ("0.npz",),
     both(write("calib/0.npz", b"PK\x03\x04 truncated"), calib("calib/")))
case("evaluation-short-labels", "data", EVAL, ("[data] evaluation", "label"), evaluation("corpus_data:short_labels"))
case("evaluation-scalar-label", "data", EVAL, ("[data] evaluation", "label"), evaluation("corpus_data:scalar_label"))
case("evaluation-labels-vanish", "data", EVAL, ("[data] evaluation", "label"), evaluation("corpus_data:labels_then_none"))
case("evaluation-raises-midway", "data", EVAL, ("[data] evaluation", "disk went away"), evaluation("corpus_data:midway"))
case("evaluation-returns-none", "data", EVAL, ("[data] evaluation", "NoneType"), evaluation("corpus_data:returns_none"))

# -- artifacts and manifests ---------------------------------------------------------------------
case("manifest-truncated", "artifacts", GATE, ("onnx-fp32", "manifest.json"), truncate(f"{ART}/onnx-fp32/manifest.json"))
case("manifest-is-list", "artifacts", GATE, ("onnx-fp32", "manifest.json"), write(f"{ART}/onnx-fp32/manifest.json", "[]"))
case("manifest-missing", "artifacts", GATE, ("onnx-fp32", "manifest.json"), lambda p: p.path(f"{ART}/onnx-fp32/manifest.json").unlink())
case("manifest-schema", "artifacts", GATE, ("onnx-fp32", "schema"), lambda p: p.manifest("onnx-fp32", schema="edgeship.manifest/0"))
case("model-file-tampered", "artifacts", GATE, ("model.onnx", "sha256"), tamper(f"{ART}/onnx-fp32/model.onnx"))
case("model-file-deleted", "artifacts", EVAL, ("model.tflite",), lambda p: p.path(f"{ART}/tflite-int8/model.tflite").unlink())
case("manifest-model-file-outside-files", "artifacts", GATE, ("onnx-fp32", "model_file"),
     both(write(f"{ART}/onnx-fp32/other.onnx", b"x"), lambda p: p.manifest("onnx-fp32", model_file="other.onnx")),
     owner="h11b")
case("manifest-entry-dotdot", "artifacts", GATE, ("onnx-fp32", "../../x"),
     lambda p: p.manifest("onnx-fp32", files={**p.json(f"{ART}/onnx-fp32/manifest.json")["files"],  # type: ignore[index]
                                              "../../x": {"sha256": "0" * 64, "size": 1}}), owner="h11b")
case("manifest-entry-absolute", "artifacts", GATE, ("onnx-fp32", "/etc/hostname"),
     lambda p: p.manifest("onnx-fp32", files={**p.json(f"{ART}/onnx-fp32/manifest.json")["files"],  # type: ignore[index]
                                              "/etc/hostname": {"sha256": "0" * 64, "size": 1}}), owner="h11b")
case("manifest-runtime-typo", "artifacts", GATE, ("onnx-fp32", "runtime"),
     lambda p: p.manifest("onnx-fp32", runtime="onnxruntme"), owner="h11b")
case("manifest-foreign-model", "artifacts", GATE, ("onnx-fp32", "model"),
     lambda p: p.manifest("onnx-fp32", model="someone_else"), owner="h11b")

# -- artifacts the config promises but the disk does not hold: FAIL rows naming the export, never a
# check that disappears (issue 25); eval and profile refuse the same tree with one line
case("artifact-version-dir-removed", "artifacts", GATE, (), remove_version("onnx-fp32"), code=1,
     changes=GATE_WRITES, out_names=MISSING_ONNX_FP32, check=fails_in_report("onnx-fp32", "which is missing"))
case("artifact-dangling-link", "artifacts", GATE, (), relink("onnx-fp32", ".onnx-fp32.v" + "0" * 32), code=1,
     changes=GATE_WRITES, out_names=MISSING_ONNX_FP32, check=fails_in_report("onnx-fp32", "which is missing"))
case("artifact-link-loop", "artifacts", GATE, (), relink("onnx-fp32", "onnx-fp32"), code=1,
     changes=GATE_WRITES, out_names=MISSING_ONNX_FP32, check=fails_in_report("onnx-fp32", "symlink loop"))
case("artifact-link-loop-pair", "artifacts", GATE, (),
     both(relink("onnx-fp32", "onnx-int8"), relink("onnx-int8", "onnx-fp32")), code=1, changes=GATE_WRITES,
     out_names=MISSING_ONNX_FP32, check=fails_in_report("onnx-int8", "symlink loop"))
case("artifact-migration-interrupted", "artifacts", GATE, (), interrupted_migration("onnx-fp32"), code=1,
     changes=GATE_WRITES, out_names=MISSING_ONNX_FP32, check=fails_in_report("onnx-fp32", "promised by [targets.onnx]"))
case("artifact-dangling-eval", "artifacts", EVAL, ("onnx-fp32", "missing"), remove_version("onnx-fp32"))
case("artifact-dangling-profile", "artifacts", PROFILE, ("onnx-fp32", "missing"), remove_version("onnx-fp32"))

# -- devices ---------------------------------------------------------------------------------------
case("device-unknown", "devices", ("profile", "--device", "lcoal"), ("lcoal", "local"))
case("device-check-unknown", "devices", ("devices", "check", "lcoal"), ("lcoal", "local"))
case("device-check-no-name", "devices", ("devices", "check"), ("devices check NAME",))
case("device-kind-missing", "devices", PROFILE, ("devices.pi", "kind"), append('[devices.pi]\nhost = "pi"'))
case("device-kind-typo", "devices", PROFILE, ("devices.pi", "sshh"), append('[devices.pi]\nkind = "sshh"\nhost = "pi"'))
case("adb-not-executable", "devices", ("profile", "--device", "phone"), ("phone", "adb"), not_executable_adb)
case("adb-is-directory", "devices", ("profile", "--device", "phone"), ("phone", "adb"),
     both(lambda p: p.path("adbdir").mkdir(), lambda p: p.append(f'[devices.phone]\nkind = "adb"\nadb = "{p.path("adbdir")}"')))
case("local-python-missing", "devices", ("profile", "--device", "box", "-t", "onnx", "-p", "fp32"), ("box", "python"),
     append('[devices.box]\nkind = "local"\npython = "/nonexistent/python3"'), changes=("build/results/box",))
for value, name in [("nan", "nan"), ("inf", "inf"), ("-100", "negative"), ("0", "zero"), ("1e300", "huge")]:
    case(f"ssh-connect-timeout-{name}", "devices", ("devices", "check", "pi"), ("devices.pi.connect_timeout_s",),
         ssh_device(f"connect_timeout_s = {value}"))
case("ssh-port-range", "devices", ("devices", "check", "pi"), ("devices.pi.port",),
     append('[devices.pi]\nkind = "ssh"\nhost = "127.0.0.1"\nport = 70000'))
for opt, name in [("StrictHostKeyChecking=no", "eq-no"), ("StrictHostKeyChecking no", "space-no"),
                  ("StrictHostKeyChecking=off", "off"), ("stricthostkeychecking=false", "lower-false"),
                  ("StrictHostKeyChecking\tno", "tab"), ("StrictHostKeyChecking=accept-new", "accept-new"),
                  ("UserKnownHostsFile=/dev/null", "known-hosts-null"), ("GlobalKnownHostsFile=/dev/null", "global-known-hosts")]:
    key = opt.split("=")[0].split()[0]
    case(f"ssh-option-{name}", "devices", ("profile", "--device", "pi", "-t", "onnx", "-p", "fp32"), ("pi", key),
         ssh_device(f"ssh_options = [{json.dumps(opt)}]"), owner=None if name == "eq-no" else "h11b")

# -- gate ------------------------------------------------------------------------------------------
case("gate-no-budgets", "gate", GATE, ("budgets",),
     lambda p: p.toml.write_text(p.toml.read_text().split("# Example budgets")[0]))
case("gate-threshold-nan", "gate", (*GATE, "--threshold", "nan"), ("threshold",), owner="h11a")
case("gate-threshold-negative", "gate", (*GATE, "--threshold", "-0.5"), ("threshold",), owner="h11a")
case("gate-threshold-not-a-number", "gate", (*GATE, "--threshold", "fast"), ("threshold",))
case("gate-device-typo", "gate", (*GATE, "--device", "lcoal"), ("lcoal", "local"), owner="h11a")
# every budget names "local" (none is "*"): nothing applies to the configured device "box"
case("gate-zero-checks", "gate", (*GATE, "--device", "box"), ("box",),
     both(lambda p: p.edit('device = "*"', 'device = "local"'), lambda p: p.edit('device = "*"', 'device = "local"'),
          append('[devices.box]\nkind = "local"')), owner="h11a")
case("gate-junit-is-directory", "gate", GATE, ("junit.xml",),
     both(lambda p: p.path(f"{REPORTS}/junit.xml").unlink(), lambda p: p.path(f"{REPORTS}/junit.xml").mkdir()),
     changes=(f"{REPORTS}/report.*",))
case("gate-eval-truncated", "gate", GATE, ("eval.json", "edgeship eval"), truncate(f"{REPORTS}/eval.json"))
case("gate-eval-list", "gate", GATE, ("eval.json",), write(f"{REPORTS}/eval.json", "[]"))
case("gate-eval-not-utf8", "gate", GATE, ("eval.json",), write(f"{REPORTS}/eval.json", b'{"schema": "\xff\xfe"}'))
case("gate-result-list", "gate", GATE, ("onnx-fp32.json", "edgeship profile"), write(f"{RESULTS}/onnx-fp32.json", "[]"))
case("gate-result-truncated", "gate", GATE, ("onnx-fp32.json",), truncate(f"{RESULTS}/onnx-fp32.json", 0.3))
case("gate-result-no-device", "gate", GATE, ("onnx-fp32.json",), result_edit(lambda r: r.pop("device")))
case("gate-result-string-samples", "gate", GATE, ("onnx-fp32.json",),
     result_edit(lambda r: r["timing"].update(samples_ns=["1"] * 70)))
case("gate-result-status-missing", "gate", GATE, ("onnx-fp32.json",), result_edit(lambda r: r.pop("status")))
case("gate-baseline-list", "gate", (*GATE, "--baseline", "bad.json"), ("bad.json", "list"), write("bad.json", "[]"))
case("gate-baseline-no-device", "gate", (*GATE, "--baseline", "bad.json"), ("bad.json", "device"), report_with(_no_device))
case("gate-baseline-missing", "gate", (*GATE, "--baseline", "nope.json"), ("nope.json", "not found"))
case("gate-read-only-build", "gate", GATE, ("reports",), lambda p: p.read_only("build"), as_nobody=True)
case("gate-read-only-reports", "gate", GATE, ("reports",), lambda p: p.read_only(REPORTS), as_nobody=True)

# eval leaves one fidelity line per device x artifact in the history (edgeship history draws it)
case("eval-subset-merges", "gate", EVAL, (), code=0, changes=(f"{REPORTS}/eval.json", "build/history/*"), owner="h12b",
     check=_eval_kept_others)

# -- report ----------------------------------------------------------------------------------------
case("report-from-valid", "report", ("report", "--from", f"{REPORTS}/report.json", "--out", "out"), (), code=0)
case("report-from-list", "report", ("report", "--from", "bad.json"), ("bad.json", "list"), write("bad.json", "[1, 2]"))
case("report-from-directory", "report", ("report", "--from", "build"), ("build", "directory"))
case("report-from-missing", "report", ("report", "--from", "nope.json"), ("nope.json", "not found"))
case("report-from-truncated", "report", ("report", "--from", "bad.json"), ("bad.json",),
     lambda p: p.write("bad.json", p.path(f"{REPORTS}/report.json").read_bytes()[:500]))
case("report-from-not-utf8", "report", ("report", "--from", "bad.json"), ("bad.json",), write("bad.json", b"\xff\xfe{}"))
case("report-from-no-passed", "report", ("report", "--from", "bad.json"), ("bad.json", "passed"), report_with(_drop_passed))
case("report-from-string-samples", "report", ("report", "--from", "bad.json"), ("bad.json", "samples_ns"),
     report_with(_string_samples))
case("report-from-verdict-typo", "report", ("report", "--from", "bad.json"), ("bad.json", "verdict"), report_with(_verdict_typo))
case("report-from-limit-string", "report", ("report", "--from", "bad.json"), ("bad.json", "limit"), report_with(_limit_string))
case("report-from-no-device", "report", ("report", "--from", "bad.json"), ("bad.json", "device"), report_with(_no_device))
case("report-from-wrong-schema", "report", ("report", "--from", "bad.json"), ("bad.json", "schema"),
     report_with(lambda r: r.update(schema="edgeship.report/0")))
case("report-from-fail-passed-true", "report", ("report", "--from", "bad.json", "--out", "out"),
     ("bad.json", "checks[0]", "FAIL", "passed true"), report_with(_fail_but_passed))
case("report-from-verdict-contradicts-checks", "report", ("report", "--from", "bad.json", "--out", "out"),
     ("bad.json", "verdict"), report_with(lambda r: r.update(verdict="FAIL")))
case("report-from-failing", "report", ("report", "--from", "bad.json", "--out", "out"), (), report_with(_failing),
     code=1, check=junit_failures(1))
case("report-baseline-truncated", "report", ("report", "--from", f"{REPORTS}/report.json", "--out", "out", "--baseline", "bad.json"),
     ("bad.json",), write("bad.json", '{"schema": "edgeship.report/1", "checks": ['))
case("report-out-is-file", "report", ("report", "--from", f"{REPORTS}/report.json", "--out", "afile"), ("afile",),
     write("afile", "x"))
case("report-out-unwritable", "report", ("report", "--from", f"{REPORTS}/report.json", "--out", "locked/out"), ("locked",),
     both(lambda p: p.path("locked").mkdir(), lambda p: os.chmod(p.path("locked"), 0o555)), as_nobody=True)

# -- explain PATH: the build's artifact of that name, or refused; never the build's one for another path
case("explain-elsewhere", "usage", ("explain", "elsewhere/onnx-int8"), ("elsewhere/onnx-int8", "not the build's artifact"),
     copy_artifact("onnx-int8", "elsewhere/onnx-int8"))
case("explain-no-such-path", "usage", ("explain", "/nonexistent/onnx-int8"), ("/nonexistent/onnx-int8",))

# -- read-only build/ for the writers ----------------------------------------------------------------
case("export-read-only-build", "gate", EXPORT, ("digits_cnn",), lambda p: p.read_only("build"), as_nobody=True)
case("profile-read-only-build", "gate", PROFILE, ("local",), lambda p: p.read_only("build"), as_nobody=True)
case("eval-read-only-reports", "gate", EVAL, ("reports",), lambda p: p.read_only(REPORTS), as_nobody=True)

# -- usage -------------------------------------------------------------------------------------------
case("usage-unknown-command", "usage", ("exprot",), ("exprot",))
case("usage-target-typo", "usage", ("export", "-t", "tflit"), ("tflit", "tflite"))
case("usage-precision-unknown", "usage", ("export", "-t", "onnx", "-p", "int8-weight"), ("int8-weight",))
case("usage-min-runs-zero", "usage", ("profile", "--min-runs", "0"), ("--min-runs",))
case("usage-min-seconds-nan", "usage", ("profile", "--min-seconds", "nan"), ("--min-seconds",))
case("usage-min-seconds-inf", "usage", ("profile", "--min-seconds", "inf"), ("--min-seconds",))
case("usage-compare-samples-zero", "usage", ("compare", "--samples", "0"), ("--samples",))

# -- internal errors -----------------------------------------------------------------------------------
case("internal-error-one-line", "internal", GATE, ("internal error", "KeyError", "EDGESHIP_VERBOSE=1"),
     inject(BUG), code=3, env={"PYTHONPATH": "inject"})
case("internal-error-verbose", "internal", GATE, ("KeyError",), inject(BUG), code=3,
     env={"PYTHONPATH": "inject", "EDGESHIP_VERBOSE": "1"}, one_line=False)

# -- signals and concurrency ------------------------------------------------------------------------------
case("sigint-export", "signals", (), ("interrupted",), code=130, run=_interrupt_export,
     changes=(f"{ART}/*",), check=_artifacts_complete)
# interrupted in round 1 of 5: no artifact completed, so no result is replaced (or deleted)
case("sigint-profile", "signals", (), ("interrupted",), code=130, run=_interrupt_profile, check=_results_whole)
case("two-exports-at-once", "concurrency", (), (), code=0, run=_two_at_once(*EXPORT),
     changes=(f"{ART}/onnx-fp32", f"{ART}/.onnx-fp32.v*"),
     owner="h11b", check=_artifacts_complete)
case("two-gates-at-once", "concurrency", (), (), code=0, run=_two_at_once(*GATE), changes=GATE_WRITES,
     owner="h11b")
case("two-evals-at-once", "concurrency", (), (), _drop_two_eval_entries, code=0, run=_concurrently(*TWO_EVALS),
     changes=(f"{REPORTS}/eval.json", "build/history/*"), check=_both_evals_kept)

# -- cluster: an address where no Ray head answers is one line, exit 2, within connect_timeout_s ---------
case("cluster-closed-port", "devices", GATE, ("cannot reach 127.0.0.1:", "ray start --head"), _closed_port)
case("cluster-silent-listener", "devices", (), ("no answer from a Ray head", "within 5 s", "connect_timeout_s"),
     run=_silent_listener)


# -- untrusted JSON: every file edgeship reads back (issue 25) -----------------------------------
HISTORY = "build/history/local.jsonl"
REPORT_FROM = ("report", "--from", "bad.json", "--out", "out")
BASELINE = (*GATE, "--baseline", "bad.json")
DEEP = "[" * 100_000                                 # past the interpreter's recursion limit
NESTED = '{"a": ' * 100 + "1" + "}" * 100             # parses, but deeper than any file of ours
HUGE_INT = "9" * 5000                                # more digits than int() converts


def sub_text(rel: str, pattern: str, repl: str, dest: str | None = None) -> Callable[[Project], None]:
    """``rel`` with the first match of ``pattern`` replaced (raw text: NaN, deep nesting ...),
    written back or to ``dest``."""

    def run(p: Project) -> None:
        text = p.path(rel).read_text()
        new, n = re.subn(pattern, lambda _m: repl, text, count=1)
        assert n == 1, f"{pattern!r} not in {rel}"
        p.write(dest or rel, new)

    return run


def history_line(line: str | bytes) -> Callable[[Project], None]:
    """One more line at the end of the local device's session history."""

    def run(p: Project) -> None:
        data = line if isinstance(line, bytes) else line.encode()
        p.path(HISTORY).write_bytes(p.path(HISTORY).read_bytes() + data + b"\n")

    return run


def history_sub(pattern: str, repl: str) -> Callable[[Project], None]:
    return sub_text(HISTORY, pattern, repl)


def report_sub(pattern: str, repl: str) -> Callable[[Project], None]:
    """bad.json: the base project's report.json text with one value replaced."""
    return sub_text(f"{REPORTS}/report.json", pattern, repl, dest="bad.json")


def _strict_json(p: Project) -> None:
    """report.json parses with a strict parser: no NaN or Infinity (RFC 8259 has neither)."""

    def refuse(name: str) -> None:
        raise AssertionError(f"report.json holds {name}")

    json.loads(p.path(f"{REPORTS}/report.json").read_text(), parse_constant=refuse)


# the session history (build/history/<device>.jsonl), read by every gate of a latency budget
for name, fn in [
    ("not-utf8", history_line(b'{"digest": "\xff\xfe"}')),
    ("deep-nesting", history_line(DEEP)),
    ("nested", history_line(NESTED)),
    ("stats-list", history_sub(r'"p90": [0-9.e-]+', '"p90": [1, 2]')),
    ("stats-string", history_sub(r'"p90": [0-9.e-]+', '"p90": "fast"')),
    ("stats-object", history_sub(r'"p90": [0-9.e-]+', '"p90": {"ms": 1}')),
    ("stats-negative", history_sub(r'"p90": [0-9.e-]+', '"p90": -1.0')),
    ("stats-infinity", history_sub(r'"p90": [0-9.e-]+', '"p90": Infinity')),
    ("stats-neg-infinity", history_sub(r'"mean": [0-9.e-]+', '"mean": -Infinity')),
    ("stats-nan", history_sub(r'"p50": [0-9.e-]+', '"p50": NaN')),
    ("stats-huge-float", history_sub(r'"p90": [0-9.e-]+', '"p90": 1e400')),
    ("stats-huge-int", history_sub(r'"p90": [0-9.e-]+', f'"p90": {HUGE_INT}')),
    ("stats-not-object", history_sub(r'"stats": \{[^}]*\}', '"stats": [0.1, 0.2]')),
    ("digest-number", history_sub(r'"digest": "[0-9a-f]+"', '"digest": 42')),
    ("runtime-list", history_sub(r'"runtime": "[^"]*"', '"runtime": ["onnxruntime"]')),
    ("threads-list", history_sub(r'"threads": \d+', '"threads": [1]')),
    ("cpu-share-string", history_sub(r'"cpu_share": [0-9.]+', '"cpu_share": "all"')),
    ("created-number", history_sub(r'"created": "[^"]*"', '"created": 1700000000')),
    ("record-list", history_line("[]")),
    ("record-null", history_line("null")),
    ("truncated", history_line('{"digest": "abc", "stats": {"p90": 0.0')),
]:
    case(f"history-{name}", "history", GATE, ("local.jsonl",), fn)
case("history-is-directory", "history", GATE, ("local.jsonl",),
     both(lambda p: p.path(HISTORY).unlink(), lambda p: p.path(HISTORY).mkdir()))
case("report-json-is-strict", "history", GATE, (), code=0, changes=GATE_WRITES, check=_strict_json)

# report --from and gate --baseline: files the user names
HOSTILE_REPORTS: list[tuple[str, Callable[[Project], None]]] = [
    ("deep-nesting", write("bad.json", DEEP)),
    ("nested", report_with(lambda r: r.update(extra=json.loads(NESTED)))),
    ("nan", report_sub(r'"value": [0-9.e-]+', '"value": NaN')),
    ("infinity", report_sub(r'"samples_ns": \[\s*\d+', '"samples_ns": [Infinity')),
    ("huge-float", report_sub(r'"limit": [0-9.e-]+', '"limit": 1e999')),
    ("huge-int", report_sub(r'"size_bytes": \d+', f'"size_bytes": {HUGE_INT}')),
    ("utf16", lambda p: p.write("bad.json", p.path(f"{REPORTS}/report.json").read_text().encode("utf-16"))),
    ("empty", write("bad.json", "")),
    ("null", write("bad.json", "null")),
    ("results-string", report_with(lambda r: r.update(results="all ok"))),
    ("artifact-target-list", report_with(lambda r: r["results"][0]["artifact"].update(target=["onnx"]))),
    ("size-absurd", report_with(lambda r: r["results"][0]["artifact"].update(size_bytes=1e308))),
    ("summary-empty", report_with(lambda r: r["results"][0].update(summary_ms={}))),
    ("runtime-string", report_with(lambda r: r["results"][0].update(runtime="onnxruntime"))),
    ("rounds-string", report_with(lambda r: r["results"][0]["timing"].update(rounds="five"))),
    ("negative-samples", report_with(lambda r: r["results"][0]["timing"].update(samples_ns=[-1] * 70))),
    ("eval-entries-list", report_with(lambda r: r["eval"].update(entries=[1]))),
    ("eval-accuracy-string", report_with(lambda r: next(iter(r["eval"]["entries"].values())).update(accuracy="97%"))),
    ("eval-cosine-object", report_with(lambda r: next(iter(r["eval"]["entries"].values())).update(cosine_mean={}))),
    ("counts-string", report_with(lambda r: r.update(counts="many"))),
]
for name, fn in HOSTILE_REPORTS:
    case(f"report-from-{name}", "report", REPORT_FROM, ("bad.json",), fn)
for name, fn in HOSTILE_REPORTS[:8] + [HOSTILE_REPORTS[13], HOSTILE_REPORTS[14], HOSTILE_REPORTS[15]]:
    case(f"gate-baseline-{name}", "gate", BASELINE, ("bad.json",), fn)
case("report-baseline-deep-nesting", "report",
     ("report", "--from", f"{REPORTS}/report.json", "--out", "out", "--baseline", "bad.json"), ("bad.json",),
     write("bad.json", DEEP))

# the other JSON edgeship wrote and reads back: manifests, results, eval.json
for rel, argv, named in [(f"{ART}/onnx-fp32/manifest.json", GATE, "manifest.json"),
                         (f"{RESULTS}/onnx-fp32.json", GATE, "onnx-fp32.json"),
                         (f"{REPORTS}/eval.json", GATE, "eval.json")]:
    kind = named.split(".")[0].replace("onnx-fp32", "result")
    case(f"{kind}-deep-nesting", "artifacts", argv, (named,), write(rel, DEEP))
    case(f"{kind}-nan", "artifacts", argv, (named,), sub_text(rel, r'": [0-9]+\.[0-9]+', '": NaN'))
    case(f"{kind}-huge-int", "artifacts", argv, (named,), sub_text(rel, r'": [0-9]+(?=[,\n])', f'": {HUGE_INT}'))

# NaN/inf in the data: the data source and the input are named, not a mismatch of outputs
for name, fn in [("nan_first", "NaN"), ("inf_late", "inf"), ("neg_inf", "inf"), ("overflows_float32", "inf")]:
    case(f"calibration-{name.replace('_', '-')}", "data", EXPORT_INT8,
         (f'[data] calibration = "corpus_data:{name}"', "input 'image'", fn), calib(f"corpus_data:{name}"))
for name, fn in [("nan_first", "NaN"), ("inf_late", "inf")]:
    case(f"evaluation-{name.replace('_', '-')}", "data", EVAL,
         (f'[data] evaluation = "corpus_data:{name}"', "input 'image'", fn), evaluation(f"corpus_data:{name}"))


def _npz_with_nan(p: Project) -> None:
    import numpy as np

    img = np.zeros((4, 1, 8, 8), np.float32)
    img[1, 0, 2, 2] = np.nan
    path = p.path("calib/0.npz")
    path.parent.mkdir()
    np.savez(path, image=img)


case("calibration-dir-nan", "data", EXPORT_INT8, ('[data] calibration = "calib/"', "NaN"), both(_npz_with_nan, calib("calib/")))


# a compressed model (build/compressed) whose manifest was re-signed over a bad weights.npz
COMPRESS = '[compress]\n[[compress.steps]]\nkind = "weights4"'


def _npz(arrays: dict[str, object]) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _demo_state() -> dict[str, Any]:
    from edgeship.demo import _net

    return {k: v.numpy() for k, v in _net().state_dict().items()}


def compressed(weights: Callable[[], bytes], mutate: Callable[[dict], object] | None = None,
               raw: str | None = None) -> Callable[[Project], None]:
    """A build/compressed/ store for this config made of ``weights`` with a matching
    (re-signed) manifest, then ``mutate``d, or ``raw`` manifest text."""

    def run(p: Project) -> None:
        from edgeship.compress.store import MANIFEST, MODEL_FILE, SCHEMA, WEIGHTS_FILE, recipe_digest
        from edgeship.config import load_config

        p.append(COMPRESS)
        cfg = load_config(p.toml)
        d = p.path(f"build/compressed/{MODEL}")
        d.mkdir(parents=True)
        (d / WEIGHTS_FILE).write_bytes(weights())
        (d / MODEL_FILE).write_bytes(b"never loaded: a .pt2 unpickles")
        files = {f: {"sha256": hashlib.sha256((d / f).read_bytes()).hexdigest(), "size": (d / f).stat().st_size}
                 for f in (WEIGHTS_FILE, MODEL_FILE)}
        m = {"schema": SCHEMA, "steps": [{"kind": "weights4"}], "original": {"accuracy": 0.97},
             "compressed": {"accuracy": 0.96}, "recipe_digest": recipe_digest(cfg), "config_digest": cfg.digest,
             "files": files}
        if mutate is not None:
            mutate(m)
        (d / MANIFEST).write_text(raw if raw is not None else json.dumps(m))

    return run


def _pickled_object() -> bytes:
    import numpy as np

    return _npz({"w": np.array([{"a": 1}], dtype=object)})


def _state_with(key_fn: Callable[[dict[str, Any]], None]) -> Callable[[], bytes]:
    def make() -> bytes:
        state = _demo_state()
        key_fn(state)
        return _npz(state)

    return make


def _first(state: dict[str, Any], value: object) -> None:
    state[next(iter(state))] = value


def _npy() -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.zeros(3, np.float32))
    return buf.getvalue()


def _strings(state: dict[str, Any]) -> None:
    import numpy as np

    _first(state, np.array(["w"] * 4))


def _nan_weights(state: dict[str, Any]) -> None:
    import numpy as np

    _first(state, np.full(state[next(iter(state))].shape, np.nan, dtype=np.float32))


def _float64(state: dict[str, Any]) -> None:
    _first(state, state[next(iter(state))].astype("float64"))


def _huge_header() -> bytes:
    """A valid-looking .npy member that claims 10^12 floats (what a bomb would allocate)."""
    import io
    import zipfile

    import numpy as np

    state = _demo_state()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in state.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, v)  # type: ignore[arg-type]
            data = member.getvalue()
            if k == next(iter(state)):
                header = {"descr": "<f4", "fortran_order": False, "shape": (10**12,)}
                member = io.BytesIO()
                np.lib.format.write_array_header_1_0(member, header)
                data = member.getvalue() + b"\0" * 64
            z.writestr(f"{k}.npy", data)
    return buf.getvalue()


for name, weights in [
    ("not-a-zip", lambda: b"not an npz at all"),
    ("truncated", lambda: _npz(_demo_state())[:300]),
    ("pickled-object", _pickled_object),
    ("single-array", _npy),
    ("strings", _state_with(_strings)),
    ("nan-weights", _state_with(_nan_weights)),
    ("wrong-dtype", _state_with(_float64)),
    ("huge-shape", _huge_header),
]:
    case(f"compressed-weights-{name}", "artifacts", EXPORT, ("weights.npz",), compressed(weights))
case("compressed-manifest-deep-nesting", "artifacts", EXPORT, ("manifest.json",), compressed(lambda: b"x", raw=DEEP))
case("compressed-manifest-nan", "artifacts", EXPORT, ("manifest.json",),
     compressed(lambda: b"x", raw='{"schema": "edgeship.compressed/1", "files": NaN}'))
case("compressed-manifest-steps-string", "artifacts", EXPORT, ("manifest.json", "steps"),
     compressed(_state_with(lambda s: None), lambda m: m.update(steps="weights4")))
case("compressed-manifest-no-accuracy", "artifacts", EXPORT, ("manifest.json", "original"),
     compressed(_state_with(lambda s: None), lambda m: m.update(original={})))
case("compressed-manifest-other-steps", "artifacts", EXPORT, ("manifest.json", "steps"),
     compressed(_state_with(lambda s: None), lambda m: m.update(steps=[{"kind": "prune", "channels": {}}])))


# a full, or otherwise unusable, disk: the path and the reason, exit 2 (ENOSPC, ENAMETOOLONG)
def _small_tmpfs(*argv: str, size: str = "16k") -> Callable[[Project, list[str], dict[str, str]], tuple[int, str]]:
    """Run ``argv`` with ``-o full``, ``full`` a tmpfs of ``size`` mounted in a private mount namespace."""

    def run(p: Project, cmd: list[str], env: dict[str, str]) -> tuple[int, str]:
        unshare = shutil.which("unshare")
        if os.geteuid() != 0 or unshare is None:
            missing_component("the disk-full cases mount a tmpfs: run them as root with unshare (util-linux)")
        full = p.path("full")
        full.mkdir()
        script = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
        base = cmd[:cmd.index("--config") + 2]
        proc = subprocess.run([str(unshare), "-m", "sh", "-c", script, "sh", size, str(full), *base, "-o", str(full), *argv],
                              cwd=p.root, env=env, capture_output=True, text=True, timeout=300, check=False)
        if "unshare failed" in proc.stderr or "mount:" in proc.stderr:
            missing_component(f"cannot mount a tmpfs in a private mount namespace here: {proc.stderr.strip()[-300:]}")
        return proc.returncode, proc.stderr

    return run


case("export-disk-full", "disk", (), ("full/artifacts/digits_cnn/onnx-fp32", "No space left"), run=_small_tmpfs(*EXPORT),
     absent=("artifact(s) failed",))
case("report-out-disk-full", "disk", (), ("full", "No space left"),
     run=_small_tmpfs("report", "--from", f"{REPORTS}/report.json", "--out", "full"))
case("report-out-name-too-long", "disk", ("report", "--from", f"{REPORTS}/report.json", "--out", "x" * 300),
     ("x" * 40, "File name too long"))
case("export-name-too-long", "disk", ("-o", "y" * 300, *EXPORT), ("y" * 40, "File name too long"))

# messages that must not mislead
case("compress-step-kind-typo", "messages", EXPORT, ("prnue", "prune"), append('[compress]\n[[compress.steps]]\nkind = "prnue"'),
     absent=("ssh", "local"))
case("device-kind-typo-emulated", "messages", PROFILE, ("emulatd", "emulated"), append('[devices.pi]\nkind = "emulatd"'))
case("device-kind-missing-lists-emulated", "messages", PROFILE, ("devices.pi", "emulated"), append('[devices.pi]\nhost = "pi"'))
case("factory-ansi-colours", "messages", EXPORT, ("model.factory", "checkpoint is missing"), factory("corpus_data:model_ansi"))
case("init-over-directory", "messages", ("init", "--force"), ("edgeship.toml", "is a directory"),
     both(lambda p: p.toml.unlink(), lambda p: p.toml.mkdir()), absent=("it is a directory",))
case("cluster-address-from-config", "messages", PROFILE, ("[cluster] address", "127.0.0.1:notaport"),
     append('[cluster]\naddress = "127.0.0.1:notaport"'), absent=("--cluster",))
case("cluster-address-from-option", "messages", (*PROFILE, "--cluster", "127.0.0.1:notaport"), ("--cluster", "notaport"))


# --------------------------------------------------------------------------------------------
# the test


def _snapshot(build: Path) -> dict[str, str]:
    out = {}
    for p in sorted(build.rglob("*")):
        rel = str(p.relative_to(build.parent))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _progress(line: str) -> bool:
    # progress lines, and notes (INT8 that does not pay on this CPU), which go to stderr with warnings
    return line.endswith(" ...") or line.startswith(("  ", "note: "))


def _params() -> list[object]:
    out = []
    for c in C:
        marks = []
        if c.owner in PENDING_OWNERS:
            marks.append(pytest.mark.xfail(strict=False, reason=f"implemented on branch {c.owner}"))
        out.append(pytest.param(c, id=f"{c.category}-{c.id}", marks=marks))
    return out


def test_corpus_is_big_and_covers_every_category() -> None:
    cats = {c.category for c in C}
    assert len(C) >= 250, len(C)
    assert len({c.id for c in C}) == len(C), "duplicate case ids"
    assert {"config", "model", "data", "artifacts", "devices", "gate", "report", "signals", "concurrency", "history",
            "disk", "messages"} <= cats


@pytest.mark.parametrize("c", _params())
def test_bad_input(c: Case, base_project: Path, tmp_path: Path) -> None:
    if c.as_nobody and os.geteuid() == 0:
        # permissions do not bind root: run this case as 'nobody' in a world-readable copy
        work = Path(tempfile.mkdtemp(prefix="edgeship-bad-input-"))
        os.chmod(work, 0o755)
    else:
        work = tmp_path
    root = work / "proj"
    try:
        _run_case(c, base_project, root)
    finally:
        for d, _dirs, _files in os.walk(root):
            os.chmod(d, 0o755)
        if work is not tmp_path:
            shutil.rmtree(work, ignore_errors=True)


def _run_case(c: Case, base: Path, root: Path) -> None:
    shutil.copytree(base, root, symlinks=True)
    p = Project(root)
    env = _env(root, {k: v for k, v in c.env.items() if k != "PYTHONPATH"})
    if c.env.get("PYTHONPATH"):   # a directory of the project put first on the path
        env["PYTHONPATH"] = os.pathsep.join([str(root / c.env["PYTHONPATH"]), env["PYTHONPATH"]])
    drop: list[str] = []
    if c.as_nobody and os.geteuid() == 0:
        # nobody's own HOME: caches of matplotlib and onnxruntime start empty and writable
        shutil.rmtree(root / ".home")
        cache = root / ".home" / "cache"
        cache.mkdir(parents=True)
        (root / ".home" / "mpl").mkdir()
        for f in Path(env["EDGESHIP_CACHE_DIR"]).glob("*.pt"):   # the demo's trained weights
            shutil.copy(f, cache / f.name)
        env["EDGESHIP_CACHE_DIR"] = str(cache)
        for d, _dirs, files in os.walk(root):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        for d in (root / ".home", root / ".home" / "mpl"):
            os.chmod(d, 0o777)
        # setpriv (util-linux) rather than Popen(user=...): the interpreter may live under a
        # root-only path that exec after Popen's setreuid cannot reach
        setpriv = shutil.which("setpriv")
        assert setpriv, "running as root: the permission cases need setpriv (util-linux) to drop to nobody"
        drop = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if c.setup is not None:
        c.setup(p)
    before = _snapshot(p.build)
    argv = list(c.argv)
    config = [] if argv[:1] == ["--config"] else ["--config", str(p.toml)]
    cmd = [*drop, sys.executable, "-m", "edgeship", *config, *argv]
    out = ""
    if c.run is not None:
        code, err = c.run(p, cmd, env)
    else:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)
        code, err, out = proc.returncode, proc.stderr, proc.stdout
    lines = [ln for ln in err.splitlines() if ln.strip() and not _progress(ln)]
    assert code == c.code, f"exit {code}, expected {c.code}; stderr:\n{err[-3000:]}"
    for name in c.out_names:
        assert name in out, f"{name!r} not in stdout:\n{out[-3000:]}"
    if c.one_line:
        assert "Traceback" not in err, err[-3000:]
        # exit 1 is a verdict (FAIL rows on stdout), not an error: no error line on stderr
        want = 0 if c.code in (0, 1) else 1
        assert len(lines) == want, f"expected {want} error line(s), got:\n{err[-3000:]}"
        assert all(ln.startswith("edgeship") for ln in lines), lines
    else:
        assert "Traceback" in err, err[-3000:]
    for name in c.names:   # case-insensitive: 'stricthostkeychecking=false' may be echoed as written
        assert name.lower() in (lines[-1] if lines else "").lower(), f"{name!r} not named in: {lines}"
    for word in c.absent:
        assert word.lower() not in (lines[-1] if lines else "").lower(), f"{word!r} must not be in: {lines}"
    assert "\x1b" not in err, f"terminal escape codes on stderr: {err[-3000:]!r}"
    after = _snapshot(p.build)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    unexpected = [k for k in changed if not any(fnmatch.fnmatch(k, g) or fnmatch.fnmatch(k, g + "/*") for g in c.changes)]
    assert not unexpected, f"build/ changed where it must not: {unexpected}"
    if c.check is not None:
        c.check(p)
