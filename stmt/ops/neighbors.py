"""Neighbours on point sets: finding them (kNN) and gathering their features.

Centres are never sampled here: the template's points are in farthest-point order,
so the first P points of a clip already are a farthest point sample (see
:mod:`stmt.template`). :func:`knn_indices` and :func:`euclidean_knn` find neighbours
(``torch.topk`` and ``torch.cdist``, or on a GPU :mod:`stmt.ops.knn`'s kernels);
:func:`gather_neighbors` gathers their features, and :func:`gather_with_centres` the
centres' too, in CPU training through one autograd node
(:class:`_GatherWithCentres`, its reference the two gathers written as they read).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stmt.ops import dispatch, knn


def knn_indices(distances: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` smallest entries of each row.

    Args:
        distances: (..., M, N) distances from M centres to N candidates.
        k: neighbours per centre, ``k <= N``.

    Returns:
        (..., M, k) int64 indices into the last dimension, nearest first
        (a centre that is also a candidate finds itself at distance 0).
        ``torch.topk``, or on a GPU :mod:`stmt.ops.knn`'s kernel.
    """
    return knn.smallest_k(distances, k)


def euclidean_knn(centers: Tensor, points: Tensor, k: int) -> Tensor:
    """kNN in 3D, independently for every leading index (frame).

    Args:
        centers: (..., M, 3).
        points: (..., N, 3).

    Returns:
        (..., M, k) int64 indices into ``points``. ``torch.cdist`` and
        ``torch.topk``, or on a GPU :mod:`stmt.ops.knn`'s kernel.
    """
    return knn.euclidean_knn(centers, points, k)


def gather_neighbors(x: Tensor, idx: Tensor) -> Tensor:
    """Gather per-frame neighbour features.

    Args:
        x: (B, T, N, C) features of N points in each of T frames.
        idx: (M, K) shared by every clip and frame, (B, M, K) one per clip, or
            (B, T, M, K) one per frame; int64 indices into N.

    Returns:
        (B, T, M, K, C).

    The gathers are the ones whose backward (a scatter-add) is fastest: an
    ``index_select`` along N for shared indices; for per-clip or per-frame
    indices on the CPU an ``index_select`` of the (B*T*N, C) rows (its
    ``index_add`` backward took 15-25 ms for (32, 24, 32, 8, 64) on two threads
    where ``embedding``'s, which sorts the indices first, took 30), and a
    ``gather`` on other devices.
    """
    B, T, N, C = x.shape
    if idx.ndim == 2:
        M, K = idx.shape
        return x.index_select(2, idx.reshape(-1)).reshape(B, T, M, K, C)  # (B, T, M, K, C)
    if idx.ndim == 3:
        idx = idx[:, None].expand(B, T, *idx.shape[1:])  # (B, T, M, K)
    M, K = idx.shape[-2:]
    if x.device.type == "cpu":
        rows = x.reshape(B * T * N, C).index_select(0, _flat_rows(idx, B, T, N))
        return rows.reshape(B, T, M, K, C)
    flat = idx.reshape(B * T, M * K, 1).expand(-1, -1, C)  # (B*T, M*K, C)
    out = torch.gather(x.reshape(B * T, N, C), 1, flat)  # (B*T, M*K, C)
    return out.reshape(B, T, M, K, C)


def _flat_rows(idx: Tensor, B: int, T: int, N: int) -> Tensor:
    """Indices (M, K), (B, M, K) or (B, T, M, K) into each frame's N points as indices
    into the (B*T*N) rows of all frames: (B*T*M*K,)."""
    if idx.ndim == 3:
        idx = idx[:, None]  # (B, 1, M, K)
    frame = torch.arange(B * T, device=idx.device).reshape(B, T, 1, 1) * N  # (B, T, 1, 1)
    return (idx + frame).reshape(-1)  # (B*T*M*K,)


class _GatherWithCentres(torch.autograd.Function):
    """The rows ``rows`` of ``x`` (B, T, N, C) flattened, and its first ``m`` points
    of every frame, with one backward: the scatter-add of the rows' gradient and the
    centres' added in place (two uses of ``x`` by autograd would zero-fill and add a
    (B, T, N, C) tensor more)."""

    @staticmethod
    def forward(ctx, x: Tensor, rows: Tensor, m: int):
        c = x.shape[-1]
        ctx.save_for_backward(rows)
        ctx.shape, ctx.m = x.shape, m
        return x.reshape(-1, c).index_select(0, rows), x[:, :, :m].clone()

    @staticmethod
    def backward(ctx, grad_rows: Tensor, grad_centres: Tensor):
        (rows,) = ctx.saved_tensors
        c = ctx.shape[-1]
        grad = grad_rows.new_zeros(ctx.shape)
        grad.view(-1, c).index_add_(0, rows, grad_rows)
        grad[:, :, : ctx.m] += grad_centres
        return grad, None, None


def gather_with_centres(x: Tensor, idx: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """``(gather_neighbors(x, idx), x[:, :, :m])``: the neighbours of centres [0:m] and
    the centres themselves, (B, T, M, K, C) and (B, T, m, C). On the CPU with gradients
    one autograd node takes both (:class:`_GatherWithCentres`)."""
    if not (x.requires_grad and dispatch.eager_cpu_training(x, x.dtype)):
        return gather_neighbors(x, idx), x[:, :, :m]
    B, T, N, C = x.shape
    M, K = idx.shape[-2:]
    nb, centres = _GatherWithCentres.apply(x, _flat_rows(idx, B, T, N), m)
    return nb.reshape(B, T, M, K, C), centres
