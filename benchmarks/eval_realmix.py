"""Per-source accuracy of classifier checkpoints on a realmix cache (the results table).

``stmt test`` reports one number over a whole split; realmix's test split mixes three
sources (HDM05's held-out performers mm and tr, Bandai-Namco's held-out styles, and the
synthetic set's held-out subjects), and issue 10 asks for each. This script runs each
checkpoint on the cache's test clips exactly as ``stmt test`` does (the DataModule's
evaluation clips: 24 bin-centre frames of the whole sample, or of its centre window for
a checkpoint trained with fixed windows; no augmentation) and prints top-1, top-5 and
top-1-norm (mean per-class top-1) per source, plus a confusion-matrix PNG per source.
``--cut classify`` instead cuts each test sample into the windows ``stmt classify``
would cut a file of its length into (at every window length of the checkpoint, mixed
as classify mixes them) and labels it by the mean of their probabilities: the only
measure for a checkpoint whose members were trained on several window lengths.

A checkpoint's class list may differ from the cache's (the synthetic checkpoint knows 15
of realmix's 18 classes): predictions are mapped by class name; a clip whose true class
the checkpoint does not know counts as wrong in "all" and is left out of "known".

    python benchmarks/eval_realmix.py --cache cache/realmix \
        --ckpt checkpoints/stmt-realmix.ckpt checkpoints/stmt-tiny-synthetic.ckpt \
        --confusion-dir benchmarks/realmix
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def metrics(true: np.ndarray, probs: np.ndarray, n_classes: int) -> dict:
    """top-1, top-5, top-1-norm over clips with a known class (true >= 0), clips with an
    unknown one (true == -1) counted wrong in top1_all."""
    known = true >= 0
    top = np.argsort(-probs, axis=1)
    hit1 = top[:, 0] == true
    hit5 = (top[:, :5] == true[:, None]).any(axis=1)
    per_class = [hit1[true == c].mean() for c in range(n_classes) if (true == c).any()]
    return {
        "clips": len(true),
        "known": int(known.sum()),
        "top1_all": float(hit1.mean()),
        "top1": float(hit1[known].mean()) if known.any() else float("nan"),
        "top5": float(hit5[known].mean()) if known.any() else float("nan"),
        "top1_norm": float(np.mean(per_class)) if per_class else float("nan"),
    }


def confusion_png(true, pred, names, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = sorted(set(true[true >= 0].tolist()) | set(pred.tolist()))
    idx = {c: i for i, c in enumerate(present)}
    m = np.zeros((len(present), len(present)), dtype=int)
    for t, p in zip(true, pred):
        if t >= 0:
            m[idx[t], idx[p]] += 1
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * len(present), 0.8 + 0.45 * len(present)))
    ax.imshow(m / np.maximum(m.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(present)):
        for j in range(len(present)):
            if m[i, j]:
                ax.text(j, i, m[i, j], ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > 0.6 * m[i].sum() else "black")  # fmt: skip
    labels = [names[c] for c in present]
    ax.set_xticks(range(len(present)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(present)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--ckpt", nargs="+", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument(
        "--cut",
        choices=["centre", "classify"],
        default="centre",
        help="centre: one clip per sample, as stmt test; classify: as stmt classify",
    )
    ap.add_argument("--confusion-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    args = ap.parse_args()

    from stmt.data.datamodule import STMTDataModule
    from stmt.engine.calibration import score_split
    from stmt.inference import Classifier

    results = {}
    for ckpt in args.ckpt:
        clf = Classifier.from_checkpoint(ckpt)
        if clf.scales and args.cut == "centre":  # one centre window: one length's members
            raise SystemExit(f"{ckpt}: members of several window lengths; use --cut classify")
        # each checkpoint's clips cut as it was trained: whole samples or fixed windows
        dm = STMTDataModule(
            args.cache, num_workers=0, test_split=args.split, batch_size=64,
            window=clf.fixed_window, window_seconds=clf.window_s,
        )  # fmt: skip
        if clf.num_points != dm.num_points:
            raise SystemExit(f"{ckpt}: N={clf.num_points} but the cache has N={dm.num_points}")
        cache_names = dm.class_names
        if args.cut == "classify":
            scored = score_split(clf, dm, args.split, None)
            probs, sources, labels = scored.probs(clf.temperature), scored.sources, scored.labels
        else:
            ds = dm.dataset("test")
            sources = dm.index.sample_source()[ds.sample_ids]  # bandai, hdm05, kindergator, ...
            geodesic = dm.geodesic.numpy()
            probs = []
            with torch.inference_mode():
                for start in range(0, len(ds), 64):
                    clips, _ = ds.clips(np.arange(start, min(start + 64, len(ds))))
                    probs.append(clf.probabilities(clips.numpy(), geodesic, batch_size=64))
            probs, labels = np.concatenate(probs), ds.label  # (S, C_ckpt)
        to_ckpt = {
            i: clf.class_names.index(n) for i, n in enumerate(cache_names) if n in clf.class_names
        }
        true = np.array([to_ckpt.get(int(c), -1) for c in labels])
        pred = probs.argmax(1)
        row = {}
        for src in ["hdm05", "bandai", "kindergator", "utdmhad", "reactidle", "synthetic", "all"]:
            sel = np.ones(len(true), bool) if src == "all" else sources == src
            if not sel.any():
                continue
            row[src] = metrics(true[sel], probs[sel], len(clf.class_names))
            if args.confusion_dir is not None:
                args.confusion_dir.mkdir(parents=True, exist_ok=True)
                out = args.confusion_dir / f"confusion-{Path(ckpt).stem}-{src}.png"
                confusion_png(true[sel], pred[sel], clf.class_names, out,
                              f"{Path(ckpt).name}: {src} {args.split} ({sel.sum()} clips)")  # fmt: skip
        results[ckpt] = row
        for src, m in row.items():
            print(f"{Path(ckpt).name:32s} {src:10s} clips {m['clips']:4d} (known {m['known']:4d})  "
                  f"top-1 {m['top1']:.3f}  top-5 {m['top5']:.3f}  top-1-norm {m['top1_norm']:.3f}  "
                  f"top-1 all {m['top1_all']:.3f}")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
