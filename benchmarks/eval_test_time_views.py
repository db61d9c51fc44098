"""Test-time views: a checkpoint's logits averaged over mirrored and turned copies of each window.

Training mirrors half the clips left-right and turns them to any heading, so a model
might be steadier if each window were also labelled mirrored and turned and the logits
averaged (the "flip test" of pose estimation). This script measures it before anything
ships: every clip of a split cut into the windows ``stmt classify`` cuts a file into
(:func:`stmt.engine.calibration.score_split`), labelled by the mean of its window
probabilities at the checkpoint's temperature, top-1 over the known clips per source,
once per view set:

    none          the windows as they are (what ``stmt classify`` does)
    mirror        + each window mirrored left-right (x -> -x)
    turn4         each window at 0, 90, 180 and 270 degrees about the vertical
    turn4-mirror  both: 8 views

    python benchmarks/eval_test_time_views.py --cache cache/realmix \\
        --ckpt checkpoints/stmt-realmix.ckpt --split val --views none mirror

Decide on the validation split; the test split is for reporting.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from stmt.data.datamodule import STMTDataModule
from stmt.engine.calibration import score_split
from stmt.inference import Classifier

VIEWS = {"none": (1, False), "mirror": (1, True), "turn4": (4, False), "turn4-mirror": (4, True)}


class Views(torch.nn.Module):
    """``model`` on ``turns`` headings of each clip (and their mirror images): mean logits."""

    def __init__(self, model: torch.nn.Module, turns: int, mirror: bool):
        super().__init__()
        self.model, self.turns, self.mirror = model, turns, mirror

    def forward(self, vertices: torch.Tensor, geodesic: torch.Tensor) -> torch.Tensor:
        sides = [vertices]
        if self.mirror:  # clips are centred in x and y: x -> -x mirrors about the body
            sides.append(vertices * vertices.new_tensor([-1.0, 1.0, 1.0]))
        logits = []
        for x in sides:
            for k in range(self.turns):
                a = 2 * math.pi * k / self.turns
                c, s = math.cos(a), math.sin(a)
                turn = x.new_tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
                logits.append(self.model(x @ turn.T, geodesic).float())
        return torch.stack(logits).mean(dim=0)


def load(ckpt: str, cache: str) -> tuple[Classifier, STMTDataModule]:
    """A checkpoint and the cache's clips as it cuts them (its frames, fixed windows or not)."""
    clf = Classifier.from_checkpoint(ckpt)
    dm = STMTDataModule(cache, num_frames=clf.num_frames, num_workers=0, window=clf.fixed_window)
    return clf, dm


def top1_by_source(hit: np.ndarray, sources: np.ndarray) -> dict:
    """Top-1 over the clips ``hit`` marks right or wrong, and over each source's."""
    row = {"clips": len(hit), "top1": round(float(hit.mean()), 4)}
    for source in np.unique(sources):
        row[str(source)] = round(float(hit[sources == source].mean()), 4)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--sources", nargs="*", default=None, help="default: every source")
    ap.add_argument("--views", nargs="*", default=list(VIEWS), choices=list(VIEWS))
    args = ap.parse_args()

    clf, dm = load(args.ckpt, args.cache)
    model = clf.model
    for name in args.views:
        clf.model = Views(model, *VIEWS[name]).eval()
        scored = score_split(clf, dm, args.split, args.sources)
        scored = scored.subset(scored.labels >= 0)  # known clips: other actions have no label
        hit = scored.probs(clf.temperature).argmax(axis=1) == scored.labels
        row = {"views": name, "split": args.split, **top1_by_source(hit, scored.sources)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
