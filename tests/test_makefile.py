"""The Makefile's choice of interpreter, against fake interpreters on PATH:
``make -n`` prints the command that would build the virtual environment
(a fresh VENV in a temporary folder, so nothing is up to date) and runs
nothing but the version probes."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANDIDATES = ["python3", "python3.11", "python3.10", "python3.9", "python3.8"]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def fake_pythons(bindir, versions, log):
    """A stub for every candidate name: one that prints its version (as the
    Makefile's probe does), or, without a version, a missing one (as a pyenv
    shim of a version that is not installed)."""
    bindir.mkdir(exist_ok=True)
    for name in CANDIDATES:
        version = versions.get(name)
        body = (f"echo {version}" if version else
                f"echo 'pyenv: {name}: command not found' >&2; exit 127")
        path = bindir / name
        path.write_text(f"#!/bin/sh\necho {name} >> {log}\n{body}\n")
        path.chmod(0o755)


def make_n(tmp_path, versions, *args, target="test"):
    bindir, log = tmp_path / "bin", tmp_path / "calls.log"
    fake_pythons(bindir, versions, log)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    for name in ("PYTHON", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):   # as when run by `make test`
        env.pop(name, None)
    result = subprocess.run([shutil.which("make"), "-n", "--no-print-directory",
                             f"VENV={tmp_path / 'venv'}", *args, target], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    calls = log.read_text().split() if log.exists() else []
    return result, calls


def venv_command(result):
    lines = [line for line in result.stdout.splitlines() if " -m venv " in line]
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0].split()[0]


@pytest.mark.parametrize("versions, chosen", [
    ({"python3": "3.11"}, "python3"),
    ({"python3": "3.8", "python3.11": "3.11"}, "python3"),
    ({"python3": "3.12", "python3.11": "3.11"}, "python3.11"),
    ({"python3": "3.13", "python3.10": "3.10", "python3.9": "3.9"}, "python3.10"),
    ({"python3": "3.7", "python3.9": "3.9"}, "python3.9"),
    ({"python3.8": "3.8"}, "python3.8"),
])
def test_make_finds_a_supported_interpreter(tmp_path, versions, chosen):
    result, _ = make_n(tmp_path, versions)
    assert result.returncode == 0, result.stderr
    assert venv_command(result) == chosen


@pytest.mark.parametrize("versions", [{"python3": "3.12", "python3.11": "3.13"},
                                      {"python3": "3.7"}, {}])
def test_make_without_a_supported_interpreter_says_how_to_get_one(tmp_path, versions):
    result, _ = make_n(tmp_path, versions)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    for words in ("3.8 to 3.11", "uv python install 3.11", "pyenv", "deadsnakes",
                  "make PYTHON="):
        assert words in result.stderr
    assert f"python3 is {versions.get('python3', 'missing')}" in result.stderr


def test_python_given_by_the_user_wins(tmp_path):
    result, calls = make_n(tmp_path, {"python3": "3.11"}, "PYTHON=/opt/mine/python")
    assert result.returncode == 0, result.stderr
    assert venv_command(result) == "/opt/mine/python" and calls == []


def test_targets_without_a_new_environment_need_no_interpreter(tmp_path):
    result, calls = make_n(tmp_path, {}, target="clean")
    assert result.returncode == 0, result.stderr
    assert calls == []
