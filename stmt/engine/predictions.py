"""``stmt predict``'s one predictions file, from one process or from many (DDP).

Under DDP (``--trainer.strategy ddp``, several GPUs or nodes) each process predicts
the samples its distributed sampler gives it. :func:`save_predictions` gathers every
process's outputs on rank 0 (``torch.distributed.all_gather_object``, every rank
taking part), puts them back in the order of the predict split by the position each
batch carries (``"position"``, :class:`stmt.data.datamodule.CacheClips`), keeps one
row per position (a sampler that pads its last batches with repeated samples, as
``DistributedSampler`` does, gives some twice) and writes ``predictions.csv`` and
``predictions.json`` once (:func:`stmt.engine.reports.write_predictions`), as one
process over the whole split would.
"""

from __future__ import annotations

import numpy as np
import torch.distributed as dist

from stmt.engine import reports


def local_outputs(trainer) -> dict[str, np.ndarray] | None:
    """This process's predict outputs as ``{"probs": (M, C), "label"?: (M,), "position"?:
    (M,)}``, or None when ``predict_step`` returned no ``{"probs": ...}`` batches."""
    outputs = getattr(trainer.predict_loop, "predictions", None) or []
    if outputs and isinstance(outputs[0], list):  # several dataloaders: the first
        outputs = outputs[0]
    batches = [o for o in outputs if isinstance(o, dict) and "probs" in o]
    if not batches:
        return None
    out = {"probs": np.concatenate([b["probs"].float().cpu().numpy() for b in batches])}
    for key in ("label", "position"):
        if all(key in b for b in batches):
            out[key] = np.concatenate([b[key].cpu().numpy() for b in batches])
    return out


def gather(local: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """Every process's :func:`local_outputs` joined (every rank must call this; one
    process: ``local`` as it is). Rows are put in the order of their ``position`` with
    one row per position; without positions, in rank order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        parts = [local]
    else:
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, local)
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    keys = [k for k in parts[0] if all(k in p for p in parts)]
    joined = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    if "position" in joined:
        _, first = np.unique(joined["position"], return_index=True)  # sorted, no repeats
        joined = {k: v[first] for k, v in joined.items()}
    return joined


def save_predictions(trainer, model, datamodule) -> tuple:
    """Write the predict loop's outputs as predictions.csv / .json in the log folder.

    Expects ``predict_step`` to return ``{"probs": (B, C), "label": (B,)?, "position":
    (B,)?}`` per batch (as :class:`~stmt.engine.classifier.ClassificationModule` does);
    returns the two paths on rank 0, or ``()`` (other ranks, another module, no
    predictions). Under DDP the ranks' outputs are gathered first (module docstring)."""
    joined = gather(local_outputs(trainer))
    out_dir = trainer.log_dir or trainer.default_root_dir  # a collective: on every rank
    if joined is None or not trainer.is_global_zero:
        return ()
    probs, labels = joined["probs"], joined.get("label")
    names = list(getattr(getattr(model, "clip", None), "class_names", ()))
    names = names if len(names) == probs.shape[1] else [str(i) for i in range(probs.shape[1])]
    samples = reports.sample_descriptions(datamodule, "predict", len(probs), joined.get("position"))
    ckpt = trainer.ckpt_path
    return reports.write_predictions(
        out_dir, names, probs, labels, samples, checkpoint=None if ckpt is None else str(ckpt)
    )
