"""Neighbour search and grouping on point sets, plain PyTorch (no pytorch3d).

Centres are never sampled here: the template's points are in farthest-point
order, so the first P points of a clip already are a farthest point sample
(see ``stmt.template``). These helpers only find and gather neighbours.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from stmt.ops import knn, neighbor_stats


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
    if not (x.requires_grad and _eager_cpu_training(x, x.dtype)):
        return gather_neighbors(x, idx), x[:, :, :m]
    B, T, N, C = x.shape
    M, K = idx.shape[-2:]
    nb, centres = _GatherWithCentres.apply(x, _flat_rows(idx, B, T, N), m)
    return nb.reshape(B, T, M, K, C), centres


_ROW_BLOCKS, _MIN_BLOCK_ROWS = 8, 4096  # row blocks of _rows_product, and the fewest rows a block


def _rows_product(a: Tensor, b: Tensor) -> Tensor:
    """``a^T b`` for (R, p) and (R, q) with many rows R: (p, q).

    MKL runs such a product, a reduction over the rows into a small output, far
    below its speed and mostly on one thread (3 x 32 output from 196,608 rows:
    8-10 ms on one thread and on two; as 8 row blocks 6 and 3 ms). So with many
    rows the rows are cut into blocks multiplied as one ``bmm``, whose blocks run
    on torch's threads, and summed.
    """
    rows = a.shape[0]
    if rows < _ROW_BLOCKS * _MIN_BLOCK_ROWS:
        return a.t() @ b
    size = rows // _ROW_BLOCKS
    cut = _ROW_BLOCKS * size
    blocks_a = a[:cut].reshape(_ROW_BLOCKS, size, -1)  # (blocks, size, p)
    blocks_b = b[:cut].reshape(_ROW_BLOCKS, size, -1)  # (blocks, size, q)
    out = torch.bmm(blocks_a.transpose(1, 2), blocks_b).sum(0)  # (p, q)
    if cut < rows:
        out.addmm_(a[cut:].t(), b[cut:])
    return out


#: The fewest rows :func:`_linear` gives oneDNN (two threads: 4,096 x 128 -> 384 3.8 ms
#: either way, 8,192 rows 7.5 ms either way, 12,288 rows 14.3 -> 11.9 ms).
ONEDNN_MIN_ROWS = 8192


@functools.cache
def _onednn_linear_works() -> bool:
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


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, relu: bool = False) -> Tensor:
    """``F.linear(x, weight, bias)``, ReLU'd if ``relu``, for (R, K) rows, many R, small
    K and C' (the point layers' and the transformer's products and their input
    gradients), outside autograd.

    In float32 through oneDNN's linear where it works: MKL's ``addmm`` runs these tall
    products below its speed (the output is written once either way). The same values
    (bitwise, in every case measured); (196,608, 35) x (35, 64) 30.3 -> 16.1 ms on one
    thread, 24.6 -> 15.1 on two; (196,608, 64) x (64, 32) 25.7 -> 14.1 and 23.3 -> 13.4;
    with 3 inputs, bias and ReLU 11.6 -> 4.5 and 10.2 -> 4.2. The weight goes in
    contiguous (a transposed view took seconds). oneDNN costs ~40 us more a call: below
    :data:`ONEDNN_MIN_ROWS` rows ``F.linear`` is as fast or faster.
    """
    if (
        x.dtype == torch.float32
        and x.shape[0] >= ONEDNN_MIN_ROWS
        and x.is_contiguous()
        and not torch.is_grad_enabled()  # (no derivative: not where a graph is recorded)
        and torch.backends.mkldnn.enabled  # (off under torch.backends.mkldnn.flags(enabled=False))
        and _onednn_linear_works()
    ):
        attr = "relu" if relu else "none"
        return torch.ops.mkldnn._linear_pointwise(x, weight.contiguous(), bias, attr, [], "")
    out = F.linear(x, weight, bias)
    return out.clamp_min_(0) if relu else out


def _joined(parts: tuple[Tensor, ...]) -> Tensor:
    """The parts concatenated along the last dimension (one part as it is, not copied)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


class _PointLinear(torch.autograd.Function):
    """``F.linear(torch.cat(parts, -1), weight, bias)``, ReLU'd if ``relu``, with a
    backward for many rows on the CPU:

    - each part's gradient is ``grad @ weight[:, its columns]``, only for the parts
      that need one: the first grouping layer's input is ``[xyz, f]`` and the
      vertices need none (and ``grad @ weight`` with 35 or 67 output columns takes
      1.5-2x the time of 32 or 64: MKL, 12,288-196,608 rows, one and two threads);
    - the product (with its bias and ReLU) and the parts' gradients by :func:`_linear`
      (oneDNN's), the weight gradient ``(x^T grad)^T`` over row blocks summed
      (:func:`_rows_product`).
    """

    @staticmethod
    def forward(ctx, weight: Tensor, bias: Tensor | None, relu: bool, *parts: Tensor) -> Tensor:
        x = _joined(parts)
        rows = _linear(x.reshape(-1, x.shape[-1]), weight, bias, relu)  # (R, C')
        ctx.save_for_backward(x, weight, rows if relu else None)
        ctx.widths = [p.shape[-1] for p in parts]
        return rows.reshape(*x.shape[:-1], -1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, out = ctx.saved_tensors
        rows_g = grad.reshape(-1, grad.shape[-1]).contiguous()  # (R, C')
        if out is not None:  # through the ReLU
            rows_g = torch.ops.aten.threshold_backward(rows_g, out, 0)
        grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_w = _rows_product(x.reshape(-1, x.shape[-1]), rows_g).t()
        if ctx.needs_input_grad[1]:
            grad_b = rows_g.sum(0)
        grad_parts, start = [], 0
        for i, width in enumerate(ctx.widths):
            part_grad = None
            if ctx.needs_input_grad[3 + i]:
                part_grad = _linear(rows_g, weight[:, start : start + width].t())
                part_grad = part_grad.reshape(*grad.shape[:-1], width)
            grad_parts.append(part_grad)
            start += width
        return grad_w, grad_b, None, *grad_parts


def _eager_cpu_training(x: Tensor, dtype: torch.dtype) -> bool:
    """Where the CPU autograd functions here apply: ``x`` on the CPU in ``dtype`` (its
    parameters'), gradients recorded, no autocast, not traced by ``torch.compile``."""
    return (
        x.device.type == "cpu"
        and x.dtype == dtype
        and not torch.is_autocast_enabled("cpu")
        and torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
    )


def point_linear(
    x: Tensor | Sequence[Tensor], weight: Tensor, bias: Tensor | None = None
) -> Tensor:
    """``F.linear(x, weight, bias)`` over many points (or tokens), (..., K) -> (..., C');
    ``x`` may be given as parts of its last dimension (``torch.cat(x, -1)``). On the
    CPU with gradients, through :class:`_PointLinear` (the same values and gradients,
    its products by the library that runs them faster, no gradient for parts that
    need none)."""
    parts = (x,) if isinstance(x, Tensor) else tuple(x)
    if _eager_cpu_training(parts[0], weight.dtype):
        return _PointLinear.apply(weight, bias, False, *parts)
    return F.linear(_joined(parts), weight, bias)


class Linear(torch.nn.Linear):
    """``torch.nn.Linear`` (the same parameters and state-dict keys) through
    :func:`point_linear` for many rows: training on the CPU, its products by oneDNN
    (the inter-frame transformer's, stmt_tiny batch 32: a whole step 1,146 -> 1,122 ms
    on two threads, 1,977 -> 1,901 on one); elsewhere ``F.linear``."""

    def forward(self, x: Tensor) -> Tensor:
        if x.numel() < ONEDNN_MIN_ROWS * x.shape[-1]:  # few rows: torch's own autograd node
            return F.linear(x, self.weight, self.bias)
        return point_linear(x, self.weight, self.bias)


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


def _plain_training(norm: torch.nn.Module) -> bool:
    """A plain ``BatchNorm1d`` (not a subclass such as ``SyncBatchNorm1d``) in training,
    with affine parameters and running statistics."""
    return (
        type(norm) is torch.nn.BatchNorm1d
        and norm.training
        and norm.track_running_stats
        and norm.affine
    )


def _count_batch(norm: torch.nn.BatchNorm1d) -> float:
    """Count a training batch in ``norm`` and return the running statistics' momentum
    for it, as ``BatchNorm1d`` does (``momentum=None``: the cumulative average)."""
    norm.num_batches_tracked.add_(1)
    if norm.momentum is None:
        return 1.0 / float(norm.num_batches_tracked)
    return norm.momentum


def _track(norm: torch.nn.BatchNorm1d, mean: Tensor, var: Tensor, n: int) -> None:
    """Update ``norm``'s running statistics as ``BatchNorm1d`` does, from a batch's mean
    and biased variance over ``n`` rows (the running variance is the unbiased one)."""
    with torch.no_grad():
        momentum = _count_batch(norm)
        norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), momentum)
        unbiased = var * (n / max(n - 1, 1))
        norm.running_var.lerp_(unbiased.to(norm.running_var.dtype), momentum)


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

    Everything else (evaluation, ``SyncBatchNorm1d``, the CPU under autocast or
    ``torch.compile``, ``STMT_DISABLE_KERNELS=1`` off the CPU) runs the three
    steps as written.
    """
    c = y.shape[-1]
    if _plain_training(norm) and y.numel() != c:  # (one value per channel: batch norm's own error)
        if _eager_cpu_training(y, norm.weight.dtype):
            return _norm_relu_max_cpu(y, norm, dim)
        if norm.momentum is not None and neighbor_stats.use_kernel(y):
            return _norm_relu_max_by_stats(y, norm, dim)
    return F.relu(norm(y.reshape(-1, c))).reshape(y.shape).amax(dim)


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


#: A linear layer with this many input channels or fewer folds its batch norm (on the CPU).
FOLD_MAX_INPUTS = 4


def linear_norm_relu(x: Tensor, weight: Tensor, norm: torch.nn.BatchNorm1d) -> Tensor:
    """``relu(norm(F.linear(x, weight)))``: a point-wise linear (no bias), batch norm over
    all but the last dimension, ReLU; (..., K) -> (..., C).

    Training a plain ``BatchNorm1d`` on the CPU, in its own dtype, for few input channels
    (K <= :data:`FOLD_MAX_INPUTS`: the point MLP's first layer, K = 3): the batch
    statistics of ``y = x W^T`` follow from the inputs' K x K moments (mean ``W mu``,
    biased variance ``diag(W S W^T)`` with ``S`` the covariance of the rows of ``x``), so
    batch norm folds into the product, ``relu(x (s W)^T + t - s W mu)`` with
    ``s = gamma / sqrt(var + eps)``: one product and an in-place ReLU forward, no pass
    over ``y`` for its statistics or normalisation, and the backward's batch-norm part
    on (C,) and (C, K) tensors (autograd). The same values, gradients and running
    statistics; elsewhere the layers run as written.
    """
    k = x.shape[-1]
    if (
        k <= FOLD_MAX_INPUTS
        and _plain_training(norm)
        and x.numel() != k
        and _eager_cpu_training(x, weight.dtype)
    ):
        rows = x.reshape(-1, k)  # (R, K)
        n = rows.shape[0]
        mu = rows.mean(0)  # (K,)
        centred = rows - mu  # (R, K)
        cov = _rows_product(centred, centred) / n  # (K, K), biased
        mean = weight @ mu  # (C,): the mean of y
        var = ((weight @ cov) * weight).sum(1)  # (C,): the biased variance of y
        _track(norm, mean, var, n)
        scale = norm.weight * torch.rsqrt(var + norm.eps)  # (C,)
        bias = norm.bias - scale * mean
        out = _PointLinear.apply(weight * scale[:, None], bias, True, rows)  # relu(x W'^T + b')
        return out.reshape(*x.shape[:-1], -1)
    return norm_relu(point_linear(x, weight), norm)


def norm_relu(y: Tensor, norm: torch.nn.Module) -> Tensor:
    """``relu(norm(y))`` with ``norm`` over all but the last (channel) dimension; the
    ReLU in place on the new tensor."""
    return F.relu(norm(y.reshape(-1, y.shape[-1])), inplace=True).reshape(y.shape)
