"""ClassificationModule: supervised training and evaluation of an STMT model (Lightning).

The checkpoint alone rebuilds the model; its layout is written and read by
:mod:`stmt.checkpoint` (hyper-parameters once, as plain data, the clip settings
among them; ``model.*`` weights; the training template's ``geodesic`` buffer). A
checkpoint that does not fit the data module (another ``num_points``,
``num_frames`` or class list) is refused in one line before its weights load.
Labelling files with a trained checkpoint is :class:`stmt.inference.Classifier`'s.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from stmt import checkpoint
from stmt.clip import ClipSettings
from stmt.data.cache import OTHER_ACTION
from stmt.engine.module import STMTModule
from stmt.errors import InputError
from stmt.model.stmt import STMT, build_model


def load_pretrained_encoder(model: STMT, path: str | Path) -> int:
    """Load a pretraining checkpoint's encoder into ``model``, strictly; returns
    the number of tensors loaded (see :func:`pretrained_encoder`)."""
    encoder = pretrained_encoder(model, path)
    model.load_state_dict(encoder, strict=False)  # exactly the head is left as initialised
    return len(encoder)


def pretrained_encoder(model: STMT, path: str | Path) -> dict[str, Any]:
    """The encoder weights of a pretraining checkpoint, checked against ``model``.

    The only keys allowed to be missing are those of the classification head
    (``head.*``), which pretraining does not have; any other missing key, any
    unexpected key or any shape mismatch is an :class:`InputError`.
    """
    path = Path(path)
    encoder = checkpoint.encoder_weights(path)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in encoder and not k.startswith("head."))
    unexpected = sorted(k for k in encoder if k not in own)
    wrong_shape = sorted(k for k in encoder if k in own and encoder[k].shape != own[k].shape)
    if missing or unexpected or wrong_shape:

        def few(keys):
            return ", ".join(keys[:4]) + (" ..." if len(keys) > 4 else "") or "none"

        raise InputError(
            path,
            f"pretrained encoder does not match the model (same arch and model_args needed): "
            f"missing {len(missing)} ({few(missing)}), unexpected {len(unexpected)} ({few(unexpected)}), "
            f"wrong shape {len(wrong_shape)} ({few(wrong_shape)})",
        )
    return encoder


class ClassificationModule(STMTModule):
    """Action classification with an STMT model (a Lightning module).

    Args:
        clip: the data's clip settings (:class:`~stmt.clip.ClipSettings`: the class
            names, frames and points per clip, how clips were cut), linked from the data
            module by the CLI and kept in the checkpoint for inference.
        arch: model size, ``"stmt_tiny"`` or ``"stmt_base"``.
        model_args: constructor overrides for the model (see ``stmt.model.stmt.STMT``).
        lr, weight_decay, warmup_fraction: AdamW with linear warm-up over that
            share of all steps, then cosine decay.
        label_smoothing: cross-entropy label smoothing.
        other_weight: weight of the outlier-exposure loss on samples of actions outside
            the classes (label -2, ``STMTDataModule(with_other=True)``): the cross-entropy
            to the uniform distribution, which teaches the model to spread its
            probability, not to name a class, on motion none of its classes describes
            (Hendrycks et al., ICLR 2019). 0: such samples are ignored in training.
        calibration: what ``stmt calibrate`` fitted after training, kept in the
            checkpoint for inference (:mod:`stmt.engine.calibration`): the softmax
            temperature and the "unknown" threshold on the calibrated top-1
            probability, with the numbers they were chosen on. None: uncalibrated
            (temperature 1, no "unknown").
        pretrained: a pretraining checkpoint whose encoder initialises the
            model when fitting starts (only the head stays new; see
            :func:`load_pretrained_encoder`).
        compile: ``torch.compile`` the model for fitting (:class:`~stmt.engine.module.STMTModule`).
    """

    def __init__(
        self,
        clip: ClipSettings,
        arch: str = "stmt_tiny",
        model_args: dict[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        label_smoothing: float = 0.0,
        other_weight: float = 0.0,
        calibration: dict[str, Any] | None = None,
        pretrained: str | None = None,
        compile: bool | None = None,
    ):
        super().__init__(clip, lr, weight_decay, warmup_fraction, compile)
        num_classes = self.clip.num_classes
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got {num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if not (other_weight >= 0.0 and other_weight < float("inf")):
            raise ValueError(f"other_weight must be a finite number >= 0, got {other_weight}")
        self.save_hyperparameters_of(
            arch=arch,
            model_args=model_args,
            lr=lr,
            weight_decay=weight_decay,
            warmup_fraction=warmup_fraction,
            label_smoothing=label_smoothing,
            other_weight=float(other_weight),
            calibration=calibration,
            pretrained=None if pretrained is None else str(pretrained),
        )
        self.model = build_model(arch, **checkpoint.model_args(dict(self.hparams)))
        top5 = min(5, num_classes)
        for split in ("val", "test"):
            # top-1 and top-5 over all clips (micro); top-1-norm = mean per-class top-1 (BABEL)
            setattr(self, f"{split}_top1", MulticlassAccuracy(num_classes, average="micro"))
            setattr(
                self, f"{split}_top5", MulticlassAccuracy(num_classes, top_k=top5, average="micro")
            )
            setattr(self, f"{split}_top1_norm", MulticlassAccuracy(num_classes, average="macro"))
        self.train_top1 = MulticlassAccuracy(num_classes, average="micro")
        self.test_confmat = MulticlassConfusionMatrix(num_classes)

    # -- set-up

    def before_fit(self) -> None:
        if self.hparams.pretrained:
            n = load_pretrained_encoder(self.model, self.hparams.pretrained)
            if self._trainer is None or self._trainer.is_global_zero:
                print(
                    f"loaded pretrained encoder from {self.hparams.pretrained} "
                    f"({n} tensors; the classification head starts new)",
                    flush=True,
                )

    def on_load_checkpoint(self, ckpt: dict[str, Any]) -> None:
        """Before the weights load: say plainly when the checkpoint does not fit the data."""
        trainer = self._trainer
        checkpoint.check_fits_data(
            ckpt.get("hyper_parameters") or {},
            self.clip,
            getattr(trainer, "ckpt_path", None),
            getattr(getattr(trainer, "datamodule", None), "cache", None),
        )

    # -- steps

    def forward(self, vertices: Tensor) -> Tensor:
        """(B, T, N, 3) normalised clips -> logits (B, num_classes)."""
        return self.model(vertices, self.geodesic)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch["vertices"])
        label = batch["label"]
        known = label >= 0
        loss = (
            F.cross_entropy(
                logits[known], label[known], label_smoothing=self.hparams.label_smoothing
            )
            if bool(known.any())
            else logits.sum() * 0.0  # a batch of other actions only
        )
        other = label == OTHER_ACTION
        if self.hparams.other_weight > 0 and bool(other.any()):
            # cross-entropy to the uniform distribution: mean over classes of -log p
            uniform = -F.log_softmax(logits[other].float(), dim=-1).mean(dim=-1).mean()
            loss = loss + self.hparams.other_weight * uniform
            self.log("train/other_loss", uniform, batch_size=int(other.sum()))
        self.train_top1(logits[known], label[known])
        bs = int(known.sum())
        self.log("train/loss", loss, prog_bar=True, batch_size=len(label))
        self.log("train/top1", self.train_top1, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def _evaluate(self, batch: dict[str, Tensor], split: str) -> Tensor:
        logits = self(batch["vertices"])
        label = batch["label"]
        known = label >= 0  # samples of other actions count in no class metric
        logits, label = logits[known], label[known]
        bs = len(label)
        if bs == 0:
            return logits
        self.log(f"{split}/loss", F.cross_entropy(logits, label), sync_dist=True, batch_size=bs)
        for name in ("top1", "top5", "top1_norm"):
            metric = getattr(self, f"{split}_{name}")
            metric(logits, label)
            self.log(f"{split}/{name}", metric, prog_bar=name == "top1", batch_size=bs)
        return logits

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits = self._evaluate(batch, "test")
        self.test_confmat.update(logits, batch["label"][batch["label"] >= 0])

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        probs = self(batch["vertices"]).float().softmax(dim=-1)
        out = {"probs": probs, "pred": probs.argmax(dim=-1)}
        for key in ("label", "position"):  # position: the sample's, for DDP's gathering
            if key in batch:
                out[key] = batch[key]
        return out

    # -- confusion matrix

    def on_test_epoch_end(self) -> None:
        matrix = self.test_confmat.compute().cpu()  # (C, C) rows = true, columns = predicted
        self.test_confmat.reset()
        if self.trainer.is_global_zero:
            out_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
            # kept for the end-of-test summary (stmt.engine.reports.summary_after_test)
            self.last_test_confusion = matrix.numpy()
            self.last_test_files = save_confusion_matrix(
                matrix, list(self.clip.class_names), out_dir
            )


def save_confusion_matrix(
    matrix: Tensor, class_names: list[str], out_dir: Path
) -> tuple[Path, Path]:
    """Write ``confusion_matrix.csv`` (counts) and ``confusion_matrix.png`` (row-normalised)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "confusion_matrix.csv", out_dir / "confusion_matrix.png"
    tmp = csv_path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, matrix.tolist()):
            writer.writerow([name, *row])
    os.replace(tmp, csv_path)

    counts = matrix.float()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(class_names)
    size = min(4 + 0.25 * n, 30)
    fig = Figure(figsize=(size, size))  # drawn by Agg, without pyplot's state
    ax = fig.subplots()
    im = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=max(4, 10 - n // 15))
    ax.set_yticks(range(n), class_names, fontsize=max(4, 10 - n // 15))
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, png_path)
    return csv_path, png_path


# the class's name in configs (``class_path``) and checkpoints written before issue 27
STMTClassifier = ClassificationModule
