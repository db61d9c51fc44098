"""Write each rig fixture of tests/helpers/rigs.py (issue 25) as a BVH file and render one
still of it with ``stmt view`` (benchmarks/README.md, "Rigs"). Run from the repository
root: ``python benchmarks/rigs/make_pictures.py [NAME ...]``."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers import rigs

OUT = Path(__file__).resolve().parent
CKPT = "checkpoints/stmt-realmix.ckpt"
AT = "0.49"  # seconds into the kick (of 0.5): the left foot is up


def fixtures() -> dict[str, tuple[object, bool]]:
    """name -> (motion, written with position channels only)."""
    clip, asf = rigs.cmu_clip(), rigs.asf_clip()
    mm = rigs.HDM05_UNIT_M * 1000
    return {
        "acclaim-hip": (rigs.renamed(asf, {"root": "hip"}), False),
        "acclaim-pelvis-upper": (rigs.renamed(asf, {"root": "pelvis"}, str.upper), False),
        "acclaim-bone-ends": (rigs.renamed(rigs.bone_ends(asf), {"root": "hip"}), False),
        "mocapnet": (rigs.unlisted(clip, "mocapnet", seed=6), False),
        "head-end-site": (rigs.without_head(clip, "Head"), False),
        "extra-root-simulationbone": (rigs.extra_root(clip, "SimulationBone", follow=True), False),
        "extra-root-z-up": (rigs.extra_root(clip, "root", z_up=True), False),
        "zero-length-bones": (rigs.zero_bones(clip, ["Spine1", "LeftToeBase", "LeftFingerBase"]), False),
        "millimetres": (rigs.scaled(clip, mm), False),
        "kinect-tracked-mm": (rigs.tracked_positions(rigs.unlisted(clip, "kinect"), mm), True),
        "metarig-no-hands": (rigs.renamed_to(rigs.without_hands(clip), rigs.METARIG), False),
        "quadruped-biped": (rigs.quadruped(), False),
    }  # fmt: skip


def main(names: list[str]) -> None:
    todo = fixtures()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list(todo):
            motion, positions = todo[name]
            path = Path(tmp) / f"{name}.bvh"
            (rigs.write_positions_bvh if positions else rigs.to_bvh)(motion, path)
            cmd = [sys.executable, "-m", "stmt", "view", str(path), "--ckpt", CKPT, "--render",
                   str(OUT / f"{name}.png"), "--at", AT, "--camera", "40,10", "--size", "320x320"]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            print(f"{name}: exit {proc.returncode} {proc.stderr.strip() or proc.stdout.strip()}")


if __name__ == "__main__":
    main(sys.argv[1:])
