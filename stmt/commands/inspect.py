"""``stmt inspect FILE``: what a MoCap file holds once read."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_body_arguments(p: argparse.ArgumentParser) -> None:
    """The body-model options every command that reads MoCap files takes."""
    p.add_argument(
        "--body",
        choices=["auto", "smplh", "smplx", "anny"],
        default="auto",
        help="body model to pose parameter files with (auto: the SMPL family when "
        "--body-models or STMT_BODY_MODELS is set, else the free anny body)",
    )
    p.add_argument(
        "--body-models",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder with SMPL-family model files (smplh/SMPLH_MALE.npz or "
        "smplh/male/model.npz layouts); default: $STMT_BODY_MODELS",
    )
    p.add_argument(
        "--joint-map",
        type=Path,
        default=None,
        metavar="FILE",
        help="YAML or JSON {their joint name: ours} for a BVH/ASF rig stmt does not "
        "recognise (ours: anny's CMU names, Hips, LeftUpLeg, LeftLeg, LeftFoot, ...; "
        "see stmt.retarget.CANONICAL)",
    )


def joint_map_of(args: argparse.Namespace) -> dict[str, str] | None:
    """The ``--joint-map`` file's mapping, or None (InputError for a bad file)."""
    path = getattr(args, "joint_map", None)
    if path is None:
        return None
    from stmt.retarget import load_joint_map

    return load_joint_map(path)


def add_files_argument(p: argparse.ArgumentParser) -> None:
    """One or more MoCap files, as every command that reads several takes them."""
    p.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="AMASS .npz, BVH, ASF/AMC, FBX, glTF/GLB, mesh .npz or mesh folder "
        "(FILE#TAKE: one take of an FBX/glTF file)",
    )


def add_take_argument(p: argparse.ArgumentParser, what: str) -> None:
    """``--take NAME|INDEX``: one take of FBX / glTF files with several."""
    p.add_argument(
        "--take",
        default=None,
        metavar="NAME|INDEX",
        help=f"FBX/glTF files with several takes: {what} only this take (its name, or its "
        "index from 0 as `stmt inspect` lists them); FILE#TAKE names one too",
    )


def take_entries(paths: list[Path], take: str | None) -> tuple[list[Path], list[str]]:
    """Each path as the entries it is read as (``FILE#TAKE`` per take of a file with
    several, :func:`stmt.io.expand_takes`); a file whose takes cannot be listed is an
    error line and left out."""
    from stmt.errors import InputError
    from stmt.io import expand_takes

    entries: list[Path] = []
    errors: list[str] = []
    for path in paths:
        try:
            entries += expand_takes(path, take)
        except InputError as err:
            errors.append(str(err))
    return entries, errors


def add_max_frames_argument(p: argparse.ArgumentParser) -> None:
    """``--max-frames``: raise the frame cap of :mod:`stmt.limits` for a long take."""
    from stmt.limits import DEFAULT_MAX_FRAMES

    p.add_argument(
        "--max-frames",
        type=int,
        default=None,
        metavar="N",
        help=f"refuse files of more than N frames (default: {DEFAULT_MAX_FRAMES:,}, or "
        "$STMT_MAX_FRAMES); raise it for a take that is really that long",
    )


def apply_max_frames(args: argparse.Namespace) -> None:
    """Install ``--max-frames`` as this process's cap (InputError if not >= 1)."""
    from stmt import limits

    value = getattr(args, "max_frames", None)
    if value is not None:
        limits.set_max_frames(value)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_files_argument(p)
    add_body_arguments(p)
    add_max_frames_argument(p)
    add_take_argument(p, "describe")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object per file (JSON Lines)"
    )


CHUNK = 256  # frames posed at a time: memory stays that of CHUNK frames, whatever the take


def main(args: argparse.Namespace) -> int:
    """Describe each file; a file that cannot be read gets its one-line error and exit status 2."""
    import sys

    from stmt.errors import InputError

    try:
        apply_max_frames(args)
        joint_map = joint_map_of(args)
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
    import numpy as np

    from stmt.io import detect_format, list_takes, read_motion, split_take
    from stmt.io.detect import SKELETON_FORMATS
    from stmt.io.scenegraph import pick_take, take_path
    from stmt.reading import pose, read_sequence

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
    motion = read_motion(path, fmt)
    total = motion.num_frames
    lo = hi = first = None
    for start in range(0, total, CHUNK):
        part = motion.take(np.arange(start, min(total, start + CHUNK)))
        seq = pose(part, body=body, body_models=body_models, joint_map=joint_map)
        v_lo, v_hi = seq.vertices.min(axis=(0, 1)), seq.vertices.max(axis=(0, 1))
        lo = v_lo if lo is None else np.minimum(lo, v_lo)
        hi = v_hi if hi is None else np.maximum(hi, v_hi)
        if first is None:
            first = seq
        del seq
    return _info(first, total, float(motion.fps), lo, hi, takes)


def _info(seq, frames: int, fps: float, lo, hi, takes=()) -> dict:
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
    return info


def _print(info: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info))
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
