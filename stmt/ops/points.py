"""Neighbour search and grouping on point sets, plain PyTorch (no pytorch3d).

Centres are never sampled here: the template's points are in farthest-point
order, so the first P points of a clip already are a farthest point sample
(see ``stmt.data.template``). These helpers only find and gather neighbours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def knn_indices(distances: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` smallest entries of each row.

    Args:
        distances: (..., M, N) distances from M centres to N candidates.
        k: neighbours per centre, ``k <= N``.

    Returns:
        (..., M, k) int64 indices into the last dimension, nearest first
        (a centre that is also a candidate finds itself at distance 0).
    """
    if k > distances.shape[-1]:
        raise ValueError(f"k={k} neighbours asked among only {distances.shape[-1]} points")
    return distances.topk(k, dim=-1, largest=False, sorted=True).indices


def euclidean_knn(centers: Tensor, points: Tensor, k: int) -> Tensor:
    """kNN in 3D, independently for every leading index (frame).

    Args:
        centers: (..., M, 3).
        points: (..., N, 3).

    Returns:
        (..., M, k) int64 indices into ``points``.
    """
    lead = centers.shape[:-2]
    dist = torch.cdist(
        centers.reshape(-1, *centers.shape[-2:]), points.reshape(-1, *points.shape[-2:])
    )
    return knn_indices(dist, k).reshape(*lead, centers.shape[-2], k)  # (..., M, k)


def gather_neighbors(x: Tensor, idx: Tensor) -> Tensor:
    """Gather per-frame neighbour features.

    Args:
        x: (B, T, N, C) features of N points in each of T frames.
        idx: (M, K) shared by every clip and frame, (B, M, K) one per clip, or
            (B, T, M, K) one per frame; int64 indices into N.

    Returns:
        (B, T, M, K, C).

    The gathers are the ones whose backward (a scatter-add) is fastest: an
    ``index_select`` for shared indices; for per-clip or per-frame indices an
    ``embedding`` lookup into the (B*T*N, C) rows on the CPU (its backward
    is parallel there, ``gather``'s and ``index_select``'s are not) and a
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
        frame = torch.arange(B * T, device=x.device).reshape(B, T, 1, 1) * N  # (B, T, 1, 1)
        return F.embedding(idx + frame, x.reshape(B * T * N, C))  # (B, T, M, K, C)
    flat = idx.reshape(B * T, M * K, 1).expand(-1, -1, C)  # (B*T, M*K, C)
    out = torch.gather(x.reshape(B * T, N, C), 1, flat)  # (B*T, M*K, C)
    return out.reshape(B, T, M, K, C)


class _NeighborMax(torch.autograd.Function):
    """``x.amax(dim)`` with amax's gradient (split evenly among ties), computed
    in two passes over ``x`` instead of autograd's five (4-5x faster on the CPU)."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:
        out = x.amax(dim)
        ctx.save_for_backward(x, out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, out = ctx.saved_tensors
        mask = (x == out.unsqueeze(ctx.dim)).to(grad.dtype)  # 1 where x is the max
        count = mask.sum(ctx.dim, keepdim=True)  # ties share the gradient
        return mask.mul_(grad.unsqueeze(ctx.dim) / count), None


def neighbor_max(x: Tensor, dim: int = 3) -> Tensor:
    """Max over the neighbours, e.g. (B, T, M, K, C) -> (B, T, M, C) for ``dim=3``.

    The same values and gradients as ``x.amax(dim)``; on the CPU through a
    leaner backward (:class:`_NeighborMax`), elsewhere ``amax`` itself (which
    ``torch.compile`` fuses on a GPU)."""
    if x.device.type == "cpu" and torch.is_grad_enabled() and x.requires_grad:
        return _NeighborMax.apply(x, dim)
    return x.amax(dim)
