"""``stmt synth --out DIR``: write the built-in synthetic action dataset.

Procedural motions as AMASS SMPL+H ``.npz`` files plus BABEL-format annotations
(see :mod:`stmt.data.synth`); prepare them with
``stmt prepare --dataset synthetic --data DIR --out CACHE``.

``stmt synth --samples --out datasets/samples`` writes instead the small sample files,
one per supported format (see :mod:`stmt.data.samples`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stmt.data.samples import adopt_samples, write_samples
from stmt.data.synth import adopt_output, check_options, generate
from stmt.fileio import check_folder


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--per-class",
        type=int,
        default=200,
        metavar="N",
        help="clips per class, 1 to 100000 (default 200)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed, 0 to 2^32-1 (default 0); same seed, same files",
    )
    p.add_argument(
        "--subjects",
        type=int,
        default=20,
        metavar="K",
        help="generated people (body shapes), split 70/15/15 %% into train/val/test (default 20)",
    )
    p.add_argument(
        "--classes",
        default=None,
        metavar="A,B,...",
        help="comma-separated subset of the classes (default: all; see datasets/synthetic)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an existing folder that holds files stmt did not write (only "
        "stmt's own files there are replaced; the others are kept)",
    )
    p.add_argument(
        "--samples",
        action="store_true",
        help="write instead the small sample files (one per supported format, with a "
        "README) into --out, e.g. datasets/samples; uses --seed only",
    )


def main(args: argparse.Namespace) -> int:
    if args.samples:
        check_options(1, args.seed, 3, None)
        check_folder(args.out, "stmt synth --samples", args.overwrite, adopt_samples)
        paths = write_samples(args.out, seed=args.seed, overwrite=args.overwrite)
        if args.json:
            print(json.dumps({"out": str(args.out), "files": [p.name for p in paths]}))
        else:
            print(
                f"wrote {len(paths)} sample files to {args.out}: {', '.join(p.name for p in paths)}"
            )
        return 0
    classes = None
    if args.classes:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    check_options(args.per_class, args.seed, args.subjects, classes)
    check_folder(args.out, "stmt synth", args.overwrite, adopt_output)  # before any work
    summary = generate(
        args.out,
        per_class=args.per_class,
        seed=args.seed,
        subjects=args.subjects,
        classes=classes,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    print_summary({"out": str(args.out), **summary}, args.json)
    return 0


def print_summary(summary: dict, as_json: bool = False) -> None:
    """What was generated: readable lines, or with ``as_json`` one JSON object
    (keys out, clips, classes, subjects, per_split)."""
    if as_json:
        print(json.dumps(summary))
        return
    splits = ", ".join(f"{n} {name}" for name, n in summary.get("per_split", {}).items())
    print(
        f"wrote {summary['clips']} clips of {summary['classes']} classes by "
        f"{summary['subjects']} subjects to {summary['out']}"
    )
    if splits:
        print(f"splits: {splits}")
    print(f"next: stmt prepare --dataset synthetic --data {summary['out']} --out CACHE")
