"""k nearest neighbours by a Triton kernel, beside the PyTorch reference.

Two public functions, both returning int64 indices, nearest first:

- :func:`smallest_k`: the ``k`` smallest entries of each row of a distance
  matrix (the geodesic neighbours: rows of the template's (N, N) matrix);
- :func:`euclidean_knn`: the ``k`` nearest of ``points`` to each of ``centers``
  in 3D, per frame (the euclidean neighbours).

The reference is ``torch.topk`` (after ``torch.cdist`` for the euclidean
case). On a GPU that is four radix-select passes per call, 1.3 ms of the
stmt_base training step (batch 32, T 24, N 512, H200 profile,
benchmarks/README.md) for a problem that reads a few megabytes; the kernel
keeps each row in registers and takes the minimum ``k`` times, and the
euclidean kernel computes the squared distances itself (the (frames, M, N)
distance tensor is never written).

Order: nearest first; among equal distances the lower index first (the
reference's order among ties is unspecified). The euclidean kernel ranks by
the squared distance computed from coordinate differences, which may order
two points whose distances differ in the last bits otherwise than
``torch.cdist`` (which can take the ``|x|^2 + |y|^2 - 2 x.y`` route); the
neighbours' distances agree to rounding. NaN ranks after every number, as in
``torch.topk``.

Layers as in :mod:`stmt.ops.offset_attention`: the Triton kernels (Triton is
imported on first use only), ``torch.library`` custom ops with fake functions
(``torch.compile`` traces them as opaque nodes; indices need no autograd),
and the dispatch: the kernel for CUDA tensors when Triton is importable and
N <= ``MAX_N``, else the reference. ``STMT_DISABLE_KERNELS=1`` forces the
reference.
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

#: Longest row (candidates per centre) the kernels take; a row lives in registers.
MAX_N = 4096

tl = None  # triton.language once _build_kernels has run


def smallest_k_reference(distances: Tensor, k: int) -> Tensor:
    """``topk(k, largest=False, sorted=True).indices`` over the last dimension."""
    return distances.topk(k, dim=-1, largest=False, sorted=True).indices


def euclidean_knn_reference(centers: Tensor, points: Tensor, k: int) -> Tensor:
    """``cdist`` then :func:`smallest_k_reference`, per leading index."""
    lead = centers.shape[:-2]
    dist = torch.cdist(
        centers.reshape(-1, *centers.shape[-2:]), points.reshape(-1, *points.shape[-2:])
    )
    return smallest_k_reference(dist, k).reshape(*lead, centers.shape[-2], k)


# --------------------------------------------------------------------------- kernels
# Plain functions in Triton's language, wrapped with triton.jit on first use.


def _select_store(d, cols, col_ok, OUT, rows, row_ok, K: tl.constexpr):
    # Write the indices of the K smallest of each row of d (BLOCK_R, BLOCK_N)
    # to OUT[rows, 0:K]. Ranks by an int32 key with the floats' order (negative
    # floats: the magnitude bits flipped); every NaN, whatever its sign bit, gets
    # 0x7fc00000, above every number; padding and the chosen entries get the
    # largest key, above NaN.
    bits = d.to(tl.int32, bitcast=True)
    key = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    nan = (bits & 0x7FFFFFFF) > 0x7F800000  # exponent all ones, mantissa not 0
    key = tl.where(nan, 0x7FC00000, key)
    key = tl.where(col_ok[None, :], key, 0x7FFFFFFF)
    for j in tl.static_range(K):
        best = tl.argmin(key, axis=1, tie_break_left=True)  # (BLOCK_R,)
        tl.store(OUT + rows * K + j, best.to(tl.int64), mask=row_ok)
        key = tl.where(cols[None, :] == best[:, None], 0x7FFFFFFF, key)


def _rows_kernel(
    D, OUT, R, N, s_r, s_n, K: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr
):
    # One program: BLOCK_R rows of the (R, N) matrix D.
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_N)
    row_ok = rows < R
    col_ok = cols < N
    mask = row_ok[:, None] & col_ok[None, :]
    d = tl.load(D + rows[:, None] * s_r + cols[None, :] * s_n, mask=mask, other=0.0)
    _select_store(d.to(tl.float32), cols, col_ok, OUT, rows, row_ok, K)


def _euclid_kernel(
    C,
    P,
    OUT,
    M,
    N,
    sc_f,
    sc_m,
    sc_d,
    sp_f,
    sp_n,
    sp_d,
    K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    # One program: BLOCK_M centres of frame f against that frame's N points.
    f = tl.program_id(0)
    m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    m_ok = m < M
    col_ok = cols < N
    d = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for axis in tl.static_range(3):
        c = tl.load(C + f * sc_f + m * sc_m + axis * sc_d, mask=m_ok, other=0.0).to(tl.float32)
        p = tl.load(P + f * sp_f + cols * sp_n + axis * sp_d, mask=col_ok, other=0.0)
        diff = c[:, None] - p.to(tl.float32)[None, :]
        d += diff * diff
    _select_store(d, cols, col_ok, OUT + f * M * K, m, m_ok, K)


_KERNEL_SOURCES = {
    "_select_store": _select_store,
    "_rows_kernel": _rows_kernel,
    "_euclid_kernel": _euclid_kernel,
}


@functools.cache
def _build_kernels() -> tuple:
    """Import Triton and jit the kernels: ``(rows_kernel, euclid_kernel)``."""
    jit_kernels(globals(), _KERNEL_SOURCES)
    return _rows_kernel, _euclid_kernel


def _rows_per_program(block_n: int) -> int:
    """Rows per program: about 4096 keys in registers (32 per thread, 4 warps)."""
    return max(1, min(64, 4096 // block_n))


# --------------------------------------------------------------------------- custom ops


@torch.library.custom_op("stmt::smallest_k", mutates_args=())
def _smallest_k_op(distances: Tensor, k: int) -> Tensor:
    """Kernel: (R, N) floating point -> (R, k) int64, the k smallest of each row."""
    rows_kernel, _ = _build_kernels()
    r, n = distances.shape
    out = torch.empty((r, k), dtype=torch.int64, device=distances.device)
    if r == 0:
        return out
    block_n = max(16, next_pow2(n))
    block_r = _rows_per_program(block_n)
    grid = (-(-r // block_r),)
    rows_kernel[grid](
        distances, out, r, n, *distances.stride(), K=k, BLOCK_R=block_r, BLOCK_N=block_n
    )
    return out


@_smallest_k_op.register_fake
def _(distances: Tensor, k: int) -> Tensor:
    return distances.new_empty((distances.shape[0], k), dtype=torch.int64)


@torch.library.custom_op("stmt::euclidean_knn", mutates_args=())
def _euclidean_knn_op(centers: Tensor, points: Tensor, k: int) -> Tensor:
    """Kernel: centres (F, M, 3), points (F, N, 3) -> (F, M, k) int64."""
    _, euclid_kernel = _build_kernels()
    frames, m, _ = centers.shape
    n = points.shape[1]
    out = torch.empty((frames, m, k), dtype=torch.int64, device=centers.device)
    if frames == 0 or m == 0:
        return out
    block_n = max(16, next_pow2(n))
    block_m = _rows_per_program(block_n)
    grid = (frames, -(-m // block_m))
    euclid_kernel[grid](
        centers,
        points,
        out,
        m,
        n,
        *centers.stride(),
        *points.stride(),
        K=k,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
    )
    return out


@_euclidean_knn_op.register_fake
def _(centers: Tensor, points: Tensor, k: int) -> Tensor:
    return centers.new_empty((centers.shape[0], centers.shape[1], k), dtype=torch.int64)


# --------------------------------------------------------------------------- public

#: Tests set this to send CPU tensors through the dispatch to the kernels
#: (which then run under ``TRITON_INTERPRET=1``).
_KERNEL_ON_CPU = False


def _use_kernel(x: Tensor, n: int, k: int) -> bool:
    return (
        (x.is_cuda or _KERNEL_ON_CPU)
        and x.is_floating_point()
        and x.dtype != torch.float64
        and 0 < k <= n <= MAX_N
        and kernels_allowed()
    )


def _check_k(k: int, n: int) -> None:
    if k > n:
        raise ValueError(f"k={k} neighbours asked among only {n} points")


def smallest_k(distances: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` smallest entries of each row, nearest first.

    Args:
        distances: (..., M, N) distances from M centres to N candidates.
        k: neighbours per centre, ``k <= N``.

    Returns:
        (..., M, k) int64 indices into the last dimension.
    """
    n = distances.shape[-1]
    _check_k(k, n)
    if not _use_kernel(distances, n, k):
        return smallest_k_reference(distances, k)
    flat = distances.detach().reshape(-1, n)
    return _smallest_k_op(flat, k).reshape(*distances.shape[:-1], k)


def euclidean_knn(centers: Tensor, points: Tensor, k: int) -> Tensor:
    """kNN in 3D, independently for every leading index (frame).

    Args:
        centers: (..., M, 3).
        points: (..., N, 3), the same leading shape.

    Returns:
        (..., M, k) int64 indices into ``points``, nearest first.
    """
    n = points.shape[-2]
    _check_k(k, n)
    if not _use_kernel(centers, n, k) or points.dtype != centers.dtype:
        return euclidean_knn_reference(centers, points, k)
    lead = centers.shape[:-2]
    c = centers.detach().reshape(-1, *centers.shape[-2:])
    p = points.detach().reshape(-1, *points.shape[-2:])
    return _euclidean_knn_op(c, p, k).reshape(*lead, centers.shape[-2], k)
