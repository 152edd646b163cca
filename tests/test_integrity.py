"""The manifest is an integrity boundary: edgeship's read_manifest and the standalone runner
refuse a manifest whose files leave the artifact, whose model_file is not covered, whose
runtime is unknown, or (edgeship) whose model is not the configured one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeship.artifact.atomic import sha256_file
from edgeship.artifact.manifest import read_manifest
from edgeship.artifact.runner_files import RUNNER_PACKAGE, write_runner_package
from edgeship.cli import main
from edgeship.errors import ArtifactError
from tests.conftest import cli_project
from tests.test_runner import make_onnx_artifact


def _edit(artifact: Path, **changes: object) -> None:
    path = artifact / "manifest.json"
    m = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "add_file":
            rel, target = value  # type: ignore[misc]
            m["files"][rel] = {"sha256": sha256_file(target), "size": Path(target).stat().st_size}
        else:
            m[key] = value
    path.write_text(json.dumps(m))


def _outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside.txt"
    secret.write_text("not part of any artifact")
    return secret


# each case: (edit of the manifest, the message read_manifest and the runner must give)
CASES = {
    "model_file_not_in_files": (lambda a, o: _edit(a, model_file="other.onnx"),
                                "field 'model_file' 'other.onnx' is not one of the files"),
    "dotdot_entry": (lambda a, o: _edit(a, add_file=("../outside.txt", o)),
                     "files entry '../outside.txt' leaves the artifact directory"),
    "absolute_entry": (lambda a, o: _edit(a, add_file=(str(o), o)),
                       "is an absolute path"),
    "unnormalised_entry": (lambda a, o: _edit(a, add_file=("./model.onnx", a / "model.onnx")),
                           "files entry './model.onnx' is not a normalised path"),
    "symlink_out": (lambda a, o: (os.symlink(o, a / "link.txt"), _edit(a, add_file=("link.txt", o))),
                    "files entry 'link.txt' leaves the artifact directory (through a symlink)"),
    "model_file_dotdot": (lambda a, o: _edit(a, model_file="../outside.txt"),
                          "field 'model_file' '../outside.txt' leaves the artifact directory"),
    "unknown_runtime": (lambda a, o: _edit(a, runtime="onnxrutime"), "field 'runtime' 'onnxrutime'"),
    "runtime_path": (lambda a, o: _edit(a, runtime="../../x"), "field 'runtime' '../../x'"),
    "runtime_not_a_runtime": (lambda a, o: _edit(a, runtime="runner"), "field 'runtime' 'runner'"),
    "files_not_a_table": (lambda a, o: _edit(a, files=[]), "field 'files'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_read_manifest_refuses(case: str, tmp_path: Path) -> None:
    art = make_onnx_artifact(tmp_path / "artifact")
    read_manifest(art)   # valid before the edit
    edit, message = CASES[case]
    edit(art, _outside(tmp_path))
    for verify in (True, False):   # the integrity rules hold even without hashing the files
        with pytest.raises(ArtifactError) as exc:
            read_manifest(art, verify=verify)
        text = str(exc.value)
        assert text.startswith(f"{art / 'manifest.json'}: ") and message in text, text
        assert "re-run 'edgeship export'" in text and "\n" not in text


@pytest.mark.parametrize("case", sorted(CASES))
def test_runner_refuses_with_exit_3(case: str, tmp_path: Path) -> None:
    art = make_onnx_artifact(tmp_path / "artifact")
    write_runner_package(tmp_path, "onnxruntime")
    np.savez(tmp_path / "inputs.npz", x=np.zeros((1, 64), np.float32))
    edit, message = CASES[case]
    edit(art, _outside(tmp_path))
    run = subprocess.run([sys.executable, "-m", f"{RUNNER_PACKAGE}.runner", "--artifact", "artifact",
                          "--inputs", "inputs.npz", "--out", "result.json", "--min-runs", "1",
                          "--min-seconds", "0", "--warmup-runs", "1", "--warmup-seconds", "0"],
                         cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 3, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr
    if case != "runtime_not_a_runtime" and case != "unknown_runtime" and case != "runtime_path":
        assert message in lines[0], lines[0]
    else:
        assert "is not a runtime this runner knows" in lines[0]
    assert not (tmp_path / "result.json").exists()


def test_foreign_model_is_refused_by_expect_model(tmp_path: Path) -> None:
    art = make_onnx_artifact(tmp_path / "artifact")
    assert read_manifest(art, expect_model="tiny").model == "tiny"
    with pytest.raises(ArtifactError, match=r"field 'model' is 'tiny', but the configured model is 'digits_cnn'"):
        read_manifest(art, expect_model="digits_cnn")


def test_unlisted_file_inside_a_directory_model_is_refused(tmp_path: Path) -> None:
    art = make_onnx_artifact(tmp_path / "artifact")
    pkg = art / "model.mlpackage"
    pkg.mkdir()
    (pkg / "weights.bin").write_bytes(b"w")
    _edit(art, model_file="model.mlpackage", add_file=("model.mlpackage/weights.bin", pkg / "weights.bin"))
    read_manifest(art)
    (pkg / "extra.bin").write_bytes(b"planted")
    with pytest.raises(ArtifactError, match="'model.mlpackage/extra.bin' is not listed in files"):
        read_manifest(art)


@pytest.mark.parametrize("command", ["gate", "profile", "eval"])
@pytest.mark.parametrize("case", ["dotdot_entry", "unknown_runtime", "foreign_model"])
def test_cli_gives_one_line_and_exit_2(profiled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       command: str, case: str) -> None:
    shutil.copytree(profiled / "build", tmp_path / "build")
    art = tmp_path / "build" / "artifacts" / "digits_cnn" / "onnx-fp32"
    assert art.is_dir()
    if case == "foreign_model":
        _edit(art, model="someone_else")
        message = "field 'model' is 'someone_else', but the configured model is 'digits_cnn'"
    else:
        CASES[case][0](art, _outside(tmp_path))
        message = CASES[case][1]
    before = (art / "manifest.json").read_bytes()
    extra = ["--device", "local"] if command == "profile" else []
    code = main(["--config", str(cli_project(tmp_path)), command, *extra])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "onnx-fp32/manifest.json: " in lines[0] and message in lines[0], lines[0]
    assert (art / "manifest.json").read_bytes() == before   # nothing rewritten


def test_manifest_with_built_for_is_read(tmp_path: Path) -> None:
    """A manifest from an edgeship that records built_for (an optional field) stays readable."""
    art = make_onnx_artifact(tmp_path / "artifact")
    m = json.loads((art / "manifest.json").read_text())
    m["built_for"] = {"cpu_class": "x86-avx2", "features": [], "recipe": {}, "why": "test", "candidates": []}
    (art / "manifest.json").write_text(json.dumps(m))
    assert read_manifest(art).model == "tiny"
    m["no_such_field"] = 1
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="corrupt manifest"):
        read_manifest(art)
