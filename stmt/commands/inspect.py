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
        help="AMASS .npz, BVH, ASF/AMC, mesh .npz or mesh folder",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_files_argument(p)
    add_body_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per file (JSON Lines)")


def main(args: argparse.Namespace) -> int:
    """Describe each file; a file that cannot be read gets its one-line error and exit status 2."""
    import sys

    from stmt.errors import InputError
    from stmt.io import read_sequence

    try:
        joint_map = joint_map_of(args)
    except InputError as err:
        print(f"stmt: error: {err}", file=sys.stderr)
        return 2
    failed = 0
    for i, path in enumerate(args.files):
        try:
            seq = read_sequence(
                path, body=args.body, body_models=args.body_models, joint_map=joint_map
            )
        except InputError as err:
            print(f"stmt: error: {err}", file=sys.stderr)
            failed += 1
            continue
        if i and not args.json:
            print()
        _describe(seq, args.json)
    return 2 if failed else 0


def _describe(seq, as_json: bool) -> None:
    info = {
        "file": str(seq.source),
        "format": seq.format,
        "frames": seq.num_frames,
        "fps": round(float(seq.fps), 3),
        "duration_s": round(seq.duration, 3),
        "vertices": seq.num_vertices,
        "faces": 0 if seq.faces is None else len(seq.faces),
        "joints": 0 if seq.joints is None else int(seq.joints.shape[1]),
        "body": seq.body,
    }
    if seq.rig is not None:
        info["rig"] = seq.rig
    lo, hi = seq.vertices.min(axis=(0, 1)), seq.vertices.max(axis=(0, 1))
    info["extent_m"] = [round(float(x), 3) for x in (hi - lo)]
    if as_json:
        print(json.dumps(info))
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
