"""Two checkpoints of different window lengths, their clip probabilities averaged.

2.5 s windows helped HDM05's 1-3 s clips and the cross-source number but cost Bandai's
held-out raises (`benchmarks/README.md`, "Recipe decisions on the full data"). This
script measures the middle way before any code is written for it: every clip of a split
cut into each checkpoint's own windows, as ``stmt classify`` cuts a file
(:func:`stmt.engine.calibration.score_split`), labelled by each checkpoint at its own
temperature, and the two clip probabilities averaged with weight ``w`` on the second:

    python benchmarks/eval_window_mix.py --cache cache/realmix \\
        --ckpt checkpoints/stmt-realmix.ckpt runs/w25/ensemble.ckpt --split val test

One JSON line per split and weight: top-1 over the known clips, and per source. Decide
on the validation split; the test split is for reporting.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from eval_test_time_views import load, top1_by_source  # beside this file

from stmt.engine.calibration import score_split


def clip_probs(ckpt: str, cache: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, sources, probs (S, C))`` of every clip of ``split``, as classify labels it."""
    clf, dm = load(ckpt, cache)
    scored = score_split(clf, dm, split, None)
    return scored.labels, scored.sources.astype(str), scored.probs(clf.temperature)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--ckpt", nargs=2, required=True, metavar=("FIRST", "SECOND"))
    ap.add_argument("--split", nargs="*", default=["val"])
    ap.add_argument("--weights", nargs="*", type=float, default=[0, 0.25, 0.5, 0.75, 1])
    args = ap.parse_args()

    for split in args.split:
        (labels, sources, first), (labels2, sources2, second) = (
            clip_probs(c, args.cache, split) for c in args.ckpt
        )
        if not (np.array_equal(labels, labels2) and np.array_equal(sources, sources2)):
            raise SystemExit("the two checkpoints were scored on different clips")
        known = labels >= 0
        for w in args.weights:
            hit = ((1 - w) * first + w * second).argmax(axis=1) == labels
            row = {"split": split, "w_second": w, **top1_by_source(hit[known], sources[known])}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
