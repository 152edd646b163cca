"""The suite's own rules: a missing real component skips with the install command, fails under CI."""

from __future__ import annotations

import pytest

from tests.conftest import host_cpu_class, require_tool

CLASSES = ("x86-avx2", "x86-vnni", "x86-amx", "arm64", "arm64-dotprod", "arm64-i8mm", "unknown")


def test_missing_tool_skips_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"'no-such-tool-x' not found; install it: apt-get install x-pkg"):
        require_tool("no-such-tool-x", "apt-get install x-pkg")


def test_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true: 'no-such-tool-x' not found; install it: apt-get install x-pkg"):
        require_tool("no-such-tool-x", "apt-get install x-pkg")


def test_present_tool_returns_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require_tool("sh", "apt-get install dash").endswith("/sh")


def test_host_cpu_class_is_one_of_the_contract_classes() -> None:
    assert host_cpu_class().split(" ")[0] in CLASSES
