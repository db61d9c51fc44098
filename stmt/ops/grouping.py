"""Grouping: a shared MLP over each centre's neighbourhood, then the max over the neighbours.

:func:`group_max` is one level of a patch branch (PointNet++'s set abstraction on the
template's patches): the input of neighbour j of centre i is
``(xyz_j - xyz_i, f_j - f_i, f_i)``, each layer is Linear (no bias) -> BatchNorm ->
ReLU, and the result is the max over the k neighbours. :func:`group_max_reference`
computes it as written; :func:`group_max` computes the same without the
(B, T, m, k, 3 + 2C) input in float32 (the first layer split into the points' and the
centres' terms) and with batch norm, ReLU and the max fused (:func:`norm_relu_max`:
in eager CPU training :class:`_NormReluMax`, on a GPU one pass of
:mod:`stmt.ops.neighbor_stats`'s kernel), where :mod:`stmt.ops.dispatch` says so.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stmt.ops import dispatch, neighbor_stats
from stmt.ops.neighbors import gather_neighbors, gather_with_centres
from stmt.ops.point_mlp import _count_batch, _track, norm_relu, point_linear


class _NormReluMax(torch.autograd.Function):
    """``relu(batch_norm(y)).amax(dim)`` for a training-mode BatchNorm1d, without the
    normalised tensor.

    ``z = s y + t`` with a per-channel ``s`` is monotone in ``y``, so the max of
    ``relu(z)`` over the neighbours is ``relu(s y_ext + t)`` with ``y_ext`` the max
    of ``y`` where ``s >= 0`` and its min where ``s < 0``: the forward reads ``y``
    for the statistics and the extremes and writes only the (..., C) result. In
    the backward the pooled gradient reaches one element per (centre, channel)
    (ties share it, as amax's does), so batch norm's backward collapses to
    ``dy = b (y - mean) + c`` everywhere plus ``s g`` at the extremes, with
    per-channel ``b``, ``c`` from sums over the small pooled tensors.
    """

    @staticmethod
    def forward(ctx, y, weight, bias, running_mean, running_var, momentum, eps, dim):
        c = y.shape[-1]
        # batch mean and biased variance; running statistics updated as BatchNorm1d does
        mean, var = torch.batch_norm_update_stats(
            y.reshape(-1, c), running_mean, running_var, momentum
        )
        invstd = (var + eps).rsqrt()
        scale = weight * invstd
        flip = bool((scale < 0).any())
        high = y.amax(dim)
        ext = torch.where(scale < 0, y.amin(dim), high) if flip else high  # argmax of z
        z = (ext - mean) * scale + bias  # (..., C): the max of the normalised tensor
        ctx.save_for_backward(y, ext, z, weight, mean, invstd)
        ctx.dim = dim
        return z.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        y, ext, z, weight, mean, invstd = ctx.saved_tensors
        dim = ctx.dim
        n = y.numel() // y.shape[-1]  # rows batch norm averaged over
        g = torch.ops.aten.threshold_backward(grad, z, 0)  # through the ReLU (a tenth of
        # the time of masked_fill(z <= 0, 0) for (32, 24, 32, 64) on two threads)
        hit = torch.empty_like(y)  # 1 where the pooled gradient goes, else 0
        torch.eq(y, ext.unsqueeze(dim), out=hit)  # (float, not bool: 2x faster below)
        scale = weight * invstd
        top = ext  # the value of y at the hits; where s = 0, z is t at every neighbour:
        if not scale.all():  # all tie there and share g, as amax's gradient does
            top = torch.where(scale == 0, y.mean(dim), ext)
        sum_g = g.flatten(0, -2).sum(0)  # over the hits: every hit of (r, c) has y = ext
        sum_gx = (g * (top - mean)).flatten(0, -2).sum(0)
        # ties share the gradient (as amax's): any where the hits outnumber the maxima.
        # Below 2**24 elements one contiguous float sum counts them exactly (every
        # partial sum an integer under 2**24), at a third of the time of the count
        # per maximum over the strided neighbour dimension.
        if hit.numel() < 2**24:
            tied = hit.sum().item() > ext.numel()
        else:
            tied = bool((hit.sum(dim) > 1).any())
        if tied:
            g = g / hit.sum(dim)  # (..., C): how many neighbours hold each max
        grad_weight = sum_gx * invstd  # sum of g * x_hat
        b = -scale * invstd * grad_weight / n  # dy = b (y - mean) - s sum_g / n [+ s g at hits]
        c = -scale * sum_g / n - b * mean
        grad_y = torch.addcmul(c, hit, (g * scale).unsqueeze(dim), out=hit).addcmul_(y, b)
        return grad_y, grad_weight, sum_g, None, None, None, None, None


def norm_relu_max(y: Tensor, norm: torch.nn.BatchNorm1d, dim: int = 3) -> Tensor:
    """``relu(norm(y)).amax(dim)``: batch norm over all but the last (channel)
    dimension, ReLU, max over the neighbours, e.g. (B, T, M, K, C) -> (B, T, M, C).

    Training a plain ``BatchNorm1d`` (the same values, gradients and running
    statistics as the three steps, without the normalised tensor):

    - on the CPU with gradients, in its own dtype: :class:`_NormReluMax`
      (1.7x faster on a (16, 24, 32, 8, 64) input, one thread);
    - on a GPU (eager, autocast, ``torch.compile``): :func:`_norm_relu_max_by_stats`,
      one kernel pass over ``y`` forward and one backward
      (:mod:`stmt.ops.neighbor_stats`). One difference: where a channel's gamma is
      exactly 0 (and its bias > 0) every neighbour ties at the max; amax shares the
      weight's gradient among them, this path gives it the max's (the per-centre means
      would cost a pass over ``y`` or a host sync).

    In evaluation without gradients (``stmt classify``, ``stmt test``) the max comes
    first and batch norm and the ReLU run on the pooled tensor
    (:func:`_max_then_norm_relu`: the same floats, a k-th of the work). Everything else
    (evaluation with gradients, ``SyncBatchNorm1d``, the CPU under autocast or
    ``torch.compile``, ``STMT_DISABLE_KERNELS=1`` off the CPU) runs the three steps as
    written.
    """
    c = y.shape[-1]
    if (
        dispatch.plain_batchnorm_training(norm) and y.numel() != c
    ):  # (one value per channel: batch norm's own error)
        if dispatch.eager_cpu_training(y, norm.weight.dtype):
            return _norm_relu_max_cpu(y, norm, dim)
        if norm.momentum is not None and neighbor_stats.use_kernel(y):
            return _norm_relu_max_by_stats(y, norm, dim)
    if dispatch.plain_batchnorm_inference(norm):
        return _max_then_norm_relu(y, norm, dim)
    return F.relu(norm(y.reshape(-1, c))).reshape(y.shape).amax(dim)


def _max_then_norm_relu(
    y: Tensor, norm: torch.nn.BatchNorm1d, dim: int, centre: Tensor | None = None
) -> Tensor:
    """``relu(norm(y + centre)).amax(dim)`` (``centre`` broadcast over ``dim``) in
    evaluation, from the max of ``y`` over ``dim`` (its min where gamma < 0): batch norm,
    the ReLU and the centre's term on the pooled (..., C) tensor, not on all k neighbours.

    The same floats as the three steps on ``y``: rounding is monotone, so
    ``max_j fl(y_j + c) = fl(max_j y_j + c)``, and the affine map and the ReLU are
    monotone per channel (decreasing where gamma < 0, hence the min there)."""
    ext = y.amax(dim)
    if norm.weight is not None:
        flip = norm.weight < 0  # on a GPU the min always: asking would wait for the device
        if y.device.type != "cpu" or bool(flip.any()):
            ext = torch.where(flip, y.amin(dim), ext)
    if centre is not None:
        ext = ext + centre
    c = ext.shape[-1]
    return F.relu(norm(ext.reshape(-1, c)), inplace=True).reshape(ext.shape)


def _norm_relu_max_by_stats(y: Tensor, norm: torch.nn.BatchNorm1d, dim: int) -> Tensor:
    """``relu(norm(y)).amax(dim)`` from :func:`stmt.ops.neighbor_stats.neighbor_stats`:
    the max and min over the neighbours and the batch sums in one pass over ``y``,
    then batch norm's arithmetic on (M, C) and (C,) tensors, differentiated by
    autograd (whose way back to ``y`` is the op's one backward pass)."""
    c, k = y.shape[-1], y.shape[dim]
    rows = y.movedim(dim, -2)  # (..., K, C)
    flat = rows.reshape(-1, k, c)  # (M, K, C)
    shift = flat[0, 0].detach().float()  # a value near the data: the sums do not cancel
    high, low, total, total_sq = neighbor_stats.neighbor_stats(flat, shift)
    n = flat.shape[0] * k
    mean_shifted = total / n
    var = (total_sq / n - mean_shifted.square()).clamp_min(0)  # biased, as batch norm's
    mean = mean_shifted + shift
    _track(norm, mean, var, n)  # (momentum set: no host sync)
    scale = norm.weight * torch.rsqrt(var + norm.eps)  # (C,)
    ext = torch.where(scale < 0, low, high)  # (M, C): where the max of relu(scale y + t) is
    out = torch.relu((ext.float() - mean) * scale + norm.bias)
    return out.to(y.dtype).reshape(*rows.shape[:-2], c)


def _norm_relu_max_cpu(y: Tensor, norm: torch.nn.BatchNorm1d, dim: int) -> Tensor:
    """:class:`_NormReluMax` with ``norm``'s parameters and running statistics."""
    momentum = _count_batch(norm)
    return _NormReluMax.apply(
        y, norm.weight, norm.bias, norm.running_mean, norm.running_var, momentum, norm.eps, dim
    )


# --------------------------------------------------------------------------- the grouping
def group_max_reference(
    mlp: Sequence[nn.Module], xyz: Tensor, feat: Tensor, idx: Tensor, m: int
) -> Tensor:
    """:func:`group_max` as written: the (offset, feature difference, feature) input of
    every neighbour, the layers in turn, the max over the neighbours."""
    nb_xyz, nb_feat = gather_neighbors(xyz, idx), gather_neighbors(feat, idx)  # (B, T, m, k, .)
    c_xyz, c_feat = xyz[:, :, :m, None], feat[:, :, :m, None]  # (B, T, m, 1, .)
    y = torch.cat([nb_xyz - c_xyz, nb_feat - c_feat, c_feat.expand_as(nb_feat)], dim=-1)
    for layer in mlp:
        y = norm_relu(layer.linear(y), layer.norm)  # (B, T, m, k, C')
    return y.amax(dim=3)  # (B, T, m, C')


def group_max(mlp: Sequence[nn.Module], xyz: Tensor, feat: Tensor, idx: Tensor, m: int) -> Tensor:
    """A shared MLP over the neighbourhoods of centres [0:m], max over the neighbours.

    Args:
        mlp: the layers, each with a ``linear`` (``nn.Linear`` without bias) and a
            ``norm`` (``nn.BatchNorm1d``), applied as Linear -> BatchNorm -> ReLU.
        xyz: (B, T, N, 3) points; the centres are points [0:m].
        feat: (B, T, N, C) their features.
        idx: (m, k), (B, m, k) or (B, T, m, k) int64 indices into N: each centre's
            k neighbours.
        m: the number of centres.

    Returns:
        (B, T, m, C') float, the values of :func:`group_max_reference`.

    The first layer's input for neighbour j of centre i is (xyz_j - xyz_i, f_j - f_i,
    f_i). In float32 (no autocast) its linear layer, W = [Wx | Wd | Wc], is split:
    W x = u_j + (Wc f_i - u_i) with u = [xyz, f] [Wx | Wd]^T and the centre's term
    [xyz_i, f_i] [-Wx | Wc - Wd]^T, without the (B, T, m, k, 3 + 2C) input
    (:func:`_split_first_layer`). In 16 bits u_j - u_i would lose the small offsets to
    rounding, so there the input is built as written, with zero channels up to a
    multiple of 8 (:func:`_padded_first_layer`). The last layer's batch norm, ReLU and
    max are one step (:func:`norm_relu_max`). In evaluation without gradients a level of
    one layer takes the max over the neighbours of u alone and adds the centre's term
    after it (:func:`_max_then_norm_relu`): no (B, T, m, k, C') sum.
    """
    if feat.dtype != torch.float32 or torch.is_autocast_enabled(feat.device.type):
        y = _padded_first_layer(mlp[0].linear.weight, xyz, feat, idx, m)
    else:
        u, centre = _split_first_layer(mlp[0].linear.weight, xyz, feat, idx, m)
        if len(mlp) == 1 and dispatch.plain_batchnorm_inference(mlp[0].norm):  # max first
            return _max_then_norm_relu(u, mlp[0].norm, 3, centre)
        y = u + centre[:, :, :, None]
    for prev, layer in itertools.pairwise(mlp):  # y: the last layer's pre-activation
        y = layer.linear(norm_relu(y, prev.norm))
    return norm_relu_max(y, mlp[-1].norm, dim=3)  # (B, T, m, C'): amax over the k neighbours


def _split_first_layer(
    w: Tensor, xyz: Tensor, feat: Tensor, idx: Tensor, m: int
) -> tuple[Tensor, Tensor]:
    """The first layer's product (B, T, m, k, C') as the points' term ``u`` (B, T, m,
    k, C') plus the centres' (B, T, m, C'), returned apart.

    u is computed on the n points before the gather where the m*k neighbour rows are
    more (level 2), and on the gathered 3 + C inputs otherwise (level 1, m*k = n: the
    same product, and the gather and its backward move 3 + C channels instead of C')."""
    c = feat.shape[-1]  # w: (C', 3 + 2C) = [Wx | Wd | Wc]
    w_centre = torch.cat([-w[:, :3], w[:, 3 + c :] - w[:, 3 : 3 + c]], dim=1)
    if m * idx.shape[-1] <= xyz.shape[2] and 3 + c < w.shape[0]:
        # no more neighbour rows than points (level 1): gather the 3 + C inputs
        # rather than the wider C' outputs, the same product on as many rows
        nb_feat, c_feat = gather_with_centres(feat, idx, m)
        parts = [gather_neighbors(xyz, idx), nb_feat]
        u = point_linear(parts, w[:, : 3 + c])  # (B, T, m, k, C'): Wx x_j + Wd f_j
    else:
        u = gather_neighbors(point_linear([xyz, feat], w[:, : 3 + c]), idx)
        c_feat = feat[:, :, :m]
    centre = point_linear([xyz[:, :, :m], c_feat], w_centre)  # Wc f_i - u_i
    return u, centre  # their sum u + centre[:, :, :, None] is the product


def _padded_first_layer(w: Tensor, xyz: Tensor, feat: Tensor, idx: Tensor, m: int) -> Tensor:
    """The first layer's product (B, T, m, k, C') on its input built as written, with zero
    channels (and zero weight columns) up to a multiple of 8: 3 + 2C = 131 or 259 inner
    channels give the GPU's matrix products unaligned (``align1``) kernels."""
    nb_xyz = gather_neighbors(xyz, idx)  # (B, T, m, k, 3)
    nb_feat = gather_neighbors(feat, idx)  # (B, T, m, k, C)
    c_xyz, c_feat = xyz[:, :, :m, None], feat[:, :, :m, None]  # (B, T, m, 1, .)
    parts = [nb_xyz - c_xyz, nb_feat - c_feat, c_feat.expand_as(nb_feat)]
    pad = -w.shape[1] % 8  # w: (C', 3 + 2C)
    if pad:
        parts.append(nb_feat.new_zeros(()).expand(*nb_feat.shape[:-1], pad))
        w = F.pad(w, (0, pad))  # (C', 3 + 2C + pad)
    return F.linear(torch.cat(parts, dim=-1), w)  # (B, T, m, k, C')
