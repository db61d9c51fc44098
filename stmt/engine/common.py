"""Helpers shared by the Lightning modules: optimiser, schedule, gradient clipping, set-up."""

from __future__ import annotations

import math

import torch
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities import GradClipAlgorithmType
from torch import nn

from stmt.engine.sync_batchnorm import convert_sync_batchnorm


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """The trainable parameters in two groups: decayed, and not (biases, norms, embeddings)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or name.endswith("_embed") else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def adamw(groups, lr: float, fused: bool = True) -> torch.optim.AdamW:
    """``torch.optim.AdamW``, fused (one kernel over all parameters) if asked and torch has
    the kernel for the parameters' device and dtype, else the default implementation.

    The fused update is the same arithmetic as the default one (equal to float32 rounding).
    """
    if fused:
        try:
            return torch.optim.AdamW(groups, lr=lr, fused=True)
        except RuntimeError:  # e.g. a device without the fused kernel
            pass
    return torch.optim.AdamW(groups, lr=lr)


def grad_scaler(trainer):
    """The float16 gradient scaler of the trainer's precision, or None (float32, bfloat16)."""
    return getattr(getattr(trainer, "precision_plugin", None), "scaler", None)


def use_fused_adamw(device: torch.device | str, scaled: bool = False) -> bool:
    """Whether ``stmt fit`` takes the fused AdamW update: on the CPU, without a float16
    gradient scaler (Lightning unscales the gradients before clipping them, which it cannot
    do for an optimiser that unscales inside its step).

    Measured (``benchmarks/bm_optimizer.py``): the optimiser step of stmt_base on 2 CPU
    cores 154 -> 30 ms. On an H200 the fused update's kernels took 0.78 -> 0.26 ms of a
    compiled stmt_base step, but the one step measurement with it was slower (32.2 vs
    28.2 ms): until a GPU run shows it pays (``bm_train_step.py --modes compiled
    compiled-fused``), CUDA keeps the default update.
    """
    return torch.device(device).type == "cpu" and not scaled


def check_optim_args(lr: float, weight_decay: float, warmup_fraction: float) -> None:
    """Reject what :func:`adamw_warmup_cosine` cannot use when the module is built, not at
    the first step of a run (one ``ValueError`` naming the init arg)."""
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")


def adamw_warmup_cosine(
    module: nn.Module, lr: float, weight_decay: float, warmup_fraction: float, total_steps: int
) -> dict:
    """AdamW (no decay on biases, norms, embeddings) with linear warm-up then cosine decay to 0.

    The update is fused where :func:`use_fused_adamw` says.

    Returns Lightning's ``configure_optimizers`` dict, the schedule stepping every batch.
    """
    groups = param_groups(module, weight_decay)
    device = next(module.parameters()).device
    fused = use_fused_adamw(device, scaled=grad_scaler(module.trainer) is not None)
    optimizer = adamw(groups, lr, fused=fused)
    total = max(1, int(total_steps))
    warmup = int(warmup_fraction * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def clip_gradients(module, optimizer, clip_val: float | None, algorithm: str | None) -> None:
    """Lightning's gradient clipping (``trainer.gradient_clip_val``), also for a fused optimiser.

    Lightning refuses to clip under mixed precision for an optimiser that unscales
    gradients inside its step, as fused AdamW does: with a float16 gradient scaler the
    gradients would still be scaled when clipped. Without a scaler (bfloat16) there is
    nothing to unscale, and the clipping is precision's own, the same as for any
    optimiser. Called from the modules' ``configure_gradient_clipping``.
    """
    if clip_val and optimizer.defaults.get("fused") and grad_scaler(module.trainer) is None:
        # as LightningModule.clip_gradients reads the algorithm: None is the trainer's, else norm
        algorithm = algorithm or module.trainer.gradient_clip_algorithm or "norm"
        algorithm = GradClipAlgorithmType(algorithm.lower())
        Precision.clip_gradients(module.trainer.precision_plugin, optimizer, clip_val, algorithm)
    else:
        module.clip_gradients(optimizer, clip_val, algorithm)


def total_steps(trainer) -> int:
    """Optimiser steps of the whole run, as Lightning estimates them (>= 1)."""
    steps = trainer.estimated_stepping_batches
    return 1 if steps is None or math.isinf(steps) else max(1, int(steps))


def copy_geodesic(module) -> None:
    """Copy the data module's template geodesic matrix into ``module.geodesic`` (a saved buffer).

    Called from ``setup``; without a data module (or one without ``geodesic``)
    the buffer keeps what it holds (e.g. the values loaded from a checkpoint).
    """
    trainer = module._trainer
    geodesic = getattr(getattr(trainer, "datamodule", None), "geodesic", None)
    if geodesic is None:
        return
    geodesic = torch.as_tensor(geodesic, dtype=torch.float32)
    if geodesic.shape != module.geodesic.shape:
        raise ValueError(
            f"the data module's geodesic matrix is {tuple(geodesic.shape)}, the model expects "
            f"{tuple(module.geodesic.shape)} (num_points mismatch)"
        )
    module.geodesic.copy_(geodesic)


def prepare_model_for_fit(module, compile_model: bool | None) -> None:
    """Before fitting: synchronised batch norm under multi-process DDP, then ``torch.compile``.

    ``module.model`` is changed in place, keeping its state-dict keys (the
    checkpoint format): batch norm becomes
    :class:`~stmt.engine.sync_batchnorm.SyncBatchNorm1d` when the trainer's
    strategy is DDP with more than one process, and ``module.model.compile()``
    runs when ``compile_model`` is True, or None on a CUDA device (compiling
    takes about a minute; on the CPU it is off unless asked for).
    """
    trainer = module._trainer
    if trainer is None:
        return
    if isinstance(trainer.strategy, DDPStrategy) and trainer.world_size > 1:
        convert_sync_batchnorm(module.model)
    if compile_model is None:
        compile_model = trainer.strategy.root_device.type == "cuda"
    if compile_model:
        module.model.compile()
