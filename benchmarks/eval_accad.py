"""ACCAD's Female1 takes: recorded motion capture of a studio, a rig and a performer that
no realmix training or test clip comes from, classified as ``stmt classify`` reads them.

ACCAD (the Motion Capture Lab of The Ohio State University) publishes BVH takes of a
few performers under CC BY 3.0; ``Female1_bvh`` holds 81 takes of one woman: standing,
walks and runs (forwards, backwards, sideways, turning), crouching, lying down,
crawling, skipping, a cartwheel, gestures. ``datasets/accad/labels.json`` names each
take's class, "other action" (none of the classes: lying, crawling, skipping, arm
swings, conversation gestures, a cartwheel) or null (a transition between two actions,
or several actions in one take: not scored). Two numbers, as ``eval_utd_mhad.py``:
top-1 on the takes of a class, and "unknown" on those and on the other actions (with
the AUROC of the score). Nothing of ACCAD is trained on or committed here but a
60-frame test fixture (``tests/data/README.md``); how to get the takes:
``datasets/accad/README.md``.

    python benchmarks/eval_accad.py --data PATH/Female1_bvh \\
        --ckpt checkpoints/stmt-realmix.ckpt checkpoints/stmt-realmix-v3.ckpt

Any folder of BVH takes can be measured the same way: ``--labels`` a JSON file of the
same form (each take's file name without ``.bvh`` -> a class of the checkpoint, "other
action", or null).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eval_utd_mhad import evaluate_all  # beside this file

from stmt.data.realmix import OTHER

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "datasets" / "accad" / "labels.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the Female1_bvh folder")
    ap.add_argument("--ckpt", nargs="+", required=True)
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    labels = json.loads(args.labels.read_text())
    files = []
    for name, label in sorted(labels.items()):
        path = args.data / f"{name}.bvh"
        if label is None:
            continue
        if not path.is_file():
            raise SystemExit(f"{path}: missing (see datasets/accad/README.md)")
        files.append((OTHER if label == "other action" else label, path))
    evaluate_all(args.ckpt, files, args.json)


if __name__ == "__main__":
    main()
