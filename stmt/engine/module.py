"""What the two Lightning modules share (:class:`STMTModule`): the clip settings, the
template's geodesic matrix, the optimiser and its schedule, gradient clipping, the
set-up for fitting and the checkpoint stamp.

:class:`~stmt.engine.classifier.ClassificationModule` trains a classifier,
:class:`~stmt.engine.pretrainer.PretrainingModule` pretrains an encoder; each adds its
model and its steps.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from stmt import checkpoint
from stmt.clip import ClipSettings
from stmt.engine.common import (
    adamw_warmup_cosine,
    check_optim_args,
    clip_gradients,
    copy_geodesic,
    prepare_model_for_fit,
    total_steps,
)


class STMTModule(pl.LightningModule):
    """A Lightning module of an STMT model (a base: subclasses build ``self.model``).

    Args:
        clip: how the data's clips are made (:class:`~stmt.clip.ClipSettings`), linked
            from the data module by the CLI and kept in the checkpoint for inference.
        lr, weight_decay, warmup_fraction: AdamW with linear warm-up over that share of
            all steps, then cosine decay (:func:`stmt.engine.common.adamw_warmup_cosine`).
        compile: ``torch.compile`` the model for fitting; None = on a CUDA device, off
            elsewhere (:func:`stmt.engine.common.prepare_model_for_fit`, which also makes
            batch norm synchronised under multi-process DDP). Not stored in checkpoints.
    """

    def __init__(
        self,
        clip: ClipSettings | dict,
        lr: float,
        weight_decay: float,
        warmup_fraction: float,
        compile: bool | None,
    ):
        super().__init__()
        self.clip = clip if isinstance(clip, ClipSettings) else ClipSettings(**clip)
        check_optim_args(lr, weight_decay, warmup_fraction)
        self.compile_model = compile
        n = self.clip.num_points
        self.register_buffer("geodesic", torch.zeros(n, n))  # the data's, copied in setup

    def save_hyperparameters_of(self, **values: Any) -> None:
        """Save the constructor arguments as the checkpoint stores them (plain data, the
        clip settings among them: :func:`stmt.checkpoint.hyper_parameters`)."""
        self.save_hyperparameters(checkpoint.hyper_parameters(type(self), clip=self.clip, **values))

    def setup(self, stage: str) -> None:
        copy_geodesic(self)
        if stage == "fit":
            self.before_fit()
            prepare_model_for_fit(self, self.compile_model)

    def before_fit(self) -> None:
        """What a subclass does first when fitting starts (e.g. load pretrained weights)."""

    def on_save_checkpoint(self, ckpt: dict[str, Any]) -> None:
        checkpoint.mark(ckpt)

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_warmup_cosine(
            self, hp.lr, hp.weight_decay, hp.warmup_fraction, total_steps(self.trainer)
        )

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)
