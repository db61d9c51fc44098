"""Run a test module's ``test_triton_*`` tests under Triton's CPU interpreter.

Where no GPU is present the kernel tests are skipped in the test process and
run again in a subprocess with ``TRITON_INTERPRET=1`` set before anything
imports Triton (the interpreter is chosen when a kernel is wrapped).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def run_kernel_tests_interpreted(test_file: str) -> None:
    """Run ``test_file``'s ``test_triton_*`` tests interpreted; assert they all passed."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    env.pop("STMT_DISABLE_KERNELS", None)
    path = Path(test_file).resolve()
    root = path.parents[1]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "test_triton_"]
    proc = subprocess.run(
        [*cmd, str(path)],
        check=False,
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    summary = proc.stdout.strip().splitlines()[-1]  # e.g. "15 passed, 2 xfailed in 19.04s"
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (\w+)", summary)}
    assert counts.get("passed", 0) > 0, report
    allowed = {"passed", "deselected", "xfailed", "warning", "warnings"}
    assert set(counts) <= allowed, report  # none skipped, failed or in error


def kernel_device() -> str | None:
    """Where this process runs Triton kernels: "cuda" on a GPU, "cpu" under
    ``TRITON_INTERPRET=1``, None where the kernel tests are left to the
    interpreter's subprocess (or Triton is missing)."""
    import importlib.util

    import torch

    if importlib.util.find_spec("triton") is None:
        return None
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return "cpu"
    return "cuda" if torch.cuda.is_available() else None


HAS_TRITON = importlib.util.find_spec("triton") is not None

#: Marks a ``test_triton_*`` test: run where :func:`kernel_device` says kernels run.
needs_kernel = pytest.mark.skipif(
    kernel_device() is None,
    reason="no CUDA: the kernel tests run under TRITON_INTERPRET=1 in "
    "test_kernel_tests_under_interpreter's subprocess",
)

#: Marks a module's ``test_kernel_tests_under_interpreter``: run where the kernel
#: tests did not run in this process and Triton is installed.
runs_interpreter = pytest.mark.skipif(
    kernel_device() is not None or not HAS_TRITON,
    reason="kernel tests already run in this process"
    if HAS_TRITON
    else "triton is not installed (pip install 'stmt[gpu]')",
)
