"""stmt.engine.host_memory: freed host memory stays with the process for reuse."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

# In a fresh process: how much of a freed 64 MB tensor leaves the resident set.
CHILD = """
import json, os, torch
from stmt.engine.host_memory import keep_freed_memory
kept = keep_freed_memory()
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
x = torch.ones(16 << 20)
before = resident()
del x
print(json.dumps({"kept": kept, "returned": before - resident()}))
"""


def _child(setting: str) -> dict:
    env = dict(os.environ, STMT_KEEP_FREED_MEMORY=setting)
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_freed_memory_stays_resident_only_when_kept():
    kept, off = _child("1"), _child("0")
    assert kept["kept"] >= 64 << 20 and off["kept"] == 0
    assert off["returned"] > 60 << 20  # the C library's default: handed back at once
    assert kept["returned"] < 4 << 20  # kept for the next allocation
