"""PretrainingModule: self-supervised pretraining (masked vertex modelling + future frame
prediction), a Lightning module.

Labels in the batches are ignored. The encoder's weights are ``model.encoder.*``
in the checkpoint; ``ClassificationModule(pretrained=<this .ckpt>)`` loads them.
The clip settings are only recorded in the checkpoint (the encoder takes their frame
and point counts), so the same CLI link works for both modules.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from stmt import checkpoint
from stmt.clip import ClipSettings
from stmt.engine.module import STMTModule
from stmt.model.stmt_mae import STMTMAE


class PretrainingModule(STMTModule):
    """Pretrains an STMT encoder (a Lightning module); loss = MVM + ``ffp_weight`` * FFP
    (see :mod:`stmt.model.stmt_mae`).

    ``clip``, ``lr``, ``weight_decay``, ``warmup_fraction``, ``compile``: as
    :class:`~stmt.engine.module.STMTModule`'s (the clip settings are recorded, so the
    CLI links the same data module as for the classifier); the others are the
    pretraining model's (:class:`~stmt.model.stmt_mae.STMTMAE`).
    """

    def __init__(
        self,
        clip: ClipSettings,
        arch: str = "stmt_tiny",
        model_args: dict[str, Any] | None = None,
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
        super().__init__(clip, lr, weight_decay, warmup_fraction, compile)
        decoder = {"patch_size": patch_size, "mask_ratio": mask_ratio, "masking": masking,
                   "decoder_width": decoder_width, "decoder_depth": decoder_depth,
                   "decoder_heads": decoder_heads}  # fmt: skip
        self.save_hyperparameters_of(
            arch=arch, model_args=model_args, **decoder, ffp_weight=ffp_weight, lr=lr,
            weight_decay=weight_decay, warmup_fraction=warmup_fraction,
        )  # fmt: skip
        # the encoder takes the frame and point counts, not the class count
        encoder_args = checkpoint.model_args(dict(self.hparams))
        encoder_args.pop("num_classes", None)
        self.model = STMTMAE(arch, encoder_args, **decoder)

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


# the class's name in configs (``class_path``) and checkpoints written before issue 27
STMTPretrainer = PretrainingModule
