"""What the Triton kernel modules (offset attention, neighbour search, neighbour
statistics) share: the off switch, whether Triton is there, a marker for checks
``torch.compile`` should not trace into, wrapping the kernels on first use, and
block sizes. Triton itself is imported only by :func:`jit_kernels`."""

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


@constant_when_traced
def kernels_allowed() -> bool:
    """Triton is importable and ``STMT_DISABLE_KERNELS`` does not switch the kernels off."""
    return not kernels_disabled() and triton_importable()


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << max(n - 1, 0).bit_length()


def jit_kernels(namespace: dict, sources: dict) -> None:
    """Import Triton and wrap a kernel module's kernels, on first use.

    ``namespace`` is the module's globals: its ``tl`` becomes ``triton.language``
    (the kernels' annotations name ``tl.constexpr``) and each function of
    ``sources`` is replaced by its ``triton.jit`` wrapper under the same name,
    as kernels call each other by their global names. Triton decides whether a
    kernel runs compiled or interpreted (CPU, ``TRITON_INTERPRET=1``) when it is
    wrapped, so that is fixed per process.
    """
    import triton
    import triton.language

    namespace["tl"] = triton.language
    for name, fn in sources.items():
        namespace[name] = triton.jit(fn)
