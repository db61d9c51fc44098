"""What ``stmt fit | test | predict`` leave behind and print at the end.

- :func:`write_predictions`: ``predictions.csv`` and ``predictions.json`` of a
  ``stmt predict`` run (one row per sample: true label where known, top-k).
- :func:`training_curves`: a PNG of the losses and accuracies in ``metrics.csv``.
- :func:`per_class_table`: per-class accuracy from a confusion matrix.
- :func:`summary_after_fit` / :func:`summary_after_test`: the lines printed at the end.

Files are written atomically (:mod:`stmt.fileio`); matplotlib (Agg) is imported
only when a picture is drawn.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from stmt.fileio import atomic_text, atomic_write

# --------------------------------------------------------------------------- predictions


def sample_descriptions(
    datamodule: Any, stage: str, count: int, positions: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """``{"sample", "sequence", "start_s", "end_s"}`` of the ``count`` samples a stage read
    (``positions``: where each is in the stage's dataset; default: all, in order).

    Uses the cache index of :class:`stmt.data.datamodule.STMTDataModule`; for any
    other data module the sample is its position in the (unshuffled) loader.
    """
    index = getattr(datamodule, "index", None)
    dataset = getattr(datamodule, "dataset", None)
    ids = None
    if index is not None and callable(dataset):  # STMTDataModule: the loader's sample ids
        ids = getattr(dataset(stage), "sample_ids", None)
        if ids is not None and positions is not None and len(positions) == count:
            ids = ids[np.asarray(positions, dtype=np.int64)]
    if index is None or ids is None or len(ids) != count:
        return [{"sample": i} for i in range(count)]
    sources = list(index.meta.get("sequences", {}).get("source", []))
    fps = float(index.fps)
    out = []
    for i in ids.tolist():
        seq = int(index.sample_seq[i])
        start = int(index.sample_start[i])
        out.append(
            {
                "sample": int(i),
                "sequence": sources[seq] if seq < len(sources) else str(seq),
                "start_s": round(start / fps, 4),
                "end_s": round((start + int(index.sample_length[i])) / fps, 4),
            }
        )
    return out


def write_predictions(
    out_dir: str | Path,
    class_names: Sequence[str],
    probs: np.ndarray,
    labels: np.ndarray | None,
    samples: list[dict[str, Any]],
    top_k: int = 5,
    checkpoint: str | None = None,
) -> tuple[Path, Path]:
    """Write ``predictions.csv`` and ``predictions.json`` into ``out_dir``.

    Args:
        probs: (M, C) softmax probabilities, one row per sample.
        labels: (M,) true class indices; None or negative where unknown.
        samples: M dicts describing the samples (see :func:`sample_descriptions`).

    CSV columns: the sample's keys, ``true_label`` (empty when unknown),
    ``label, prob`` (top-1), then ``label_2, prob_2, ... label_k, prob_k``.
    JSON: ``{"checkpoint", "classes", "top_k", "predictions": [{..sample..,
    "true_label", "top_k": [{"label", "prob"}, ...]}]}``.
    """
    out_dir = Path(out_dir)
    names = list(class_names)
    probs = np.asarray(probs, dtype=np.float64)
    k = max(1, min(int(top_k), len(names)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # (M, k)
    records = []
    for m, sample in enumerate(samples):
        true = None
        if labels is not None and int(labels[m]) >= 0:
            true = names[int(labels[m])]
        ranked = [{"label": names[c], "prob": float(probs[m, c])} for c in order[m]]
        records.append({**sample, "true_label": true, "top_k": ranked})

    keys = list(samples[0]) if samples else ["sample"]
    header = [*keys, "true_label", "label", "prob"]
    for i in range(2, k + 1):
        header += [f"label_{i}", f"prob_{i}"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in records:
        row = [r.get(key, "") for key in keys] + [r["true_label"] or ""]
        for item in r["top_k"]:
            row += [item["label"], f"{item['prob']:.6f}"]
        writer.writerow(row)
    csv_path, json_path = out_dir / "predictions.csv", out_dir / "predictions.json"
    atomic_text(csv_path, buf.getvalue())
    doc = {"checkpoint": checkpoint, "classes": names, "top_k": k, "predictions": records}
    atomic_text(json_path, json.dumps(doc, indent=2) + "\n")
    return csv_path, json_path


# --------------------------------------------------------------------------- training curves


def read_metrics(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """``metrics.csv`` of a CSVLogger as ``{metric: [(step, value), ...]}`` (empty cells skipped)."""
    series: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = row.get("step", "")
            if step in ("", None):
                continue
            for key, value in row.items():
                if key in ("step", "epoch") or value in ("", None):
                    continue
                try:
                    v = float(value)
                except ValueError:
                    continue
                if math.isfinite(v):
                    series.setdefault(key, []).append((float(step), v))
    return series


def training_curves(metrics_csv: str | Path, png: str | Path) -> Path | None:
    """Draw the logged losses (left) and accuracies (right) against the step.

    Returns the PNG path, or None when ``metrics.csv`` holds no loss or accuracy.
    """
    series = read_metrics(metrics_csv)
    losses = {k: v for k, v in series.items() if k.endswith(("loss", "/mvm", "/ffp"))}
    accuracies = {k: v for k, v in series.items() if "top1" in k or "top5" in k}
    if not losses and not accuracies:
        return None
    panels = [(t, s) for t, s in (("loss", losses), ("accuracy", accuracies)) if s]
    fig = Figure(figsize=(6 * len(panels), 4))  # drawn by Agg, without pyplot's state
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, group) in zip(axes[0], panels):
        for name, points in sorted(group.items()):
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, ms=3, label=name)
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = Path(png)
    with atomic_write(png) as f:
        fig.savefig(f, format="png", dpi=100)
    return png


# --------------------------------------------------------------------------- tables


def per_class_table(matrix: np.ndarray, class_names: Sequence[str]) -> str:
    """Per-class accuracy (recall) of a confusion matrix (rows true, columns predicted).

    Classes without a clip in the matrix are left out and counted on the last line."""
    m = np.asarray(matrix, dtype=np.int64)
    totals, correct = m.sum(axis=1), np.diag(m)
    seen = np.nonzero(totals > 0)[0]
    width = max([len("mean over classes"), *(len(class_names[i]) for i in seen)])
    lines = [f"{'class':<{width}}  {'correct':>7}  {'clips':>5}  accuracy"]
    for i in seen:
        acc = 100.0 * correct[i] / totals[i]
        lines.append(f"{class_names[i]:<{width}}  {correct[i]:>7}  {totals[i]:>5}  {acc:6.2f} %")
    if len(seen):
        mean = 100.0 * np.mean(correct[seen] / totals[seen])
        lines.append(f"{'mean over classes':<{width}}  {'':>7}  {'':>5}  {mean:6.2f} %")
    if len(seen) < len(class_names):
        lines.append(f"({len(class_names) - len(seen)} classes without test clips not shown)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- end-of-run summaries


def shown(path: str | Path) -> str:
    """A path as printed: relative to the current folder when under it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def metrics_csv_of(trainer) -> Path | None:
    """The ``metrics.csv`` the trainer's CSVLogger wrote, if any."""
    for logger in getattr(trainer, "loggers", []) or []:
        log_dir = getattr(logger, "log_dir", None)
        if log_dir and (Path(log_dir) / "metrics.csv").is_file():
            return Path(log_dir) / "metrics.csv"
    return None


def checkpoint_paths(trainer) -> list[tuple[str, Path]]:
    """``[("best", path), ("last", path)]`` of the trainer's ModelCheckpoint callbacks, deduplicated."""
    found: list[tuple[str, Path]] = []
    for cb in getattr(trainer, "checkpoint_callbacks", []) or []:
        best = getattr(cb, "best_model_path", "")
        if best and getattr(cb, "monitor", None):
            score = getattr(cb, "best_model_score", None)
            tag = f"best ({cb.monitor} {float(score):.4f})" if score is not None else "best"
            found.append((tag, Path(best)))
        last = getattr(cb, "last_model_path", "")
        if last:
            found.append(("last", Path(last)))
        elif best and not getattr(cb, "monitor", None):
            found.append(("latest", Path(best)))
    seen, out = set(), []
    for tag, path in found:
        if path not in seen and path.is_file():
            seen.add(path)
            out.append((tag, path))
    return out


def summary_after_fit(trainer) -> list[str]:
    """Where a fit run put things; draws the training-curve PNG beside ``metrics.csv``."""
    lines = [f"{tag + ' checkpoint:':<28} {shown(p)}" for tag, p in checkpoint_paths(trainer)]
    metrics = metrics_csv_of(trainer)
    if metrics is not None:
        lines.append(f"{'metrics:':<28} {shown(metrics)}")
        png = training_curves(metrics, metrics.parent / "training_curves.png")
        if png is not None:
            lines.append(f"{'training curves:':<28} {shown(png)}")
    return lines


def summary_after_test(trainer, module) -> list[str]:
    """The per-class table and where the test's confusion matrix and metrics went."""
    lines: list[str] = []
    matrix = getattr(module, "last_test_confusion", None)
    names = list(getattr(getattr(module, "clip", None), "class_names", ()))
    if matrix is not None and names:
        lines += ["per-class accuracy (test)", per_class_table(matrix, names), ""]
    files = getattr(module, "last_test_files", ()) or ()
    for tag, path in zip(("confusion matrix (counts):", "confusion matrix (picture):"), files):
        lines.append(f"{tag:<28} {shown(path)}")
    metrics = metrics_csv_of(trainer)
    if metrics is not None:
        lines.append(f"{'metrics:':<28} {shown(metrics)}")
    return lines
