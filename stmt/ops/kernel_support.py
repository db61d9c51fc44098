"""What the Triton kernel modules (offset attention, neighbour search) share:
the off switch, whether Triton is there, a marker for checks ``torch.compile``
should not trace into, and block sizes. Triton itself is not imported here."""

from __future__ import annotations

import functools

from stmt.env import env_flag


def kernels_disabled() -> bool:
    """True when ``STMT_DISABLE_KERNELS`` asks for the plain PyTorch path."""
    return env_flag("STMT_DISABLE_KERNELS")


def constant_when_traced(fn):
    """``torch.compiler.assume_constant_result(fn)``, without its import of
    ``torch._dynamo`` (which imports Triton): ``torch.compile`` calls ``fn``
    once when tracing and keeps the result, instead of tracing into it. For
    checks that are constant for a process (the ``test_triton_compiled_*``
    tests trace through them with ``fullgraph=True``)."""
    fn._dynamo_marked_constant = True  # what assume_constant_result sets
    return fn


@constant_when_traced
def triton_importable() -> bool:
    return _find_triton()


@functools.cache
def _find_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << max(n - 1, 0).bit_length()
