"""Pace against form: held-out Bandai-Namco takes played faster and slower, each
labelled by ``stmt classify`` (benchmarks/README.md, "Pace against form").

A walk played 1.25 times as fast is still a walk (a brisk one), a run slowed down is
still a run; a model that labels them by how fast the limbs move from frame to frame
rather than by the gait's form (a flight phase, bent knees) gets them wrong. Each take
of the chosen contents in one held-out style is written again with only its BVH
``Frame Time`` changed (the same frames, played ``speed`` times as fast) and labelled
whole; the table counts the labels per content and speed ("?" marks "unknown").
``--travel`` adds columns where only the root's horizontal travel is scaled (0: in
place; Bandai's files are Y up), to tell the limbs' pace from the body's.

    python benchmarks/eval_playback_speed.py --bandai data/realmix \\
        --ckpt checkpoints/stmt-realmix.ckpt
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONTENTS = ("walk", "run", "wave-right-hand", "raise-up-right-hand")
SPEEDS = (0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0)
_FRAME_TIME = re.compile(r"^(Frame Time:\s*)(\S+)", re.MULTILINE)


def takes(root: Path, content: str, style: str, count: int) -> list[Path]:
    """The first ``count`` takes (by name) of ``content`` in ``style`` under ``root``."""
    found = sorted(root.rglob(f"dataset-*_{content}_{style}_*.bvh"))
    return found[:count]


def played_at(src: Path, dst: Path, speed: float) -> None:
    """``src`` with its frames played ``speed`` times as fast (only Frame Time changes)."""
    text = src.read_text()
    match = _FRAME_TIME.search(text)
    if match is None:
        raise SystemExit(f"{src}: no 'Frame Time:' line")
    seconds = float(match.group(2)) / speed
    dst.write_text(_FRAME_TIME.sub(lambda m: f"{m.group(1)}{seconds:.7f}", text, count=1))


def travelling(src: Path, dst: Path, scale: float) -> None:
    """``src`` with its root's X and Z travel from the first frame scaled by ``scale``."""
    text = src.read_text()
    head, _, motion = text.partition("MOTION")
    channels = re.search(r"CHANNELS\s+\d+\s+(.*)", head).group(1).split()
    cols = [channels.index(c) for c in ("Xposition", "Zposition") if c in channels]
    lines = motion.strip("\n").split("\n")
    frames = np.array([[float(v) for v in line.split()] for line in lines[2:] if line.strip()])
    frames[:, cols] = frames[0, cols] + scale * (frames[:, cols] - frames[0, cols])
    body = "\n".join(" ".join(f"{v:.6g}" for v in row) for row in frames)
    dst.write_text(f"{head}MOTION\n{lines[0]}\n{lines[1]}\n{body}\n")


def labels_of(files: list[Path], ckpt: str, csv_path: Path) -> dict[str, str]:
    """{file stem: label, with "?" where stmt classify says unknown}."""
    argv = [sys.executable, "-m", "stmt", "classify", "--ckpt", ckpt, "--out", str(csv_path)]
    subprocess.run([*argv, *map(str, files)], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    with csv_path.open() as f:
        rows = csv.DictReader(f)
        return {Path(r["file"]).stem: r["label"] + "?" * (r["unknown"] == "true") for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bandai", type=Path, required=True,
                    help="a folder holding the Bandai-Namco clone (searched by file name)")  # fmt: skip
    ap.add_argument("--ckpt", default="checkpoints/stmt-realmix.ckpt")
    ap.add_argument("--style", default="youthful", help="a held-out style (the test split's)")
    ap.add_argument("--per-content", type=int, default=10)
    ap.add_argument("--contents", nargs="*", default=list(CONTENTS))
    ap.add_argument("--speeds", nargs="*", type=float, default=list(SPEEDS))
    ap.add_argument("--travel", nargs="*", type=float, default=[],
                    help="also: the root's horizontal travel scaled by these (speed 1)")  # fmt: skip
    args = ap.parse_args()

    chosen = {c: takes(args.bandai, c, args.style, args.per_content) for c in args.contents}
    missing = [c for c, found in chosen.items() if not found]
    if missing:
        raise SystemExit(f"{args.bandai}: no '{args.style}' takes of {', '.join(missing)}")
    print(f"{args.ckpt}: labels of {args.style} takes played at each speed")
    columns = [(f"{s:g}x", played_at, s) for s in args.speeds]
    columns += [(f"travel {t:g}x", travelling, t) for t in args.travel]
    print("| content | " + " | ".join(name for name, _, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory() as tmp:
        cells = {c: [] for c in chosen}
        for n, (_, write, value) in enumerate(columns):
            folder = Path(tmp, str(n))
            folder.mkdir()
            files = []
            for content, srcs in chosen.items():
                for src in srcs:
                    files.append(folder / src.name)
                    write(src, files[-1], value)
            got = labels_of(files, args.ckpt, folder / "labels.csv")
            for content, srcs in chosen.items():
                counts = Counter(got[src.stem] for src in srcs)
                cells[content].append(", ".join(f"{n} {lab}" for lab, n in counts.most_common()))
        for content, row in cells.items():
            print(f"| {content} ({len(chosen[content])}) | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
