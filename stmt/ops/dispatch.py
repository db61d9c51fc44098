"""Where a fast path replaces its reference, decided in one place.

Every op of :mod:`stmt.ops` is one public function with a plain PyTorch reference
beside it; the faster ways to compute the same values are chosen by these checks:

- **Triton kernels** (offset attention, neighbour search, neighbour statistics), for
  CUDA tensors: :func:`kernels_allowed` (Triton importable and ``STMT_DISABLE_KERNELS``
  not set); Triton itself is imported only by :func:`jit_kernels`, when a kernel is
  first used.
- **CPU autograd functions** (a point layer's product and its gradients, batch norm +
  ReLU + max over neighbours, the gather of neighbours with their centres), for eager
  CPU training: :func:`eager_cpu_training` (on the CPU in the parameters' dtype,
  gradients recorded, no autocast, not traced by ``torch.compile``) and, where batch
  norm is fused, :func:`plain_batchnorm_training`.
- **oneDNN's linear** for tall products on the CPU: :func:`onednn_linear_works`.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

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
        import triton  # noqa: F401, PLC0415 - optional (pyproject.toml's list)
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
    import triton  # noqa: PLC0415 - optional (pyproject.toml's list)
    import triton.language  # noqa: PLC0415

    namespace["tl"] = triton.language
    for name, fn in sources.items():
        namespace[name] = triton.jit(fn)


# --------------------------------------------------------------------------- the CPU's
def eager_cpu_training(x: Tensor, dtype: torch.dtype) -> bool:
    """Where the CPU autograd functions of :mod:`stmt.ops` apply: ``x`` on the CPU in
    ``dtype`` (its parameters'), gradients recorded, no autocast, not traced by
    ``torch.compile``."""
    return (
        x.device.type == "cpu"
        and x.dtype == dtype
        and not torch.is_autocast_enabled("cpu")
        and torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
    )


def plain_batchnorm_training(norm: torch.nn.Module) -> bool:
    """A plain ``BatchNorm1d`` (not a subclass such as ``SyncBatchNorm1d``) in training,
    with affine parameters and running statistics: one a fused path may stand in for."""
    return (
        type(norm) is torch.nn.BatchNorm1d
        and norm.training
        and norm.track_running_stats
        and norm.affine
    )


def plain_batchnorm_inference(norm: torch.nn.Module) -> bool:
    """A plain ``BatchNorm1d`` in evaluation with running statistics, nothing recorded
    for autograd and not traced: a fixed per-channel ``s y + t`` that a max over
    neighbours may come before (:func:`stmt.ops.grouping.norm_relu_max`)."""
    return (
        type(norm) is torch.nn.BatchNorm1d
        and not norm.training
        and norm.track_running_stats
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
    )


@functools.cache
def onednn_linear_works() -> bool:
    """Whether this torch has oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``,
    the op inductor's CPU code calls) and it gives ``F.linear``'s values on a small
    float32 case, bias and ReLU included; checked once."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*s, generator=gen) for s in ((37, 5), (3, 5), (3,)))
        got = torch.ops.mkldnn._linear_pointwise(x, w, b, "relu", [], "")
        return torch.allclose(got, F.linear(x, w, b).clamp_min(0), rtol=1e-5, atol=1e-6)
    except (AttributeError, RuntimeError):
        return False
