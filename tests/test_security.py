"""Security: a .pt2 source never runs pickled code without trust_source; SSH host-key checking
cannot be weakened through ssh_options, and a changed host key fails the run."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import pytest

from edgeship.cli import main
from edgeship.model.pt2_safety import pickled_members
from tests.conftest import cli_project


def _real_pt2(path: Path) -> Path:
    import torch

    from edgeship.demo import build_model

    prog = torch.export.export(build_model(), (torch.zeros(1, 1, 8, 8),))
    torch.export.save(prog, str(path))
    return path


class _Payload:
    """Pickles to a call of exec: what an attacker's .pt2 would carry."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (exec, (self.code,))


def _rewrite(src: Path, dest: Path, replace: dict[str, bytes]) -> Path:
    """Copy a zip, replacing members whose name ends with a key of ``replace``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            zout.writestr(info, data)
    return dest


def _evil_sample_inputs(marker: Path) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(_Payload(f"open({str(marker)!r}, 'w').write('pwned')"), buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def real_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _real_pt2(tmp_path_factory.mktemp("pt2") / "model.pt2")


def test_a_torch_export_save_archive_has_no_unchecked_pickles(real_pt2: Path) -> None:
    refused, samples = pickled_members(real_pt2)
    assert refused == []
    assert [s.split("/", 1)[1] for s in samples] == ["data/sample_inputs/model.pt"]


def test_pickled_weights_and_stray_pickles_are_refused(real_pt2: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(real_pt2) as z:
        cfg_name = next(n for n in z.namelist() if n.endswith("_weights_config.json"))
        table = json.loads(z.read(cfg_name))
    first = next(iter(table["config"]))
    table["config"][first]["use_pickle"] = True
    pickled = _rewrite(real_pt2, tmp_path / "a.pt2", {"_weights_config.json": json.dumps(table).encode()})
    refused, _ = pickled_members(pickled)
    assert any("pickled tensor" in r for r in refused), refused

    stray = tmp_path / "b.pt2"
    _rewrite(real_pt2, stray, {})
    with zipfile.ZipFile(stray, "a") as z:
        root = z.namelist()[0].split("/", 1)[0]
        z.writestr(f"{root}/extra/data.pkl", b"\x80\x04N.")
        z.writestr(f"{root}/data/blob", b"\x80\x04N.")
    refused, _ = pickled_members(stray)
    assert "extra/data.pkl (pickle)" in refused and "data/blob (pickle)" in refused


def _pt2_project(tmp_path: Path, pt2: Path, trust: bool) -> Path:
    extra = "\ntrust_source = true" if trust else ""
    return cli_project(tmp_path, {'factory = "edgeship.demo:build_model"': f'source = "{pt2.name}"{extra}'})


def test_crafted_pt2_is_refused_and_runs_nothing(real_pt2: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned.txt"
    evil = _rewrite(real_pt2, tmp_path / "model.pt2", {"data/sample_inputs/model.pt": _evil_sample_inputs(marker)})
    assert pickled_members(evil)[0] == []   # looks like a normal archive: the sample inputs are the payload
    cfg = _pt2_project(tmp_path, evil, trust=False)
    code = main(["--config", str(cfg), "export", "--target", "onnx", "--precision", "fp32"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(evil) in lines[0] and "trust_source = true" in lines[0] and "sample_inputs/model.pt" in lines[0]
    assert not marker.exists()                      # nothing was executed
    assert not (tmp_path / "build" / "artifacts").exists()


def test_the_crafted_pt2_is_a_real_attack_when_trusted(real_pt2: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Control for the test above: with trust_source = true torch.export.load runs the payload."""
    marker = tmp_path / "pwned.txt"
    evil = _rewrite(real_pt2, tmp_path / "model.pt2", {"data/sample_inputs/model.pt": _evil_sample_inputs(marker)})
    cfg = _pt2_project(tmp_path, evil, trust=True)
    main(["--config", str(cfg), "export", "--target", "onnx", "--precision", "fp32"])
    capsys.readouterr()
    assert marker.read_text() == "pwned"


def test_trust_source_must_be_a_boolean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(tmp_path, {'factory = "edgeship.demo:build_model"':
                                 'factory = "edgeship.demo:build_model"\ntrust_source = "yes please"'})
    code = main(["--config", str(cfg), "export", "--target", "onnx", "--precision", "fp32"])
    err = capsys.readouterr().err
    assert code == 2 and "model.trust_source" in err and len(err.strip().splitlines()) == 1


if sys.platform != "linux":   # pragma: no cover
    pytest.skip("loopback sshd tests need Linux", allow_module_level=True)


# -- SSH ---------------------------------------------------------------------------------------

WEAKENING = [
    "StrictHostKeyChecking=no", "StrictHostKeyChecking no", "StrictHostKeyChecking\tno",
    "stricthostkeychecking=NO", "  StrictHostKeyChecking = off  ", "StrictHostKeyChecking=false",
    "StrictHostKeyChecking=accept-new", "StrictHostKeyChecking=\"no\"", "-oStrictHostKeyChecking=no",
    "-o StrictHostKeyChecking no", "StrictHostKeyChecking= no", "STRICTHOSTKEYCHECKING\t=\tOff",
    "UserKnownHostsFile=/dev/null", "UserKnownHostsFile /dev/null", "userknownhostsfile=none",
    "UserKnownHostsFile=", "UserKnownHostsFile ~/.ssh/known_hosts /dev/null",
    "GlobalKnownHostsFile=/dev/null", "globalknownhostsfile\t/dev/null",
    "KnownHostsCommand=/bin/echo 127.0.0.1 ssh-ed25519 AAAA", "VerifyHostKeyDNS=yes",
    "Include /tmp/evil_config", "Match all", "StrictHostKeyChecking=yes\nStrictHostKeyChecking=no",
]
ALLOWED = [
    "StrictHostKeyChecking=yes", "StrictHostKeyChecking ask", "UserKnownHostsFile=/home/me/.ssh/boards",
    "CheckHostIP=no", "CheckHostIP yes", "KnownHostsCommand=none", "LogLevel=ERROR", "ServerAliveInterval 10",
    "HostKeyAlgorithms=ssh-ed25519",
]


@pytest.mark.parametrize("option", WEAKENING)
def test_weakening_ssh_option_is_refused_at_config_time(option: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    toml = cli_project(tmp_path, append=(
        '\n[devices.pi5]\nkind = "ssh"\nhost = "pi@127.0.0.1"\n'
        f"ssh_options = [{json.dumps(option)}]\n"
    ))
    code = main(["--config", str(toml), "devices", "list"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "devices.pi5.ssh_options" in lines[0] and "is refused" in lines[0], lines[0]
    assert repr(option.strip()) in lines[0]


@pytest.mark.parametrize("option", ALLOWED)
def test_options_that_keep_host_key_checking_are_accepted(option: str) -> None:
    from edgeship.config import SSHDeviceConfig
    from edgeship.devices.ssh_policy import weakens

    assert weakens(option) is None
    assert SSHDeviceConfig(kind="ssh", host="pi", ssh_options=(option,)).ssh_options == (option,)


def test_parse_splits_like_ssh() -> None:
    from edgeship.devices.ssh_policy import parse

    assert parse("StrictHostKeyChecking=no") == ("stricthostkeychecking", "no")
    assert parse(" StrictHostKeyChecking \t no ") == ("stricthostkeychecking", "no")
    assert parse("UserKnownHostsFile=/a=b") == ("userknownhostsfile", "/a=b")   # first '=' only
    assert parse("-oLogLevel=ERROR") == ("loglevel", "ERROR")


@pytest.fixture
def sshd(tmp_path: Path):
    from tests.sshd import start_sshd

    server = start_sshd(tmp_path / "sshd")
    yield server
    if server.proc.poll() is None:
        server.kill()


def _change_known_host_key(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """known_hosts now holds another key for the server: what a man in the middle looks like."""
    import subprocess

    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = Path(f"{other}.pub").read_text().split()[:2]
    server.known_hosts.write_text(f"[127.0.0.1]:{server.port} {kind} {key}\n")


def _board_toml(server, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    return cli_project(tmp_path, append=(
        f'\n[devices.board]\nkind = "ssh"\nhost = "{server.user}@127.0.0.1"\nport = {server.port}\n'
        f'python = "{sys.executable}"\nidentity_file = "{server.client_key}"\nconnect_timeout_s = 5\n'
        f'ssh_options = ["UserKnownHostsFile={server.known_hosts}", "StrictHostKeyChecking=yes", "LogLevel=ERROR"]\n'
    ))


def test_changed_host_key_fails_profile(sshd, profiled: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    shutil.copytree(profiled / "build", tmp_path / "build")
    toml = _board_toml(sshd, tmp_path)
    _change_known_host_key(sshd, tmp_path)
    code = main(["--config", str(toml), "profile", "--device", "board", "-t", "onnx", "-p", "fp32"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "device 'board'" in lines[0] and "REMOTE HOST IDENTIFICATION HAS CHANGED" in lines[0], lines[0]
    assert not (tmp_path / "build" / "results" / "board").exists()


def test_changed_host_key_fails_even_when_ssh_config_lets_it_through(sshd, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's ~/.ssh/config with StrictHostKeyChecking no: ssh connects (exit 0) and only warns.

    The user's ssh config is simulated by appending the option behind edgeship's validation.
    """
    import subprocess

    from edgeship.config import SSHDeviceConfig
    from edgeship.devices.ssh import SSHDevice
    from edgeship.errors import DeviceError

    _change_known_host_key(sshd, tmp_path)
    dev = SSHDevice("board", SSHDeviceConfig(**sshd.device_config(sys.executable)))
    real = SSHDevice._options
    monkeypatch.setattr(SSHDevice, "_options", lambda self: ["-o", "StrictHostKeyChecking=no", *real(self)])
    # the control: plain ssh with these options does connect and exits 0 despite the changed key
    argv = ["ssh", *dev._options(), "-p", str(sshd.port), sshd.config_host if hasattr(sshd, "config_host")
            else f"{sshd.user}@127.0.0.1", "--", "true"]
    plain = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert plain.returncode == 0 and "REMOTE HOST IDENTIFICATION HAS CHANGED" in plain.stderr, plain.stderr
    with pytest.raises(DeviceError, match=r"^device 'board': connect refused: ssh says 'WARNING: REMOTE HOST "
                                          r"IDENTIFICATION HAS CHANGED!'"), dev:
        pass
