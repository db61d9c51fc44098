"""``stmt inspect FILE``: what a MoCap file holds once read."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from stmt.commands import options
from stmt.errors import InputError
from stmt.io import detect_format, list_takes, split_take
from stmt.io.detect import SKELETON_FORMATS
from stmt.io.scenegraph import pick_take, take_path
from stmt.motion import JointPositions, SkeletonMotion
from stmt.reading import pose_motion, read, read_sequence
from stmt.retarget import canonical_motion


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_files_argument(p)
    options.add_body_arguments(p)
    options.add_max_frames_argument(p)
    options.add_take_argument(p, "describe")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object per file (JSON Lines)"
    )


CHUNK = 256  # frames posed at a time: memory stays that of CHUNK frames, whatever the take


def main(args: argparse.Namespace) -> int:
    """Describe each file; a file that cannot be read gets its one-line error and exit status 2."""
    try:
        options.apply_max_frames(args)
        joint_map = options.joint_map_of(args)
    except InputError as err:
        print(f"stmt: error: {err}", file=sys.stderr)
        return 2
    failed = 0
    for i, path in enumerate(args.files):
        try:
            info = describe(path, args.body, args.body_models, joint_map, args.take)
        except InputError as err:
            print(f"stmt: error: {err}", file=sys.stderr)
            failed += 1
            continue
        if i and not args.json:
            print()
        _print(info, args.json)
    return 2 if failed else 0


def describe(
    path: Path, body: str = "auto", body_models=None, joint_map=None, take: str | None = None
) -> dict:
    """What ``stmt inspect`` prints about one file.

    Parameter files (BVH, ASF/AMC, FBX, glTF, AMASS) are posed ``CHUNK`` frames at a
    time and only the extent is kept, so memory does not grow with the length of the
    take. An FBX / glTF file lists its takes and describes one (``take``, or the one
    ``FILE#TAKE`` names, or the first)."""
    fmt = detect_format(path)
    takes = []
    if fmt in ("fbx", "gltf"):
        file, named = split_take(path)
        takes = list_takes(file)
        chosen = pick_take(takes, named if named is not None else take, file)
        path = take_path(file, takes[chosen].name) if len(takes) > 1 or named else file
    if fmt in ("mesh-npz", "mesh-folder") or (
        fmt in SKELETON_FORMATS and body not in ("auto", "anny")
    ):  # mesh sequences are their own vertices; the rest is read_sequence's error
        seq = read_sequence(path, body=body, body_models=body_models, joint_map=joint_map)
        return _info(seq, seq.num_frames, seq.fps, seq.vertices.min(axis=(0, 1)),
                     seq.vertices.max(axis=(0, 1)))  # fmt: skip
    motion = read(path, body, fmt)
    total = motion.num_frames
    rig = None
    if isinstance(motion, SkeletonMotion | JointPositions) and None in (motion.unit, motion.up):
        # one unit and up axis for the whole take (read from it whatever frames are
        # posed): a chunk spent bending to the floor, read alone, could take another axis
        whole = canonical_motion(motion, joint_map, frames=np.arange(1))
        motion = replace(motion, unit=whole.scale, up=whole.up)
        rig = f"{whole.rig.describe()}, unit {whole.unit}, up {whole.up}"
    lo = hi = first = None
    warnings: list[str] = []  # each once, from whichever chunk said it
    for start in range(0, total, CHUNK):
        part = motion.take(np.arange(start, min(total, start + CHUNK)))
        seq = pose_motion(part, body=body, body_models=body_models, joint_map=joint_map)
        v_lo, v_hi = seq.vertices.min(axis=(0, 1)), seq.vertices.max(axis=(0, 1))
        lo = v_lo if lo is None else np.minimum(lo, v_lo)
        hi = v_hi if hi is None else np.maximum(hi, v_hi)
        warnings += [w for w in seq.warnings if w not in warnings]
        if first is None:
            first = seq
        del seq
    info = _info(first, total, float(motion.fps), lo, hi, takes, warnings)
    if rig is not None:
        info["rig"] = rig
    return info


def _info(seq, frames: int, fps: float, lo, hi, takes=(), warnings=None) -> dict:
    info = {
        "file": str(seq.source),
        "format": seq.format,
        "frames": int(frames),
        "fps": round(float(fps), 3),
        "duration_s": round(frames / fps, 3),
        "vertices": seq.num_vertices,
        "faces": 0 if seq.faces is None else len(seq.faces),
        "joints": 0 if seq.joints is None else int(seq.joints.shape[1]),
        "body": seq.body,
    }
    if takes:
        info["takes"] = [f"{i}: {t.name} ({t.duration_s:.2f} s, {t.frames} frames)"
                         for i, t in enumerate(takes)]  # fmt: skip
    if seq.rig is not None:
        info["rig"] = seq.rig
    info["extent_m"] = [round(float(x), 3) for x in (hi - lo)]
    warnings = list(seq.warnings) if warnings is None else warnings
    if warnings:  # what reading found odd (a T-pose before the take, degenerate bones)
        info["warnings"] = warnings
    return info


def _print(info: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info))
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key == "warnings":
            for line in value:
                print(f"{'warning':<{width}}  {line}")
        else:
            print(f"{key:<{width}}  {value}")
