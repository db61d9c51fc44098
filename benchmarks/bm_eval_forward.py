"""The model's forward in evaluation (``stmt classify``, ``stmt test``): the grouping
levels' max taken before batch norm, the ReLU and the centres' term
(``stmt.ops.grouping._max_then_norm_relu``) against the three steps on every neighbour
(the path before it), in one run, on the same windows.

The windows: a shipped checkpoint's windows of one recorded take (default: the Bandai
wave in ``datasets/samples``), repeated to ``--batch`` windows; the model in evaluation
under ``torch.inference_mode`` as ``stmt classify`` runs it. The two paths take turns,
one forward each (``--pairs`` pairs): the median time of each and the median of the
pairs' ratios (the shared machine's speed drifts within seconds), and the logits of
both compared bit for bit.

    python benchmarks/bm_eval_forward.py [--ckpt CKPT] [--file TAKE] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from stmt.inference import Classifier
from stmt.ops import dispatch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "datasets" / "samples" / "dataset-2_wave-both-hands_youthful_001.bvh"


def windows(clf: Classifier, file: Path, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(batch, T, N, 3): the windows of ``file`` repeated; and its (N, N) geodesic."""
    item = clf.read(file)
    reps = -(-batch // len(item.clips))
    return np.concatenate([item.clips] * reps)[:batch], np.asarray(item.template.geodesic)


def forward(clf: Classifier, x: torch.Tensor, geo: torch.Tensor, pooled: bool):
    """Seconds of one forward, and the logits, with the pooled path on or off."""
    original = dispatch.plain_batchnorm_inference
    if not pooled:
        dispatch.plain_batchnorm_inference = lambda norm: False
    try:
        with torch.inference_mode():
            t = time.perf_counter()
            out = clf.model(x, geo)
            return time.perf_counter() - t, out
    finally:
        dispatch.plain_batchnorm_inference = original


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, default=ROOT / "checkpoints" / "stmt-realmix.ckpt")
    p.add_argument("--file", type=Path, default=SAMPLE, help="a MoCap take")
    p.add_argument("--batch", type=int, default=16, help="windows per forward (classify's)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--pairs", type=int, default=20, help="forwards of each path, in turns")
    a = p.parse_args()
    clf = Classifier.from_checkpoint(a.ckpt, device="cpu")
    clips, geodesic = windows(clf, a.file, a.batch)
    x, geo = torch.as_tensor(clips), torch.as_tensor(geodesic)
    print(f"{a.ckpt.name} ({clf.arch}): {a.batch} windows x {clf.num_frames} frames x "
          f"{clf.num_points} points, torch {torch.__version__}")  # fmt: skip
    print(
        "| threads | three steps, ms (median) | pooled first, ms (median) | speed-up "
        "(median of the pairs') | logits equal |"
    )
    print("|---|---:|---:|---:|---|")
    for threads in a.threads:
        torch.set_num_threads(threads)
        forward(clf, x, geo, False), forward(clf, x, geo, True)  # warm
        before, after, equal = [], [], True
        for _ in range(a.pairs):  # the paths take turns, one forward each
            t0, ref = forward(clf, x, geo, False)
            t1, got = forward(clf, x, geo, True)
            before.append(t0)
            after.append(t1)
            equal &= torch.equal(ref, got)
        b, f = statistics.median(before), statistics.median(after)
        ratio = statistics.median(x / y for x, y in zip(before, after))
        print(f"| {threads} | {b * 1e3:.0f} | {f * 1e3:.0f} | {ratio:.2f}x | {equal} |")


if __name__ == "__main__":
    main()
