"""``make lab``: the demo through hosts that are really somewhere else, on network namespaces.

Brings up five hosts on a private bridge (tests/netns.py; root only): ``board`` (sshd, python3
= arm64 python under qemu as a Cortex-A76), ``head`` (``ray start --head``), ``w1`` (``edgeship
worker`` advertising the board, reached over ssh from w1, and its own CPU as ``boxa``), ``w2``
(its own CPU as ``boxb``), ``ci`` (joined with ``ray start --num-cpus 0``: the submitter). From
ci it runs the commands docs/devices.md and docs/cluster.md give for real hardware, prints each
with its output, and tears everything down, also on Ctrl-C or a failure.

    sudo make lab            # or: .venv/bin/python -m tests.lab [--keep-going]

Exit 0 when every step did what the docs say; the project lives in build/lab/.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EDGESHIP_CACHE_DIR", str(ROOT / "build" / "cache"))

from tests import netns  # after sys.path: it runs as a script too

PY = sys.executable
BUDGETS = """[[budgets]]
device = "board"
target = "onnx"
precision = "int8"
latency_ms = { p90 = 50.0 }        # the board is emulated: SKIPPED, never PASS
max_accuracy_drop = 0.005
min_cosine = 0.999

[[budgets]]
device = "box[ab]"
target = "onnx"
precision = "fp32"
latency_ms = { p90 = 1000.0 }
"""


def say(msg: str) -> None:
    print(f"lab: {msg}", flush=True)


def project(root: Path, board_table: dict[str, object]) -> tuple[Path, Path]:
    """(the submitter's edgeship.toml, w1's): the demo's, with the lab's budgets and devices."""
    text = (ROOT / "edgeship.toml").read_text()
    text = text[:text.index("# Example budgets")] + BUDGETS
    board = "\n[devices.board]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in board_table.items())
    boxes = '\n[devices.boxa]\nkind = "local"\n\n[devices.boxb]\nkind = "local"\n'
    setup = '\n[devices.pi5emu]   # only for "devices setup": builds the userland the board runs\nkind = "emulated"\n' \
            'arch = "arm64"\ncpu = "cortex-a76"\n'
    sub = root / "edgeship.toml"
    sub.write_text(text + board + boxes + setup)     # build/ next to it: build/lab/build
    for host in ("w1", "w2"):
        (root / host).mkdir(exist_ok=True)
        (root / host / "edgeship.toml").write_text(sub.read_text())
    return sub, root / "w1" / "edgeship.toml"


def step(host: netns.Host | None, argv: list[str], want: int = 0, timeout: float = 900) -> str:
    where = f"[{host.name}]" if host else "[here]"
    print(f"\n{where} $ {shlex.join(argv)}", flush=True)
    full = host.argv(argv) if host else argv
    t0 = time.monotonic()
    r = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=netns.ray_env(), check=False)
    out = (r.stdout + r.stderr).rstrip()
    print("\n".join("    " + ln for ln in out.splitlines()[-40:]), flush=True)
    print(f"    -> exit {r.returncode} ({time.monotonic() - t0:.0f} s)", flush=True)
    if r.returncode != want:
        raise SystemExit(f"lab: step failed (exit {r.returncode}, expected {want}): {shlex.join(argv)}")
    return r.stdout + r.stderr


def main() -> int:
    why = netns.skip_reason()
    if why:
        print(f"lab: cannot build namespace hosts here: {why}", file=sys.stderr)
        return 2
    for tool, pkg in (("sshd", "openssh-server"), ("qemu-aarch64-static", "qemu-user-static")):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"lab: '{tool}' not found; install it: apt-get install -y {pkg}", file=sys.stderr)
            return 2
    # SIGTERM (a CI runner cancelling the job) tears down like Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    base = ROOT / "build" / "lab"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    ray_tmp = Path(tempfile.mkdtemp(prefix="esl"))       # short: Ray's socket paths live under it
    es = [PY, "-m", "edgeship"]
    t0 = time.monotonic()
    try:
        with netns.Lab(["board", "head", "w1", "w2", "ci"], say=say) as lab:
            server, python = netns.start_board(lab["board"], base / "board")
            table = server.device_config(str(python), timing="not representative")
            say(f"board: sshd on {lab['board'].addr}:22, python3 = {python}")
            sub, w1_toml = project(base, table)
            cfg = ["-c", str(sub)]
            step(None, [*es, *cfg, "devices", "setup", "pi5emu"])        # once; cached after
            address = netns.start_head(lab["head"], ray_tmp / "head")
            say(f"head: ray start --head on {address}")
            netns.start_worker(lab["w1"], address, w1_toml, ["board", "boxa"], base / "w1.log")
            netns.start_worker(lab["w2"], address, base / "w2" / "edgeship.toml", ["boxb"], base / "w2.log")
            netns.join_client(lab["ci"], address, ray_tmp / "ci")
            say("workers: w1 advertises board (over ssh) and boxa, w2 advertises boxb; ci joined")
            ci = lab["ci"]
            out = step(ci, [*es, *cfg, "devices", "check", "board"])
            assert "cpu class: arm64-dotprod" in out, "the board must report class arm64-dotprod"
            step(ci, [*es, *cfg, "export", "--for", "board", "--target", "onnx", "--precision", "fp32,int8"])
            step(ci, [*es, *cfg, "eval", "--device", "board", "--cluster", address, "--target", "onnx",
                      "--precision", "int8", "--chunk", "10000"])
            out = step(ci, [*es, *cfg, "gate", "--cluster", address, "--no-remeasure"])
            report = json.loads((base / "build" / "reports" / "report.json").read_text())
            rows = [(c["device"], c["metric"], c["verdict"]) for c in report["checks"]]
            want = {("board", "cosine_mean", "PASS"), ("board", "accuracy_drop", "PASS"),
                    ("board", "latency_p90_ms", "SKIPPED"), ("boxa", "latency_p90_ms", "PASS"),
                    ("boxb", "latency_p90_ms", "PASS")}
            missing = want - set(rows)
            if missing:
                raise SystemExit(f"lab: the gate's rows differ from what the lab promises: missing {sorted(missing)}")
            nodes = {d: json.loads((base / "build" / "results" / d / name).read_text())["device"]["node"]["host"]
                     for d, name in (("board", "onnx-int8.json"), ("boxa", "onnx-fp32.json"),
                                     ("boxb", "onnx-fp32.json"))}
            say(f"measured on: {nodes} (board's latency SKIPPED: timing not representative)")
            if nodes != {"board": "w1", "boxa": "w1", "boxb": "w2"}:
                raise SystemExit(f"lab: devices measured on the wrong hosts: {nodes}")
    except KeyboardInterrupt:
        say("interrupted: torn down")
        return 130
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    say(f"done in {time.monotonic() - t0:.0f} s: the demo's INT8 judged on an arm64 board over ssh, a cluster gate "
        f"over a head and 2 workers; every host torn down (project: {base})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
