"""Shared point MLPs: a linear layer, batch norm and ReLU over many points (or tokens).

Three public functions, each with its reference written beside it, and the faster way
to the same values (and gradients) chosen in :mod:`stmt.ops.dispatch`:

- :func:`point_linear`: ``F.linear(torch.cat(parts, -1), weight, bias)``; in eager CPU
  training :class:`_PointLinear` (its products by oneDNN's linear where that is faster,
  the weight gradient over row blocks, no gradient for parts that need none);
  :class:`Linear` is ``nn.Linear`` through it;
- :func:`linear_norm_relu`: ``relu(norm(linear(x)))``; in eager CPU training of a layer
  of few inputs (the point MLP's first, 3 coordinates), batch norm folded into the
  product;
- :func:`norm_relu`: ``relu(norm(y))`` over all but the channel dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stmt.ops import dispatch

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
        and dispatch.onednn_linear_works()
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


def point_linear(
    x: Tensor | Sequence[Tensor], weight: Tensor, bias: Tensor | None = None
) -> Tensor:
    """``F.linear(x, weight, bias)`` over many points (or tokens), (..., K) -> (..., C');
    ``x`` may be given as parts of its last dimension (``torch.cat(x, -1)``). On the
    CPU with gradients, through :class:`_PointLinear` (the same values and gradients,
    its products by the library that runs them faster, no gradient for parts that
    need none)."""
    parts = (x,) if isinstance(x, Tensor) else tuple(x)
    if dispatch.eager_cpu_training(parts[0], weight.dtype):
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


#: A linear layer with this many input channels or fewer folds its batch norm (on the CPU).
FOLD_MAX_INPUTS = 4


def linear_norm_relu(x: Tensor, linear: nn.Linear, norm: nn.BatchNorm1d) -> Tensor:
    """``relu(norm(linear(x)))``: a point-wise linear, batch norm over all but the last
    dimension, ReLU; (..., K) -> (..., C).

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
    k, weight = x.shape[-1], linear.weight
    if (
        k <= FOLD_MAX_INPUTS
        and linear.bias is None
        and dispatch.plain_batchnorm_training(norm)
        and x.numel() != k
        and dispatch.eager_cpu_training(x, weight.dtype)
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
    return norm_relu(point_linear(x, weight, linear.bias), norm)


def norm_relu(y: Tensor, norm: torch.nn.Module) -> Tensor:
    """``relu(norm(y))`` with ``norm`` over all but the last (channel) dimension; the
    ReLU in place on the new tensor."""
    return F.relu(norm(y.reshape(-1, y.shape[-1])), inplace=True).reshape(y.shape)
