"""The options several commands share (the files, the body, the frame limit, the take),
and what they turn into."""

from __future__ import annotations

import argparse
from pathlib import Path

from stmt import limits
from stmt.errors import InputError
from stmt.io import file_entries
from stmt.limits import DEFAULT_MAX_FRAMES
from stmt.retarget import load_joint_map


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


def take_entries(
    paths: list[tuple[Path, str | None]], take: str | None
) -> tuple[list[tuple[Path, str | None]], list[str]]:
    """Each ``(path, format or None)`` as the entries it is read as, with its format where
    it is known (``FILE#TAKE`` per take of a file with several, :func:`stmt.io.file_entries`);
    a file whose takes cannot be listed is an error line and left out."""
    entries: list[tuple[Path, str | None]] = []
    errors: list[str] = []
    for path, fmt in paths:
        try:
            entries += file_entries(path, take, fmt)
        except InputError as err:
            errors.append(str(err))
    return entries, errors


def add_max_frames_argument(p: argparse.ArgumentParser) -> None:
    """``--max-frames``: raise the frame cap of :mod:`stmt.limits` for a long take."""
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
    value = getattr(args, "max_frames", None)
    if value is not None:
        limits.set_max_frames(value)


def add_archive_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """``--workers N`` and ``--shard K/N``: an archive on every core, and across machines
    (:mod:`stmt.archive`)."""
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes that read and pose the files (default: one per core, at most "
        "one per GB of available memory; 0: none, all in this process); the output is the "
        "same with any number",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help=f"{what} only the K-th of N consecutive parts of the sorted file list (1 <= K <= "
        "N), e.g. K=$SLURM_ARRAY_TASK_ID of a job array; see the README's Archives section",
    )
