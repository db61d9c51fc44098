"""``stmt calibrate CKPT --cache CACHE --out NEW.ckpt``: temperature and "unknown" rule.

After ``stmt fit``: runs the checkpoint on the cache's clips cut as ``stmt classify``
cuts files, fits a softmax temperature on the validation split's labelled clips, and
chooses the "unknown" threshold on the calibrated top-1 probability, one for motion
capture and one for joint positions a sensor tracked: the one that flags at most
``--max-known-rate`` of the known clips, so as many clips of actions outside the
classes (label -2; realmix's pointing and calling gestures, lying down, Kinder-Gator's
mimes and letters) as that allows; a cache with none of them (BABEL's) gets the same
rule, its AUROC not measured.
It prints the numbers on the validation, rule and test clips (accuracy, expected
calibration error before and after, the rule's AUROC and the share flagged of each) and
writes a copy of the checkpoint with them (``hyper_parameters["calibration"]``), which
``stmt classify`` uses. See :mod:`stmt.engine.calibration`.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from stmt import checkpoint
from stmt.errors import InputError
from stmt.fileio import atomic_write, check_output

KIND_NAMES = {"mocap": "motion capture", "tracked": "tracked joint positions"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "ckpt", type=Path, nargs="+",
        help="trained classifier checkpoint (.ckpt); several: one ensemble of them",
    )  # fmt: skip
    p.add_argument("--cache", type=Path, required=True, help="the cache it was trained from")
    p.add_argument("--out", type=Path, required=True, help="the calibrated checkpoint to write")
    p.add_argument("--val-split", default="val", help="split the temperature is fitted on")
    p.add_argument(
        "--unknown-split",
        default=None,
        help="split(s) the unknown rule is chosen on, e.g. train+val for a model that never "
        "trained on other actions (default: --val-split)",
    )
    p.add_argument("--test-split", default="test", help="split the numbers are reported on")
    p.add_argument(
        "--sources", nargs="*", default=None, help="only these sources of the cache (realmix)"
    )
    p.add_argument(
        "--max-known-rate",
        type=float,
        default=0.10,
        help="the share of known clips the rule may call unknown (of each source's)",
    )
    p.add_argument(
        "--keep-temperature",
        action="store_true",
        help="keep the checkpoint's temperature and fit only the unknown rule (a calibrated "
        "checkpoint's probabilities stay as they were)",
    )
    p.add_argument(
        "--pooled",
        action="store_true",
        help="hold --max-known-rate over all known clips together, not over each source's "
        "(then the source with most clips decides the threshold)",
    )


def _fmt(v) -> str:
    return "  -  " if v is None or math.isnan(v) else f"{v:.3f}"


def main(args: argparse.Namespace) -> int:
    import torch

    if not 0.0 <= args.max_known_rate < 1.0:
        raise InputError(None, f"--max-known-rate must be in [0, 1), got {args.max_known_rate}")
    if any(args.out.resolve() == c.resolve() for c in args.ckpt):
        raise InputError(args.out, "--out must not be a checkpoint being read")
    check_output(args.out)
    if len(args.ckpt) == 1:
        ckpt = checkpoint.read(args.ckpt[0])  # in today's layout (stmt.checkpoint.upgrade)
        calibration = _calibrate(args, args.ckpt[0])
    else:
        ckpt = checkpoint.ensemble(args.ckpt)
        with tempfile.TemporaryDirectory(prefix="stmt-ensemble-") as tmp:
            torch.save(ckpt, Path(tmp) / "ensemble.ckpt")
            calibration = _calibrate(args, Path(tmp) / "ensemble.ckpt")
        hp = ckpt["hyper_parameters"]
        lengths = checkpoint.window_scales(hp, args.out)
        print(
            f"an ensemble of {len(args.ckpt)} checkpoints ({hp['model_args']['members']} "
            "members): the mean of their logits"
            + (", each window length's on its own windows: " + ", ".join(
                f"{n} on {w:g} s" for w, n in lengths) if len(lengths) > 1 else "")
        )  # fmt: skip
    ckpt["hyper_parameters"]["calibration"] = calibration
    checkpoint.mark(ckpt)
    with atomic_write(args.out) as f:
        torch.save(ckpt, f)
    print(f"wrote {args.out}")
    return 0


def _calibrate(args: argparse.Namespace, path: Path) -> dict:
    """Fit and print the calibration of the checkpoint at ``path``; returns it."""
    from stmt.engine.calibration import calibrate

    calibration, report = calibrate(
        path, args.cache, args.val_split, args.unknown_split, args.test_split,
        args.sources, args.max_known_rate, pooled=args.pooled,
        keep_temperature=args.keep_temperature,
    )  # fmt: skip
    by_kind = ", ".join(
        f"{t:.3f} ({KIND_NAMES.get(k, k)})" for k, t in calibration["unknown_thresholds"].items()
    )
    print(
        f"temperature {calibration['temperature']:.3f}, unknown below a top-1 probability of "
        f"{by_kind or format(calibration['unknown_threshold'], '.3f')}"
    )
    print(f"{'clips':<13} {'known':>6} {'other':>6} {'top-1':>6} {'ECE before':>10} "
          f"{'ECE':>6} {'AUROC':>6} {'unknown: known':>15} {'other':>6}")  # fmt: skip
    for name, r in report.items():
        print(f"{name:<13} {r['known_clips']:>6} {r['other_clips']:>6} {_fmt(r['top1']):>6} "
              f"{_fmt(r['ece_before']):>10} {_fmt(r['ece']):>6} {_fmt(r['auroc']):>6} "
              f"{_fmt(r.get('unknown_known')):>15} {_fmt(r.get('unknown_other')):>6}")  # fmt: skip
    for source, r in report["test"].get("per_source", {}).items():
        if source:
            print(f"  test {source:<11} {r['known_clips']:>4} {r['other_clips']:>6} "
                  f"{_fmt(r['top1']):>6} {'':>10} {_fmt(r['ece']):>6} {_fmt(r['auroc']):>6} "
                  f"{_fmt(r.get('unknown_known')):>15} {_fmt(r.get('unknown_other')):>6}")  # fmt: skip
    if calibration["fitted_on"]["other_clips"] == 0:
        print(
            f"no clip of another action (label -2) in '{calibration['fitted_on']['unknown_split']}':"
            f" the rule flags at most {args.max_known_rate:.0%} of the known clips; how well it "
            "finds actions outside the classes is not measured"
        )
    return calibration
