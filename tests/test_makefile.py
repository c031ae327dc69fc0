"""`make demo` and `make test` pick a working Python >= 3.11 on any machine, or say why they cannot.

Each case runs the real Makefile with a PATH holding only stand-in interpreters: a working one is a
link to the interpreter running these tests, a broken one fails the way a pyenv shim without that
version does, an old one answers the version probe as Python 3.10 would. `-n` prints what make
would run without running it; the failing cases really run and stop at their first recipe line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")

pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def fake_bin(tmp_path: Path, working=(), broken=(), old=()) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in working:
        (bin_dir / name).symlink_to(sys.executable)
    for name in broken:
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\necho 'pyenv: {name}: command not found' >&2\nexit 127\n")
        script.chmod(0o755)
    for name in old:
        script = bin_dir / name
        script.write_text("#!/bin/sh\nexit 1\n")  # sys.exit(sys.version_info < (3, 11)) on 3.10
        script.chmod(0o755)
    return bin_dir


def make(bin_dir: Path, *args: str) -> subprocess.CompletedProcess:
    # A clean environment: no MAKEFLAGS from an outer `make test`, and only the stand-ins on PATH.
    env = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([MAKE, "-B", "-C", str(ROOT), *args, "venv"], env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_first_working_interpreter_is_used_and_named(tmp_path):
    bin_dir = fake_bin(tmp_path, working=["python3.12", "python3.13", "python3"], broken=["python3.11"])
    result = make(bin_dir, "-n")
    assert result.returncode == 0, result.stderr
    assert f"{bin_dir}/python3.12 -m venv .venv" in result.stdout
    assert f'echo "creating .venv with {bin_dir}/python3.12' in result.stdout


def test_python3_is_taken_when_it_is_new_enough(tmp_path):
    bin_dir = fake_bin(tmp_path, working=["python3"], broken=["python3.11", "python3.12"])
    result = make(bin_dir, "-n")
    assert result.returncode == 0, result.stderr
    assert f"{bin_dir}/python3 -m venv .venv" in result.stdout


def test_python3_11_comes_first_like_the_image(tmp_path):
    bin_dir = fake_bin(tmp_path, working=["python3.11", "python3.13"])
    assert f"{bin_dir}/python3.11 -m venv .venv" in make(bin_dir, "-n").stdout


def test_python_given_on_the_command_line_wins(tmp_path):
    bin_dir = fake_bin(tmp_path, working=["python3.11", "python3.13"])
    result = make(bin_dir, "-n", f"PYTHON={bin_dir}/python3.13")
    assert f"{bin_dir}/python3.13 -m venv .venv" in result.stdout
    assert f"{bin_dir}/python3.11 -m venv" not in result.stdout


def test_no_suitable_interpreter_stops_with_a_reason(tmp_path):
    bin_dir = fake_bin(tmp_path, broken=["python3.11", "python3.12"], old=["python3"])
    result = make(bin_dir)
    assert result.returncode != 0
    assert "error: no Python >= 3.11 found (tried python3.11 python3.12 python3.13 python3)" in result.stderr
    assert "make PYTHON=" in result.stderr


def test_a_broken_python_given_by_name_is_refused(tmp_path):
    bin_dir = fake_bin(tmp_path, broken=["python3.11"], working=["python3.12"])
    result = make(bin_dir, f"PYTHON={bin_dir}/python3.11")
    assert result.returncode != 0
    assert f"error: PYTHON={bin_dir}/python3.11 is not a Python >= 3.11 that starts" in result.stderr


def test_the_venv_gets_the_development_extras_within_the_lock(tmp_path):
    bin_dir = fake_bin(tmp_path, working=["python3.11"])
    out = make(bin_dir, "-n").stdout
    assert "pip install --quiet -c .venv/constraints.txt -e '.[test,embedded]'" in out
    assert "requirements.lock > .venv/constraints.txt" in out
