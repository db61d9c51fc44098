"""STMTPretrainer: self-supervised pretraining (masked vertex modelling + future frame prediction).

Labels in the batches are ignored. The encoder's weights are ``model.encoder.*``
in the checkpoint; ``STMTClassifier(pretrained=<this .ckpt>)`` loads them.
The dataset arguments (``num_classes``, ``class_names``, ``fps``,
``window_s``, ``clip_s``, ``fixed_window``) are only recorded in the checkpoint, so the same CLI links
work for both modules.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from stmt import checkpoint
from stmt.engine.common import (
    adamw_warmup_cosine,
    check_optim_args,
    clip_gradients,
    copy_geodesic,
    prepare_model_for_fit,
    total_steps,
)
from stmt.model.stmt_mae import STMTMAE


class STMTPretrainer(pl.LightningModule):
    """Pretrains an STMT encoder; loss = MVM + ``ffp_weight`` * FFP (see :mod:`stmt.model.stmt_mae`).

    ``compile``: ``torch.compile`` the model for fitting; None = on a CUDA device
    (see :func:`stmt.engine.common.prepare_model_for_fit`, which also makes batch
    norm synchronised under multi-process DDP). Not stored in checkpoints.
    """

    def __init__(
        self,
        arch: str = "stmt_tiny",
        model_args: dict[str, Any] | None = None,
        num_frames: int = 24,
        num_points: int = 256,
        num_classes: int = 0,
        class_names: list[str] | None = None,
        fps: float = 30.0,
        window_s: float = 0.8,
        clip_s: float | None = None,
        fixed_window: bool = False,
        patch_size: int = 16,
        mask_ratio: float = 0.5,
        masking: str = "tube",
        decoder_width: int = 128,
        decoder_depth: int = 1,
        decoder_heads: int = 4,
        ffp_weight: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        compile: bool | None = None,
    ):
        super().__init__()
        check_optim_args(lr, weight_decay, warmup_fraction)
        self.save_hyperparameters(
            checkpoint.hyper_parameters(
                STMTPretrainer,
                arch=arch,
                model_args=model_args,
                num_frames=num_frames,
                num_points=num_points,
                num_classes=num_classes,
                class_names=list(class_names or []),
                fps=float(fps),
                window_s=float(window_s),
                clip_s=None if clip_s is None else float(clip_s),
                fixed_window=bool(fixed_window),
                patch_size=patch_size,
                mask_ratio=mask_ratio,
                masking=masking,
                decoder_width=decoder_width,
                decoder_depth=decoder_depth,
                decoder_heads=decoder_heads,
                ffp_weight=ffp_weight,
                lr=lr,
                weight_decay=weight_decay,
                warmup_fraction=warmup_fraction,
            )
        )
        # the encoder takes the frame and point counts, not the class count
        encoder_args = {
            **checkpoint.model_args(dict(self.hparams)),
            "num_frames": num_frames,
            "num_points": num_points,
        }
        encoder_args.pop("num_classes", None)
        self.model = STMTMAE(
            arch,
            encoder_args,
            patch_size,
            mask_ratio,
            masking,
            decoder_width,
            decoder_depth,
            decoder_heads,
        )
        self.compile_model = compile
        self.register_buffer("geodesic", torch.zeros(num_points, num_points))

    def setup(self, stage: str) -> None:
        copy_geodesic(self)
        if stage == "fit":
            prepare_model_for_fit(self, self.compile_model)

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

    def _losses(self, batch: dict[str, Tensor], split: str) -> Tensor:
        mvm, ffp = self.model(batch["vertices"], self.geodesic)
        loss = mvm + self.hparams.ffp_weight * ffp
        bs = len(batch["vertices"])
        sync = split != "train"
        self.log(f"{split}/mvm", mvm, batch_size=bs, sync_dist=sync)
        self.log(f"{split}/ffp", ffp, batch_size=bs, sync_dist=sync)
        self.log(f"{split}/loss", loss, prog_bar=True, batch_size=bs, sync_dist=sync)
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._losses(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._losses(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._losses(batch, "test")
