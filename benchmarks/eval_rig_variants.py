"""One motion, many files: HDM05's test clips written in the rigs and file layouts MoCap
comes in, each labelled by ``stmt classify`` (benchmarks/README.md, "Rigs").

A reader that reads a file as it is gives every variant the label the clip itself gets.
Each of HDM05's held-out clips (``test/*/*.amc`` of JointLearning-HDM05, up axis and
unit stated) is written as a BVH file that states neither, with CMU's joint names
(``plain``) and with what real files add (``tests/helpers/rigs.py``): another rig's
names and a random rest pose (Mixamo, iClone, DAZ), millimetres, a root joint that
turns the world Z up, 30 fps instead of 120, the whole take turned about the vertical,
and the T-pose CMU's BVH conversions put before every take (its root where the motion
starts, or at the origin). ``stmt classify`` labels each file whole, as a user runs it;
top-1 against the clip's realmix label (the clips of other actions, lieDownFloor, left
out), for this tree and, with ``--base REV``, for the ``stmt`` package of an earlier
commit in the same run (``git worktree``).

    python benchmarks/eval_rig_variants.py --hdm05 data/realmix/JointLearning-HDM05 \\
        --ckpt checkpoints/stmt-realmix.ckpt --base 9d4524d
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stmt.data.realmix import HDM05_LABELS, OTHER
from stmt.io.asf_amc import ASF_TO_BVH, amc_motion
from tests.helpers import rigs
from tests.helpers.scene_writers import FbxTake, write_fbx_ascii, write_gltf


def turned(motion, degrees: float):
    """The whole take turned about the vertical (+Y) by ``degrees``."""
    r = rigs._yaw(np.full(motion.num_frames, np.radians(degrees)))
    rot, trans = motion.rotations.copy(), motion.translations.copy()
    rot[:, 0] = r @ rot[:, 0]
    trans[:, 0] = np.einsum("tij,tj->ti", r, trans[:, 0])
    return replace(motion, rotations=rot, translations=trans)


def held(motion, seconds: float):
    """``motion`` with its first pose held ``seconds`` before it and its last after it."""
    n = round(seconds * motion.fps)
    idx = np.r_[np.zeros(n, int), np.arange(motion.num_frames), np.full(n, motion.num_frames - 1)]
    return motion.take(idx)


ASF_NAMES = {bvh: asf for asf, bvh in ASF_TO_BVH.items()}
CM = rigs.HDM05_UNIT_M * 100  # centimetres per unit of the clip


def mixamo(m):
    return replace(m, names=rigs.names_in("mixamo", m.names))


# Variants not written as plain BVH: {name: (suffix, write(motion, path))}
WRITERS = {
    # position channels only (tests/helpers/rigs.py's Kinect-style exporter)
    "kinect-positions-mm": (".bvh", rigs.write_positions_bvh),
    # ASCII FBX, Mixamo names, random PreRotations, centimetres, Y up
    "fbx-mixamo-cm": (".fbx", lambda m, p: write_fbx_ascii(
        p, [FbxTake("mixamo.com", mixamo(m))], length_scale=CM)),
    # ASCII FBX, metres (UnitScaleFactor 100), Z up
    "fbx-metres-z-up": (".fbx", lambda m, p: write_fbx_ascii(
        p, [FbxTake("Take 001", m)], up="z", unit_scale_factor=100.0,
        length_scale=rigs.HDM05_UNIT_M)),
    # binary glTF (metres, Y up), one skin, linear samplers
    "glb": (".glb", lambda m, p: write_gltf(p, [("take", m)], unit=rigs.HDM05_UNIT_M)),
}  # fmt: skip

VARIANTS = {
    "plain": lambda m, i: m,
    "mixamo": lambda m, i: rigs.reexpress(m, "mixamo", i),
    "iclone": lambda m, i: rigs.reexpress(m, "iclone", i),
    "daz": lambda m, i: rigs.reexpress(m, "daz", i),
    "millimetres": lambda m, i: rigs.scaled(m, rigs.HDM05_UNIT_M * 1000),
    "z-up-root": lambda m, i: rigs.extra_root(m, "root", z_up=True),
    "30-fps": lambda m, i: replace(m.take(np.arange(0, m.num_frames, 4)), fps=m.fps / 4),
    "turned-90": lambda m, i: turned(m, 90),
    "turned-180": lambda m, i: turned(m, 180),
    "acclaim-names": lambda m, i: rigs.renamed(m, {**ASF_NAMES, "Hips": "hip"}),
    "mocapnet": lambda m, i: rigs.unlisted(m, "mocapnet", seed=i),
    "metarig-no-hands": lambda m, i: rigs.renamed_to(rigs.without_hands(m), rigs.METARIG),
    "head-end-site": lambda m, i: rigs.without_head(m, "Head"),
    "kinect-positions-mm": lambda m, i: rigs.tracked_positions(
        rigs.unlisted(m, "kinect", seed=i), rigs.HDM05_UNIT_M * 1000, seed=i
    ),
    "held-2s-before-after": lambda m, i: held(m, 2.0),
    "fbx-mixamo-cm": lambda m, i: m,
    "fbx-metres-z-up": lambda m, i: m,
    "glb": lambda m, i: m,
    "t-pose-first": lambda m, i: rigs.with_first_frame(m),
    "t-pose-first-at-origin": lambda m, i: rigs.with_first_frame(
        m, np.array([0.0, m.translations[0, 0, 1], 0.0])
    ),
}


def write_variants(hdm05: Path, out: Path, names: list[str]) -> dict[str, str]:
    """Each test clip in each variant under ``out/VARIANT/``; {file stem: label}."""
    labels = {}
    for i, amc in enumerate(sorted(hdm05.glob("test/*/*.amc"))):
        label = HDM05_LABELS.get(re.match(r"HDM_\w\w_(\w+?)_\d+_120", amc.stem).group(1))
        if label in (None, OTHER):  # an action none of the classes names
            continue
        labels[amc.stem] = label
        m = amc_motion(amc)
        m = replace(m, names=tuple(ASF_TO_BVH[n] for n in m.names), unit=None, up=None)
        for name in names:
            (out / name).mkdir(parents=True, exist_ok=True)
            suffix, write = WRITERS.get(name, (".bvh", rigs.to_bvh))
            write(VARIANTS[name](m, i), out / name / f"{amc.stem}{suffix}")
    return labels


def classify(root: Path, files: list[Path], ckpt: str, csv_path: Path) -> dict[str, str]:
    """{file stem: label} from ``stmt classify`` of the package under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    argv = [sys.executable, "-m", "stmt", "classify", "--ckpt", ckpt, "--out", str(csv_path)]
    subprocess.run([*argv, *map(str, files)], check=True, env=env, cwd=root,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    with csv_path.open() as f:
        return {Path(r["file"]).stem: r["label"] for r in csv.DictReader(f)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hdm05", type=Path, required=True, help="the JointLearning-HDM05 clone")
    ap.add_argument("--ckpt", default="checkpoints/stmt-realmix.ckpt")
    ap.add_argument("--base", default=None, help="also run the stmt package of this commit")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args()
    ckpt = str(Path(args.ckpt).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        labels = write_variants(args.hdm05, tmp / "files", args.variants)
        trees = {"this tree": REPO}
        if args.base:
            base = tmp / "base"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base),
                            args.base], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            trees = {args.base: base, **trees}
        try:
            print(f"{len(labels)} clips; top-1 of stmt classify per variant")
            print("| variant | " + " | ".join(trees) + " |")
            print("|---|" + "---:|" * len(trees))
            for name in args.variants:
                files = sorted((tmp / "files" / name).iterdir())
                row = []
                for root in trees.values():
                    got = classify(root, files, ckpt, tmp / f"{name}-{len(row)}.csv")
                    hits = [got.get(stem) == label for stem, label in labels.items()]
                    row.append(f"{100 * np.mean(hits):.1f} %")
                print(f"| {name} | " + " | ".join(row) + " |", flush=True)
        finally:
            if args.base:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                                str(tmp / "base")], check=False)  # fmt: skip


if __name__ == "__main__":
    main()
