"""`stmt --help` answers at once: no heavy imports at start-up."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

import pytest

from stmt.cli import COMMANDS

HEAVY = ("torch", "smplx", "anny", "open3d", "trimesh", "pytorch_lightning", "lightning", "triton")


def _seconds(args: list[str]) -> float:
    """Best of two wall-clock runs of ``python -m stmt ARGS`` (the machine is shared)."""
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "stmt", *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        best = min(best, time.perf_counter() - start)
        assert proc.returncode == 0, proc.stderr
        assert "usage: stmt" in proc.stdout
    return best


@pytest.mark.parametrize("args", [["--help"], ["inspect", "--help"]], ids=["stmt", "inspect"])
def test_help_is_fast(args):
    assert _seconds(args) < 2.0


def _imported_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    return proc.stdout.split()


@pytest.mark.parametrize("module", ["stmt", "stmt.cli", "stmt.io", "stmt.body.smpl"])
def test_light_modules_import_nothing_heavy(module):
    assert _imported_after(f"import {module}") == []


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_modules_import_nothing_heavy(name):
    module = COMMANDS[name][0]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not written yet")
    assert _imported_after(f"import {module}") == []
