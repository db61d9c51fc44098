"""UTD-MHAD's Kinect skeletons (8 people, 27 actions): whole takes as ``stmt classify`` reads them.

UTD-MHAD (Chen, Jafari, Kehtarnavaz, ICIP 2015) records 8 people (4 women, 4 men), each
action 4 times, with a Kinect v1: 20 joint positions per frame at 30 fps, stored as
``a<action>_s<subject>_t<trial>_skeleton.mat`` (``d_skel``, 20 x 3 x T, metres), which
``stmt classify`` reads as it is (:mod:`stmt.io.joints_mat`). Its skeleton part is in a
public repository that carries the dataset
(github.com/woo-chia-wei/kinect-sequence-classification, ``data/Skeleton``; no licence
file there: research use, cite the paper). Nothing of it is committed here.

Since the third default checkpoint, realmix trains on people 1, 2, 3, 5 and 7 (their
sit, stand-up and squat takes labelled, their other shared-class takes not, the actions
none of its classes names as other actions) and holds out 4 (val), 6 and 8 (test)
(:data:`stmt.data.realmix.UTDMHAD_SPLIT`); the earlier checkpoints never saw any of it. ``--people 6 8`` measures the held-out people only.
Each take is labelled by ``stmt.Classifier`` exactly as ``stmt classify`` labels a
file. Two numbers:

- **accuracy** on the takes whose action is one of the checkpoint's classes (wave,
  throw, boxing -> punch, jogging / walking in place -> run / walk, sit-to-stand ->
  stand up, stand-to-sit -> sit, squat: :data:`stmt.data.realmix.UTDMHAD_CATEGORY`);
- **unknown**: on the takes of actions none of its classes names (swipes, claps,
  drawing in the air, tennis and baseball swings, bowling, arm curls, pushing,
  knocking, catching, lunges), the share it calls "unknown", against the share of the
  shared-class takes it calls so, and the AUROC of its score between the two.
  Basketball shooting and pick-up-and-throw are left out (throws of a sort).

    python benchmarks/eval_utd_mhad.py --data PATH/data/Skeleton --people 6 8 \\
        --ckpt checkpoints/stmt-realmix.ckpt checkpoints/stmt-realmix-v1.ckpt
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from stmt.data.realmix import OTHER, UTDMHAD_CATEGORY, UTDMHAD_RE

SHARED = {a: c for a, c in UTDMHAD_CATEGORY.items() if c not in (None, OTHER)}
OTHER_ACTIONS = tuple(a for a, c in UTDMHAD_CATEGORY.items() if c == OTHER)


def evaluate_files(ckpt: str, files: list[tuple[str, Path]]) -> dict:
    """Each file labelled by ``stmt.Classifier`` as ``stmt classify`` labels it: top-1 on
    the files whose label is a class, "unknown" on those and on the files of other
    actions (label :data:`stmt.data.realmix.OTHER`), and the AUROC of the score."""
    from stmt.engine.calibration import auroc
    from stmt.inference import Classifier

    clf = Classifier.from_checkpoint(ckpt)
    known, other, wrong = [], [], Counter()
    per_class: dict[str, list[bool]] = {}
    rules = set()
    for truth, path in files:
        item = clf.read(path)
        pred = clf.postprocess(item, clf.forward([item])[0], top_k=3)
        rules.add(pred.unknown_threshold)
        if truth != OTHER:
            hit = pred.overall[0][0] == truth
            per_class.setdefault(truth, []).append(hit)
            if not hit:
                wrong[(truth, pred.overall[0][0])] += 1
            known.append((pred.score, pred.unknown, hit))
        else:
            other.append((pred.score, pred.unknown))
    k_score = np.array([s for s, _, _ in known])
    o_score = np.array([s for s, _ in other])
    rule = max(rules, key=lambda r: r or 0.0)  # the threshold these files are held to
    return {
        "takes_known": len(known),
        "takes_other": len(other),
        "top1": float(np.mean([h for _, _, h in known])),
        "top1_norm": float(np.mean([np.mean(v) for v in per_class.values()])),
        "per_class": {c: float(np.mean(v)) for c, v in sorted(per_class.items())},
        "mistaken_for": {f"{t} -> {p}": n for (t, p), n in wrong.most_common(8)},
        "unknown_rule": rule,
        "unknown_known": float(np.mean([u for _, u, _ in known])) if rule else None,
        "unknown_other": float(np.mean([u for _, u in other])) if other and rule else None,
        "auroc": auroc(-o_score, -k_score),  # other actions scoring lower than known ones
    }


def evaluate_all(ckpts: list[str], files: list[tuple[str, Path]], out: Path | None) -> None:
    """:func:`evaluate_files` of each checkpoint, printed, and written to ``out`` as JSON."""
    results = {}
    for ckpt in ckpts:
        results[ckpt] = evaluate_files(ckpt, files)
        report(Path(ckpt).name, results[ckpt])
    if out is not None:
        out.write_text(json.dumps(results, indent=1))


def report(name: str, r: dict) -> None:
    """Print one checkpoint's results (:func:`evaluate_files`)."""
    unknown = (
        f"unknown on {r['unknown_known'] * 100:.1f} % of shared-class takes, "
        f"{r['unknown_other'] * 100:.1f} % of other actions"
        if r["unknown_rule"] and r["unknown_other"] is not None
        else "no unknown rule"
    )
    print(f"{name}: top-1 {r['top1'] * 100:.1f} % "
          f"(top-1-norm {r['top1_norm'] * 100:.1f} %) on {r['takes_known']} takes; "
          f"{unknown}; AUROC {r['auroc']:.3f} ({r['takes_other']} other takes)")  # fmt: skip
    print("  per class:", {c: round(v, 3) for c, v in r["per_class"].items()})
    print("  mistakes:", r["mistaken_for"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="UTD-MHAD's data/Skeleton folder")
    ap.add_argument("--ckpt", nargs="+", required=True)
    ap.add_argument(
        "--people",
        nargs="+",
        type=int,
        default=None,
        help="only these people's takes (default: all 8; held out: 6 8)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    takes = []
    for mat in sorted(args.data.glob("*_skeleton.mat")):
        m = UTDMHAD_RE.match(mat.name)
        if m is None or (args.people and int(m.group(2)) not in args.people):
            continue
        action = int(m.group(1))
        if action in SHARED or action in OTHER_ACTIONS:
            takes.append((SHARED.get(action, OTHER), mat))
    if not takes:
        raise SystemExit(f"{args.data}: no a<A>_s<S>_t<T>_skeleton.mat files (of --people)")
    evaluate_all(args.ckpt, takes, args.json)


if __name__ == "__main__":
    main()
