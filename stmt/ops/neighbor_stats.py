"""One pass over a grouping layer's output for batch norm + ReLU + max over the
neighbours: a Triton kernel, beside the PyTorch reference.

:func:`neighbor_stats` takes ``y`` (M, K, C), the last linear layer's output
for K neighbours of M centres, and returns in one read of ``y``:

- ``high``, ``low`` (M, C): the max and the min over the K neighbours;
- ``sum``, ``sumsq`` (C,) float32: the sums of ``y - shift`` and of its square
  over all M K rows (``shift``, a constant per channel near the data, keeps
  the variance from cancelling).

That is all a training-mode batch norm followed by ReLU and the max over the
neighbours needs (``stmt.ops.grouping.norm_relu_max``): ``z = s y + t`` is
monotone per channel, so the max of ``relu(z)`` is ``relu(s e + t)`` with
``e`` the max where ``s >= 0`` and the min where ``s < 0``, and the batch's
mean and variance come from the two sums. The rest is arithmetic on (M, C)
and (C,) tensors, left to autograd. The backward is one more pass, writing
``dy = g_high [y = high] / #high + g_low [y = low] / #low + g_sum
+ 2 g_sumsq (y - shift)`` (ties share the pooled gradient, as ``amax``'s
does). Against batch norm, ReLU and ``amax`` as three steps, the normalised
tensor is never written, and each direction reads ``y`` once.

Layers as in :mod:`stmt.ops.knn`: the Triton kernels (Triton imported on first
use), ``torch.library`` custom ops with fake functions and a registered
autograd (``torch.compile`` traces them as opaque nodes), and the dispatch: the
kernel for CUDA tensors when Triton is importable, else the reference.
``STMT_DISABLE_KERNELS=1`` forces the reference.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from stmt.ops.dispatch import (
    jit_kernels,
    kernels_allowed,
    next_pow2,
)

tl = None  # triton.language once _build_kernels has run


def neighbor_stats_reference(y: Tensor, shift: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(M, K, C) -> max and min over K (M, C), sums of ``y - shift`` and its square (C,) float32."""
    centred = y.float() - shift
    return (
        y.amax(dim=1),
        y.amin(dim=1),
        centred.sum(dim=(0, 1)),
        centred.square().sum(dim=(0, 1)),
    )


# --------------------------------------------------------------------------- kernels
# Plain functions in Triton's language, wrapped with triton.jit on first use.
# One program: BLOCK_M centres x BLOCK_C channels, all K neighbours (padded to
# BLOCK_K), y contiguous (M, K, C).


def _tile(
    Y, M, C, K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr
):
    # This program's tile of y, float32 (BLOCK_M, BLOCK_K, BLOCK_C), 0 where masked off,
    # its mask and offsets, and the offsets and mask of its (BLOCK_M, BLOCK_C) slice of
    # an (M, C) tensor; the channels c and their mask.
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    k = tl.arange(0, BLOCK_K)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    m_ok, c_ok = m < M, c < C
    ok = m_ok[:, None, None] & (k < K)[None, :, None] & c_ok[None, None, :]
    offs = (m[:, None, None] * K + k[None, :, None]) * C + c[None, None, :]
    y = tl.load(Y + offs, mask=ok, other=0.0).to(tl.float32)
    small = m[:, None] * C + c[None, :]
    small_ok = m_ok[:, None] & c_ok[None, :]
    return y, ok, offs, small, small_ok, c, c_ok


def _stats_kernel(
    Y,
    SHIFT,
    HIGH,
    LOW,
    SUM,
    SUMSQ,
    M,
    C,
    K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    y, ok, _, small, small_ok, c, c_ok = _tile(Y, M, C, K, BLOCK_M, BLOCK_K, BLOCK_C)
    high = tl.max(tl.where(ok, y, float("-inf")), axis=1)  # (BLOCK_M, BLOCK_C)
    low = tl.min(tl.where(ok, y, float("inf")), axis=1)
    tl.store(HIGH + small, high.to(HIGH.dtype.element_ty), mask=small_ok)
    tl.store(LOW + small, low.to(LOW.dtype.element_ty), mask=small_ok)
    pid_m = tl.program_id(0)
    shift = tl.load(SHIFT + c, mask=c_ok, other=0.0)
    centred = tl.where(ok, y - shift[None, None, :], 0.0)
    part = tl.sum(tl.sum(centred, axis=1), axis=0)  # (BLOCK_C,)
    part_sq = tl.sum(tl.sum(centred * centred, axis=1), axis=0)
    tl.store(SUM + pid_m * C + c, part, mask=c_ok)  # one row of partial sums per block of centres
    tl.store(SUMSQ + pid_m * C + c, part_sq, mask=c_ok)


def _stats_backward_kernel(
    Y,
    SHIFT,
    HIGH,
    LOW,
    G_HIGH,
    G_LOW,
    G_SUM,
    G_SUMSQ,
    DY,
    M,
    C,
    K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    y, ok, offs, small, small_ok, c, c_ok = _tile(Y, M, C, K, BLOCK_M, BLOCK_K, BLOCK_C)
    high = tl.load(HIGH + small, mask=small_ok, other=0.0).to(tl.float32)[:, None, :]
    low = tl.load(LOW + small, mask=small_ok, other=0.0).to(tl.float32)[:, None, :]
    at_high = ok & (y == high)
    at_low = ok & (y == low)
    n_high = tl.maximum(tl.sum(at_high.to(tl.float32), axis=1), 1.0)  # ties share
    n_low = tl.maximum(tl.sum(at_low.to(tl.float32), axis=1), 1.0)
    g_high = tl.load(G_HIGH + small, mask=small_ok, other=0.0).to(tl.float32) / n_high
    g_low = tl.load(G_LOW + small, mask=small_ok, other=0.0).to(tl.float32) / n_low
    g_sum = tl.load(G_SUM + c, mask=c_ok, other=0.0)[None, None, :]
    g_sumsq = tl.load(G_SUMSQ + c, mask=c_ok, other=0.0)[None, None, :]
    shift = tl.load(SHIFT + c, mask=c_ok, other=0.0)[None, None, :]
    dy = g_sum + 2.0 * g_sumsq * (y - shift)
    dy += tl.where(at_high, g_high[:, None, :], 0.0) + tl.where(at_low, g_low[:, None, :], 0.0)
    tl.store(DY + offs, dy.to(DY.dtype.element_ty), mask=ok)


_KERNEL_SOURCES = {
    "_tile": _tile,
    "_stats_kernel": _stats_kernel,
    "_stats_backward_kernel": _stats_backward_kernel,
}


@functools.cache
def _build_kernels() -> tuple:
    """Import Triton and jit the kernels: ``(stats_kernel, stats_backward_kernel)``."""
    jit_kernels(globals(), _KERNEL_SOURCES)
    return _stats_kernel, _stats_backward_kernel


#: Warps per program. With 4096 values of y a program (16 a thread), ptxas for sm_90
#: reports 58 (forward) and 80 (backward) registers a thread and no spills for the
#: model's bf16 and fp32 shapes; with 4 warps the backward took 153 (3 programs an SM).
#: Compiled offline, not timed on a GPU.
NUM_WARPS = 8


def _blocks(k: int, c: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_K, BLOCK_C): about 4096 values of y per program."""
    block_k = next_pow2(k)
    block_c = min(64, max(16, next_pow2(c)))
    block_m = max(1, 4096 // (block_k * block_c))
    return block_m, block_k, block_c


# --------------------------------------------------------------------------- custom ops


@torch.library.custom_op("stmt::neighbor_stats", mutates_args=())
def _stats_op(y: Tensor, shift: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Kernel: y (M, K, C) contiguous, shift (C,) float32 -> high, low (M, C), sum, sumsq (C,)."""
    stats_kernel, _ = _build_kernels()
    m, k, c = y.shape
    block_m, block_k, block_c = _blocks(k, c)
    blocks = -(-m // block_m)
    high, low = y.new_empty((m, c)), y.new_empty((m, c))
    parts = y.new_empty((2, blocks, c), dtype=torch.float32)  # every entry written
    if m and k and c:
        grid = (blocks, -(-c // block_c))
        stats_kernel[grid](
            y, shift, high, low, parts[0], parts[1], m, c,
            K=k, BLOCK_M=block_m, BLOCK_K=block_k, BLOCK_C=block_c, num_warps=NUM_WARPS,
        )  # fmt: skip
    return high, low, parts[0].sum(dim=0), parts[1].sum(dim=0)


@_stats_op.register_fake
def _(y: Tensor, shift: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    m, _, c = y.shape
    return (
        y.new_empty((m, c)),
        y.new_empty((m, c)),
        shift.new_empty((c,)),
        shift.new_empty((c,)),
    )


@torch.library.custom_op("stmt::neighbor_stats_backward", mutates_args=())
def _stats_backward_op(
    y: Tensor,
    shift: Tensor,
    high: Tensor,
    low: Tensor,
    g_high: Tensor,
    g_low: Tensor,
    g_sum: Tensor,
    g_sumsq: Tensor,
) -> Tensor:
    """Kernel backward: dy (M, K, C) in y's dtype; gradients of the four outputs in."""
    _, backward_kernel = _build_kernels()
    m, k, c = y.shape
    block_m, block_k, block_c = _blocks(k, c)
    dy = torch.empty_like(y)
    if m and k and c:
        grid = (-(-m // block_m), -(-c // block_c))
        backward_kernel[grid](
            y, shift, high, low, g_high, g_low, g_sum, g_sumsq, dy, m, c,
            K=k, BLOCK_M=block_m, BLOCK_K=block_k, BLOCK_C=block_c, num_warps=NUM_WARPS,
        )  # fmt: skip
    return dy


@_stats_backward_op.register_fake
def _(y, shift, high, low, g_high, g_low, g_sum, g_sumsq) -> Tensor:
    return torch.empty_like(y)


def _setup_context(ctx, inputs, output) -> None:
    y, shift = inputs
    high, low, _sum, _sumsq = output
    ctx.save_for_backward(y, shift, high, low)


def _backward_autograd(ctx, g_high, g_low, g_sum, g_sumsq):
    y, shift, high, low = ctx.saved_tensors
    m, _, c = y.shape
    # an output that the loss does not reach arrives as None; the kernel wants zeros
    g_high = high.new_zeros((m, c)) if g_high is None else g_high.contiguous()
    g_low = low.new_zeros((m, c)) if g_low is None else g_low.contiguous()
    g_sum = shift.new_zeros((c,)) if g_sum is None else g_sum.float().contiguous()
    g_sumsq = shift.new_zeros((c,)) if g_sumsq is None else g_sumsq.float().contiguous()
    dy = _stats_backward_op(y, shift, high, low, g_high, g_low, g_sum, g_sumsq)
    return dy, None


_stats_op.register_autograd(_backward_autograd, setup_context=_setup_context)


# --------------------------------------------------------------------------- public

#: Tests set this to send CPU tensors through the dispatch to the kernels
#: (which then run under ``TRITON_INTERPRET=1``).
_KERNEL_ON_CPU = False


def use_kernel(y: Tensor) -> bool:
    """Whether :func:`neighbor_stats` runs the kernel for ``y``: CUDA (or the
    tests' interpreter), a 16- or 32-bit float, Triton importable, not disabled."""
    return (
        (y.is_cuda or _KERNEL_ON_CPU)
        and y.dtype in (torch.float32, torch.float16, torch.bfloat16)
        and kernels_allowed()
    )


def neighbor_stats(y: Tensor, shift: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Max and min over the neighbours and the batch sums, in one pass over ``y``.

    Args:
        y: (M, K, C), K neighbours of M centres, C channels.
        shift: (C,) float32, subtracted before summing (no gradient flows to it).

    Returns:
        ``high``, ``low`` (M, C) in y's dtype; ``sum`` and ``sumsq`` (C,) float32,
        the sums of ``y - shift`` and of ``(y - shift)^2`` over all M K rows. All
        four are differentiable in ``y``.
    """
    if y.ndim != 3 or shift.shape != (y.shape[2],):
        raise ValueError(
            f"expected y (M, K, C) and shift (C,), got {tuple(y.shape)} and {tuple(shift.shape)}"
        )
    shift = shift.detach().float()
    if not use_kernel(y):
        return neighbor_stats_reference(y, shift)
    return _stats_op(y.contiguous(), shift.contiguous())
