"""Cross-source accuracy: train on one recorded source, test on another one it never saw.

A model judged on held-out parts of the sources it trained on can lean on what those
sources share (their rigs, clip lengths, studios, the way their actors move). This
script trains the realmix recipe (``datasets/realmix/cross-source.yaml`` plus any
``--set`` overrides) on one recorded source plus the synthetic classes, and labels every
clip of the other sources whose class the training source has recorded clips of (the
shared classes), each clip cut into windows exactly as ``stmt classify`` cuts a file and
labelled by the mean of its window probabilities. Both directions by default:

    bandai -> hdm05   train: Bandai's train styles + synthetic; test: all HDM05 clips
    hdm05 -> bandai   train: all HDM05 performers + synthetic; test: all labelled Bandai clips

and, on request, the third recorded source held out (children and adults on a Kinect):

    bandai,hdm05 -> kindergator   train: both train splits + synthetic; test: all Kinder-Gator

It prints top-1 (over clips) and top-1-norm (mean over shared classes) per direction and
per class, and appends a record to ``--results`` (JSON lines) so that changes can be
compared run by run (``benchmarks/README.md``, "Cross-source").

    python benchmarks/eval_cross_source.py --cache cache/realmix --name baseline
    python benchmarks/eval_cross_source.py --cache cache/realmix --name crop \\
        --set data.crop=0.5
    python benchmarks/eval_cross_source.py --cache cache/realmix --name shipped \\
        --ckpt checkpoints/stmt-realmix.ckpt --directions hdm05:bandai

``--ckpt`` skips training and tests a given checkpoint (only meaningful for one that
never saw the test source). ``--table`` prints the runs recorded so far as the markdown
table of ``benchmarks/README.md`` and trains nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "datasets/realmix/cross-source.yaml"
DIRECTIONS = {
    # train sources -> (their split to train on; HDM05 alone gives every performer)
    "bandai": "train",
    "hdm05": "train+test",
    "bandai,hdm05": "train",
}
ALL_SPLITS = "train+val+test"


def train(cache: str, source: str, out: Path, overrides: list[str], extra: list[str]) -> Path:
    """``stmt fit`` of the cross-source recipe on ``source`` (+ synthetic, + the ``extra``
    sources, same splits: never the test source); returns last.ckpt."""
    split = DIRECTIONS[source]
    sources = source.split(",")
    val = [s for s in sources if s != "hdm05"] + ["synthetic"]  # HDM05 has no val
    argv = [
        sys.executable, "-m", "stmt", "fit", "--config", str(CONFIG),
        f"--data.cache={cache}", f"--data.train_split={split}",
        f"--data.train_sources=[{', '.join([*sources, *extra, 'synthetic'])}]",
        f"--data.val_sources=[{', '.join(val)}]",
        f"--trainer.default_root_dir={out}", f"--trainer.logger.init_args.save_dir={out}",
        *[f"--{o}" for o in overrides],
    ]  # fmt: skip
    t0 = time.time()
    subprocess.run(argv, check=True)
    print(f"trained on {source} in {(time.time() - t0) / 60:.1f} min", flush=True)
    return max(out.glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)


def evaluate(ckpt: Path, cache: str, source: str, targets: list[str]) -> dict:
    """Top-1 of ``ckpt`` on ``targets``' clips (all splits) of the classes ``source`` has."""
    from stmt.data.datamodule import STMTDataModule
    from stmt.engine.calibration import score_split
    from stmt.inference import Classifier

    clf = Classifier.from_checkpoint(ckpt)
    dm = STMTDataModule(cache, num_frames=clf.num_frames, num_workers=0, window=clf.fixed_window)
    trained = dm._split_indices(DIRECTIONS[source], source.split(","))
    have = set(np.unique(dm.index.sample_label[trained]).tolist())
    scored = score_split(clf, dm, ALL_SPLITS, targets)
    keep = np.isin(scored.labels, sorted(have))
    scored = scored.subset(keep)
    pred = scored.probs(clf.temperature).argmax(axis=1)
    hit = pred == scored.labels
    names = clf.class_names
    per_class = {}
    for c in np.unique(scored.labels):
        sel = scored.labels == c
        wrong = np.bincount(pred[sel & ~hit], minlength=len(names))
        per_class[names[c]] = {
            "clips": int(sel.sum()),
            "top1": float(hit[sel].mean()),
            "mistaken_for": {names[i]: int(n) for i in np.argsort(-wrong)[:3] if (n := wrong[i])},
        }
    return {
        "clips": len(hit),
        "top1": float(hit.mean()) if len(hit) else float("nan"),
        "top1_norm": float(np.mean([v["top1"] for v in per_class.values()])),
        "per_class": per_class,
    }


def table(results: Path) -> str:
    """The recorded runs, one row each: top-1 (top-1-norm) per direction."""
    runs = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    pairs = list(dict.fromkeys(k for r in runs for k, v in r.items() if isinstance(v, dict)))
    head = "| run | changes | " + " | ".join(p.replace(":", " -> ") for p in pairs) + " |"
    lines = [head, "|---|---|" + "---:|" * len(pairs)]
    for r in runs:
        changes = ", ".join([*(f"+{w}" for w in r.get("with") or []), *r.get("set", [])])
        cells = [
            f"{r[p]['top1'] * 100:.1f} % ({r[p]['top1_norm'] * 100:.1f} %)" if p in r else "-"
            for p in pairs
        ]
        lines.append(f"| {r['name']} | {changes or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache")
    ap.add_argument("--name", help="the run's name in the results")
    ap.add_argument("--table", action="store_true", help="print the recorded runs, train nothing")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="overrides of the config, e.g. data.crop=0.5 trainer.max_epochs=8")  # fmt: skip
    ap.add_argument("--directions", nargs="*", default=["bandai:hdm05", "hdm05:bandai"],
                    help="train:test source pairs")  # fmt: skip
    ap.add_argument("--with", dest="extra", nargs="*", default=[],
                    help="more training sources for both directions, e.g. kindergator")  # fmt: skip
    ap.add_argument("--ckpt", type=Path, default=None, help="test this checkpoint, no training")
    ap.add_argument("--runs", type=Path, default=REPO / "runs/cross-source")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks/cross_source/results.jsonl")
    args = ap.parse_args()
    if args.table:
        print(table(args.results))
        return
    if not (args.cache and args.name):
        ap.error("--cache and --name are needed to train and test")

    record = {"name": args.name, "set": args.set, "with": args.extra,
              "ckpt": str(args.ckpt) if args.ckpt else None}  # fmt: skip
    for pair in args.directions:
        source, target = pair.split(":")
        ckpt = args.ckpt
        if ckpt is None:
            ckpt = train(args.cache, source, args.runs / args.name / source, args.set, args.extra)
        result = evaluate(ckpt, args.cache, source, target.split(","))
        record[pair] = result
        print(f"\n{args.name}: {source} -> {target}: top-1 {result['top1']:.3f} "
              f"top-1-norm {result['top1_norm']:.3f} ({result['clips']} clips)")  # fmt: skip
        for name, v in result["per_class"].items():
            print(f"  {name:<20} {v['top1']:6.3f}  ({v['clips']:4d} clips)  {v['mistaken_for']}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
