"""Batch norm over all processes' batches under DDP, on any device.

``torch.nn.SyncBatchNorm`` refuses CPU tensors, so it cannot be trained or
tested with gloo on a CPU machine. :class:`SyncBatchNorm1d` is the model's
``nn.BatchNorm1d`` (same parameters, buffers and state-dict keys) whose
training statistics are summed over the process group with one differentiable
``all_reduce`` of (count, sum, sum of squares) per layer; its backward
all-reduces the gradients of those sums, so with DDP averaging the parameter
gradients each process gets the gradient of the mean loss over the global
batch, as one process would on that batch (tests/test_ddp.py). Outside
training, or with one process, it is plain batch norm.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over the process group; the gradient of each process's input is the
    sum of all processes' output gradients (every output depends on every input)."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        ctx.group = group
        out = x.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def _world_size(group) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


class SyncBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` on (R, C) whose training statistics span the process group."""

    process_group = None  # None: the default (world) group

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or _world_size(self.process_group) == 1 or x.ndim != 2:
            return super().forward(x)
        c = x.shape[1]
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # 16-bit inputs: stats in float32
        var, mean = torch.var_mean(xf, dim=0, correction=0)  # this process's, (C,)
        n = xf.new_full((1,), float(x.shape[0]))
        local = torch.cat([n, mean * n, (var + mean * mean) * n])  # count, sum, sum of squares
        total = _AllReduceSum.apply(local, self.process_group)  # (1 + 2C), all processes
        count = total[0]
        mean = total[1 : 1 + c] / count
        var = (total[1 + c :] / count - mean * mean).clamp_min(0.0)  # biased, as BN normalises
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / self.num_batches_tracked.item()
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * (count / (count - 1).clamp_min(1.0))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), factor)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> int:
    """Replace every ``nn.BatchNorm1d`` under ``module`` by :class:`SyncBatchNorm1d`
    sharing its parameters and buffers (state-dict keys unchanged); returns how many."""
    count = 0
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            sync = SyncBatchNorm1d(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
                device=child.running_mean.device if child.running_mean is not None else None,
            )
            if child.affine:
                sync.weight, sync.bias = child.weight, child.bias
            if child.track_running_stats:
                sync.running_mean, sync.running_var = child.running_mean, child.running_var
                sync.num_batches_tracked = child.num_batches_tracked
            sync.process_group = process_group
            sync.train(child.training)
            setattr(module, name, sync)
            count += 1
        else:
            count += convert_sync_batchnorm(child, process_group)
    return count
