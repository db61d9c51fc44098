"""Results of issue 4 on the synthetic dataset, with the shipped configs.

1. ``stmt_tiny`` from scratch on all training labels (datasets/synthetic/fit.yaml),
   tested on the unseen-subject test split: top-1 overall and per class
   (goal: >= 95 % overall, "sit" and "stand up" each >= 95 %).
2. Pretraining on all training clips without labels (pretrain.yaml), then
   fine-tuning with 10 % of the labels (fit-10pct.yaml), against training from
   scratch on the same 10 % (goal: >= 5 points gained).

Each experiment runs in its own folder under ``--out`` (the configs' relative
``runs/...`` paths land there). Results go to ``<out>/results.json`` and are
printed as a Markdown table for benchmarks/README.md.

    stmt synth --out data/synthetic
    stmt prepare --dataset synthetic --data data/synthetic --out cache/synthetic --num-points 256
    python benchmarks/train_synthetic.py --cache cache/synthetic --out runs/bench-synthetic

``--quick`` checks the pipeline end to end in a couple of minutes on a tiny
cache it makes itself (numbers meaningless).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "datasets" / "synthetic"


@contextmanager
def working_dir(path: Path):
    path.mkdir(parents=True, exist_ok=True)
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def lightning(argv: list[str]):
    """Run one LightningCLI command in this process; returns the CLI object."""
    from stmt.engine.cli import build_cli

    print("$ stmt " + " ".join(argv), flush=True)
    return build_cli(argv)


def per_class_top1(log_dir: Path) -> dict[str, float]:
    with open(log_dir / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    out = {}
    for i, row in enumerate(rows[1:]):
        counts = [int(x) for x in row[1:]]
        if sum(counts):
            out[row[0]] = counts[i] / sum(counts)
    return out


def train_and_test(config: str, cache: Path, extra: list[str], name: str) -> dict:
    start = time.time()
    fit = lightning(["fit", "--config", str(CONFIGS / config), f"--data.cache={cache}", *extra])
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    test = lightning(
        ["test", "--config", str(CONFIGS / config), f"--data.cache={cache}", f"--ckpt_path={ckpt}",
         *[a for a in extra if a.startswith(("--data.", "--trainer.enable_progress_bar"))]]
    )  # fmt: skip
    metrics = {
        k: float(v) for k, v in test.trainer.callback_metrics.items() if k.startswith("test/")
    }
    return {
        "name": name,
        "config": f"datasets/synthetic/{config}",
        "extra_args": extra,
        "checkpoint": str(Path(ckpt).resolve()),
        "train_clips": len(fit.datamodule.dataset("fit")),
        "test_clips": len(test.datamodule.dataset("test")),
        "minutes": round((time.time() - start) / 60, 1),
        **metrics,
        "per_class_top1": per_class_top1(Path(test.trainer.log_dir)),
    }


def make_quick_cache(root: Path) -> Path:
    from stmt.cli import main as stmt_main

    cache = root / "cache"
    if not (cache / "index.json").exists():
        assert stmt_main(["synth", "--out", str(root / "raw"), "--per-class", "6", "--subjects", "7",
                          "--quiet"]) == 0  # fmt: skip
        assert stmt_main(["prepare", "--dataset", "synthetic", "--data", str(root / "raw"),
                          "--out", str(cache), "--num-points", "64", "--quiet"]) == 0  # fmt: skip
    return cache


def _pct(per_class: dict[str, float], name: str) -> str:
    return f"{100 * per_class[name]:.1f}" if name in per_class else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache", type=Path, default=Path("cache/synthetic"), help="prepared cache"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-synthetic"))
    parser.add_argument("--epochs", type=int, help="override max_epochs of fit.yaml")
    parser.add_argument("--pretrain-epochs", type=int, help="override max_epochs of pretrain.yaml")
    parser.add_argument("--finetune-epochs", type=int, help="override max_epochs of fit-10pct.yaml")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma list of: full, finetune, scratch10")
    parser.add_argument(
        "--quick", action="store_true", help="tiny end-to-end check, own tiny cache"
    )
    args = parser.parse_args()

    out = args.out.resolve()
    cache = make_quick_cache(out / "quick-data") if args.quick else args.cache.resolve()
    common = [f"--data.num_workers={args.num_workers}", "--trainer.enable_progress_bar=false"]
    if args.quick:
        common += ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                   "--trainer.limit_val_batches=1", "--data.batch_size=4"]  # fmt: skip

    def epochs(n: int | None) -> list[str]:
        return [] if n is None or args.quick else [f"--trainer.max_epochs={n}"]

    skip = set(filter(None, args.skip.split(",")))
    results = {"cache": str(cache), "quick": args.quick, "runs": []}
    if "full" not in skip:
        with working_dir(out / "scratch-full"):
            results["runs"].append(
                train_and_test(
                    "fit.yaml", cache, common + epochs(args.epochs), "scratch, 100 % labels"
                )
            )
    if "finetune" not in skip:
        with working_dir(out / "pretrain-finetune-10pct"):
            start = time.time()
            lightning(["fit", "--config", str(CONFIGS / "pretrain.yaml"), f"--data.cache={cache}",
                       *common, *epochs(args.pretrain_epochs)])  # fmt: skip
            pretrain_minutes = round((time.time() - start) / 60, 1)
            run = train_and_test("fit-10pct.yaml", cache, common + epochs(args.finetune_epochs),
                                 "pretrained + fine-tuned, 10 % labels")  # fmt: skip
            run["pretrain_minutes"] = pretrain_minutes
            results["runs"].append(run)
    if "scratch10" not in skip:
        with working_dir(out / "scratch-10pct"):
            extra = common + epochs(args.finetune_epochs) + ["--model.init_args.pretrained=null"]
            results["runs"].append(
                train_and_test("fit-10pct.yaml", cache, extra, "scratch, 10 % labels")
            )

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, out / "results.json")

    print("\n| run | train clips | test top-1 | top-5 | top-1-norm | sit | stand up | minutes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        pc = r["per_class_top1"]
        print(f"| {r['name']} | {r['train_clips']} | {100 * r.get('test/top1', 0):.1f} | "
              f"{100 * r.get('test/top5', 0):.1f} | {100 * r.get('test/top1_norm', 0):.1f} | "
              f"{_pct(pc, 'sit')} | {_pct(pc, 'stand up')} | {r['minutes']} |")  # fmt: skip
    print(f"\nwritten {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
