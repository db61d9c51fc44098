"""Which score says "unknown" best: an ensemble checkpoint's calibrated top-1 probability
(the rule ``stmt calibrate`` fits) against scores made from its members' disagreement
(benchmarks/README.md, "I don't know").

The members of a deep ensemble tend to disagree on inputs unlike their training data,
so their disagreement is a common out-of-distribution score. Every val and test clip of
the cache (known actions and other actions), cut into the windows ``stmt classify``
cuts, is scored by each member; each score's AUROC of other actions against known
ones is printed for the split and for each source with at least 5 of both.

    python benchmarks/eval_unknown_scores.py --ckpt checkpoints/stmt-realmix.ckpt \\
        --cache cache/realmix
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stmt.data.cache import OTHER_ACTION
from stmt.data.datamodule import STMTDataModule
from stmt.engine.calibration import auroc, score_split, softmax
from stmt.inference import Classifier


class Members(nn.Module):
    """The members' logits side by side: (B, M, C)."""

    def __init__(self, members: nn.ModuleList):
        super().__init__()
        self.members = members

    def forward(self, vertices, geodesic):
        return torch.stack([m(vertices, geodesic) for m in self.members], dim=1)


def entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(-1)


def scores(windows: np.ndarray, temperature: float) -> dict[str, float]:
    """Scores of one clip from its windows' member logits (W, M, C); high = known."""
    member = softmax(windows, temperature)  # (W, M, C)
    mean = softmax(windows.mean(axis=1), temperature).mean(axis=0)  # as classify: (C,)
    top = int(mean.argmax())
    mutual = (entropy(member.mean(axis=1)) - entropy(member).mean(axis=1)).mean()
    return {
        "top-1 probability (shipped rule)": float(mean.max()),
        "- entropy": float(-entropy(mean)),
        "- mutual information": float(-mutual),
        "members agreeing with top-1": float((member.argmax(-1) == top).mean()),
        "top-1 probability - mutual information": float(mean.max() - mutual),
        "lowest member probability of top-1": float(member.mean(axis=0)[:, top].min()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="checkpoints/stmt-realmix.ckpt")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--splits", nargs="*", default=["val", "test"])
    args = ap.parse_args()

    clf = Classifier.from_checkpoint(args.ckpt)
    if not hasattr(clf.model, "members"):
        raise SystemExit(f"{args.ckpt}: one model, not an ensemble (stmt calibrate A B ...)")
    members = SimpleNamespace(
        model=Members(clf.model.members), clip=clf.clip, num_frames=clf.num_frames,
        window_s=clf.window_s, fps=clf.fps, fixed_window=clf.fixed_window, device=clf.device,
    )  # fmt: skip
    dm = STMTDataModule(
        args.cache, num_frames=clf.num_frames, num_workers=0, with_other=True,
        window=clf.fixed_window,
    )  # fmt: skip
    print(f"{args.ckpt}: {len(clf.model.members)} members, temperature {clf.temperature:.3f}")
    for split in args.splits:
        scored = score_split(members, dm, split, None)
        table = [scores(w, clf.temperature) for w in scored.window_logits]
        known, other = scored.labels >= 0, scored.labels == OTHER_ACTION
        src = scored.sources.astype(str)
        parts = [("all", np.ones(len(src), bool))] + [
            (s, src == s)
            for s in np.unique(src)
            if (known & (src == s)).sum() >= 5 and (other & (src == s)).sum() >= 5
        ]
        print(f"\n{split}: {known.sum()} known, {other.sum()} other-action clips; AUROC")
        print("| score | " + " | ".join(name for name, _ in parts) + " |")
        print("|---|" + "---:|" * len(parts))
        for name in table[0]:
            v = np.array([t[name] for t in table])
            cells = [auroc(-v[other & sel], -v[known & sel]) for _, sel in parts]
            print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
