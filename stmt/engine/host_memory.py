"""Keep freed host memory in the process, so a CPU training step reuses it.

A training step on the CPU allocates and frees tensors of tens of MB (the
neighbour features of a batch). glibc's malloc hands a block above its mmap
threshold back to the kernel when it is freed; the threshold rises on the fly
to the largest block freed, but never above 32 MB, and the heap's top is
trimmed too. So the next step gets fresh pages and faults every one of them
in, zeroed. ``stmt_tiny`` at batch 32 (neighbour tensors of 50 MB) faults
64,000-139,000 pages a step (21 % of its one-thread step time), and 2b99dcd's model
328,000 (1.3 GB, 40 %); at batch 16 (25 MB, under the ceiling) it matters
little (measured with ``benchmarks/bm_cpu_train_step.py --processes``).
Raising both thresholds keeps those pages in the heap for the next
allocation, which is what PyTorch's CPU performance guide gets from jemalloc
or tcmalloc.

The cost: memory the process frees is kept (up to the trim threshold at the
top of the heap) instead of returned to the system; peak use is unchanged.
``STMT_KEEP_FREED_MEMORY=0`` turns it off. Only glibc on Linux is touched;
elsewhere (macOS, musl) nothing is done.
"""

from __future__ import annotations

import ctypes
import platform

from stmt.env import env_flag

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
#: Blocks below this come from the heap and are reused; glibc before 2.35 caps it at 32 MB.
THRESHOLDS = (1 << 30, 32 << 20)


def keep_freed_memory() -> int:
    """Raise glibc's mmap and trim thresholds for this process (and the data loader
    workers it forks). Returns the threshold set in bytes, 0 where nothing was done."""
    if not env_flag("STMT_KEEP_FREED_MEMORY", default=True):
        return 0
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return 0
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return 0
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    for size in THRESHOLDS:
        if mallopt(M_MMAP_THRESHOLD, size) == 1:  # 1 = accepted
            mallopt(M_TRIM_THRESHOLD, size)
            return size
    return 0
