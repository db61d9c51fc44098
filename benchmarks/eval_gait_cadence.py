"""Steps a minute and travel speed of the gait takes of realmix, per source and style.

The shipped checkpoint tells a walk from a run by how fast the limbs move
(``eval_playback_speed.py``). This script measures how fast they move in the data: each
take is read as ``stmt classify`` reads it (:func:`stmt.retarget.canonical_motion`:
metres, Z up), the feet's horizontal separation along its main direction is a stride
signal (it swings once a stride, two steps), and its strongest frequency between 0.4
and 2.5 strides a second (48-300 steps a minute; a Hann window, zero-padded 8x) gives
the cadence. Travel speed: the hips' horizontal path length over the take's duration.

    python benchmarks/eval_gait_cadence.py --data data/realmix

Per group (Bandai content and style; HDM05 class): takes, median cadence with its
10th-90th percentile, median speed.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from stmt import reading
from stmt.retarget import canonical_motion

BANDAI = re.compile(r"dataset-\d_(walk|run|dash)_([a-z-]+)_\d+\.bvh$")
HDM05 = re.compile(r"HDM_\w\w_(sneak2StepsLStart|jogLeftCircle4StepsRstart)_\d+_120\.amc$")


def cadence(path: Path) -> tuple[float, float] | None:
    """(steps a minute, metres a second) of a gait take; None under a second long."""
    motion = reading.read(path)
    joints = canonical_motion(motion).positions
    fps, n = float(motion.fps), motion.num_frames
    if n < fps:
        return None
    apart = (joints["LeftFoot"] - joints["RightFoot"])[:, :2]
    apart = apart - apart.mean(axis=0)
    main_axis = np.linalg.svd(apart, full_matrices=False)[2][0]
    stride = apart @ main_axis
    stride = (stride - stride.mean()) * np.hanning(n)
    spectrum = np.abs(np.fft.rfft(stride, 8 * n))
    freq = np.fft.rfftfreq(8 * n, 1.0 / fps)
    band = (freq > 0.4) & (freq < 2.5)
    strides_per_s = freq[band][np.argmax(spectrum[band])]
    hips = joints["Hips"][:, :2]
    speed = np.linalg.norm(np.diff(hips, axis=0), axis=1).sum() / (n / fps)
    return float(strides_per_s * 120.0), float(speed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the folder holding the clones")
    args = ap.parse_args()

    groups: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(args.data.rglob("*")):
        if m := BANDAI.search(path.name):
            groups[f"bandai {m[1]} {m[2]}"].append(path)
        elif m := HDM05.search(path.name):
            groups[f"hdm05 {m[1]}"].append(path)
    print("| takes | group | steps a minute, median (10th-90th percentile) | speed, median |")
    print("|---:|---|---|---:|")
    for name, paths in sorted(groups.items()):
        rows = [r for r in map(cadence, paths) if r is not None]
        if not rows:
            continue
        steps, speed = np.array(rows).T
        p10, p50, p90 = np.percentile(steps, [10, 50, 90])
        print(f"| {len(rows)} | {name} | {p50:.0f} ({p10:.0f}-{p90:.0f}) | "
              f"{np.median(speed):.2f} m/s |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
