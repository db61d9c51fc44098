"""A source no checkpoint trains on: UTD-MHAD's Kinect skeletons (8 people, 27 actions).

UTD-MHAD (Chen, Jafari, Kehtarnavaz, ICIP 2015) records 8 people (4 women, 4 men), each
action 4 times, with a Kinect v1: 20 joint positions per frame at 30 fps, stored as
``a<action>_s<subject>_t<trial>_skeleton.mat`` (``d_skel``, 20 x 3 x T, metres). Its
skeleton part is in a public repository that carries the dataset
(github.com/woo-chia-wei/kinect-sequence-classification, ``data/Skeleton``; no licence
file there: research use, cite the paper). Nothing of it is committed here, and no
checkpoint is trained on it.

Each take is written as a joint-position CSV (Kinect v1 names, time stamps at 30 fps)
in a temporary folder and labelled by ``stmt.Classifier`` exactly as ``stmt classify``
labels a file. Two numbers:

- **accuracy** on the takes whose action is one of the checkpoint's classes
  (:data:`SHARED`: wave, throw, boxing -> punch, jogging / walking in place -> run /
  walk, sit-to-stand -> stand up, stand-to-sit -> sit, squat);
- **unknown**: on the takes of actions none of its classes names (:data:`OTHER`:
  swipes, claps, drawing in the air, tennis and baseball swings, bowling, arm curls,
  pushing, knocking, catching, lunges), the share it calls "unknown", against the share
  of the shared-class takes it calls so, and the AUROC of its score between the two.
  Basketball shooting and pick-up-and-throw are left out (throws of a sort).

    python benchmarks/eval_utd_mhad.py --data PATH/data/Skeleton \\
        --ckpt checkpoints/stmt-realmix.ckpt checkpoints/stmt-realmix-v1.ckpt
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

ACTIONS = [
    "right arm swipe to the left", "right arm swipe to the right", "right hand wave",
    "two hand front clap", "right arm throw", "cross arms in the chest", "basketball shooting",
    "draw x", "draw circle (clockwise)", "draw circle (counter clockwise)", "draw triangle",
    "bowling", "front boxing", "baseball swing", "tennis forehand swing", "arm curl",
    "tennis serve", "two hand push", "knock on door", "hand catch", "pick up and throw",
    "jogging in place", "walking in place", "sit to stand", "stand to sit", "forward lunge",
    "squat",
]  # fmt: skip
SHARED = {3: "wave", 5: "throw", 13: "punch", 22: "run", 23: "walk", 24: "stand up",
          25: "sit", 27: "squat"}  # fmt: skip
OTHER = (1, 2, 4, 6, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 26)
# the file's joint order (data/Skeleton/Skeleton_joint_order.txt) in Kinect v1 names
JOINTS = [
    "Head", "ShoulderCenter", "Spine", "HipCenter", "ShoulderLeft", "ElbowLeft", "WristLeft",
    "HandLeft", "ShoulderRight", "ElbowRight", "WristRight", "HandRight", "HipLeft",
    "KneeLeft", "AnkleLeft", "FootLeft", "HipRight", "KneeRight", "AnkleRight", "FootRight",
]  # fmt: skip
NAME = re.compile(r"^a(\d+)_s(\d+)_t(\d+)_skeleton\.mat$")


def to_csv(mat: Path, out: Path) -> Path:
    """A take as a joint-position CSV (what a Kinect recorder writes)."""
    from scipy.io import loadmat

    skel = np.asarray(loadmat(mat)["d_skel"], dtype=np.float64)  # (20, 3, T)
    frames = skel.transpose(2, 0, 1).reshape(skel.shape[2], -1)  # (T, 60)
    header = ["Timestamp", *(f"{j}{a}" for j in JOINTS for a in "XYZ")]
    lines = [",".join(header)]
    for t, row in enumerate(frames):
        lines.append(",".join([f"{1000.0 * t / 30.0:.3f}", *(f"{v:.6f}" for v in row)]))
    out.write_text("\n".join(lines) + "\n")
    return out


def evaluate(ckpt: str, takes: list[tuple[int, Path]]) -> dict:
    from stmt.engine.calibration import auroc
    from stmt.inference import Classifier

    clf = Classifier.from_checkpoint(ckpt)
    rule = clf.unknown_threshold
    known, other, wrong = [], [], Counter()
    per_class: dict[str, list[bool]] = {}
    for action, path in takes:
        item = clf.read(path)
        pred = clf.postprocess(item, clf.forward([item])[0], top_k=3)
        if action in SHARED:
            truth = SHARED[action]
            hit = pred.overall[0][0] == truth
            per_class.setdefault(truth, []).append(hit)
            if not hit:
                wrong[(truth, pred.overall[0][0])] += 1
            known.append((pred.score, pred.unknown, hit))
        else:
            other.append((pred.score, pred.unknown))
    k_score = np.array([s for s, _, _ in known])
    o_score = np.array([s for s, _ in other])
    return {
        "takes_known": len(known),
        "takes_other": len(other),
        "top1": float(np.mean([h for _, _, h in known])),
        "top1_norm": float(np.mean([np.mean(v) for v in per_class.values()])),
        "per_class": {c: float(np.mean(v)) for c, v in sorted(per_class.items())},
        "mistaken_for": {f"{t} -> {p}": n for (t, p), n in wrong.most_common(8)},
        "unknown_rule": rule,
        "unknown_known": float(np.mean([u for _, u, _ in known])) if rule else None,
        "unknown_other": float(np.mean([u for _, u in other])) if rule else None,
        "auroc": auroc(-o_score, -k_score),  # other actions scoring lower than known ones
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="UTD-MHAD's data/Skeleton folder")
    ap.add_argument("--ckpt", nargs="+", required=True)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    mats = sorted(p for p in args.data.glob("*_skeleton.mat") if NAME.match(p.name))
    if not mats:
        raise SystemExit(f"{args.data}: no a<A>_s<S>_t<T>_skeleton.mat files")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        takes = []
        for mat in mats:
            action = int(NAME.match(mat.name).group(1))
            if action in SHARED or action in OTHER:
                takes.append((action, to_csv(mat, Path(tmp) / f"{mat.stem}.csv")))
        for ckpt in args.ckpt:
            r = results[ckpt] = evaluate(ckpt, takes)
            unknown = (
                f"unknown on {r['unknown_known'] * 100:.1f} % of shared-class takes, "
                f"{r['unknown_other'] * 100:.1f} % of other actions"
                if r["unknown_rule"]
                else "no unknown rule"
            )
            print(f"{Path(ckpt).name}: top-1 {r['top1'] * 100:.1f} % "
                  f"(top-1-norm {r['top1_norm'] * 100:.1f} %) on {r['takes_known']} takes; "
                  f"{unknown}; AUROC {r['auroc']:.3f} ({r['takes_other']} other takes)")  # fmt: skip
            print("  per class:", {c: round(v, 3) for c, v in r["per_class"].items()})
            print("  mistakes:", r["mistaken_for"])
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
