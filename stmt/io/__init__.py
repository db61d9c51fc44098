"""MoCap readers: a file becomes a motion, and nothing more.

A reader parses (:func:`read_motion`: a :class:`~stmt.motion.SkeletonMotion` for BVH,
ASF/AMC, FBX and glTF, a :class:`~stmt.motion.JointPositions` for joint-position CSV,
an :class:`~stmt.motion.AmassMotion` for AMASS, a :class:`~stmt.sequence.MeshSequence`
for mesh files). Posing is :mod:`stmt.body`'s; :mod:`stmt.reading` composes the two
(``read_sequence``). No module here imports a body.

Public functions:

- :func:`read_motion` — the parsed motion (no body model involved).
- :func:`detect_format` — the format name alone.
- :func:`list_takes`, :func:`expand_takes` — the takes of FBX and glTF files.

Formats (``seq.format``): "amass-smplh", "amass-smplx" (:mod:`stmt.io.amass`),
"bvh" (:mod:`stmt.io.bvh`), "asf-amc" (:mod:`stmt.io.asf_amc`), "joint-csv"
(:mod:`stmt.io.joints_csv`), "joint-mat" (UTD-MHAD Kinect skeletons,
:mod:`stmt.io.joints_mat`), "fbx" (:mod:`stmt.io.fbx`), "gltf" (:mod:`stmt.io.gltf`),
"mesh-npz", "mesh-folder" (:mod:`stmt.io.mesh`). FBX and glTF files hold takes:
``FILE#TAKE`` reads one (:func:`list_takes`, :func:`expand_takes`). Every reader raises
:class:`stmt.errors.InputError` (one line naming the file) for bad input.

Every reader imports only numpy and the light stmt modules (the FBX loader, ufbx,
runs in a child process of :mod:`stmt.io.ufbx_worker`).
"""

from __future__ import annotations

from pathlib import Path

from stmt.errors import InputError
from stmt.io.amass import load_amass
from stmt.io.asf_amc import amc_motion
from stmt.io.bvh import bvh_motion
from stmt.io.detect import FORMATS, SCENE_SUFFIXES, detect_format
from stmt.io.fbx import fbx_motion, fbx_takes
from stmt.io.gltf import gltf_motion, gltf_takes
from stmt.io.joints_csv import read_joint_csv
from stmt.io.joints_mat import read_joint_mat
from stmt.io.mesh import read_mesh_folder, read_mesh_npz
from stmt.io.scenegraph import Take, pick_take, split_take, take_path
from stmt.motion import AmassMotion, JointPositions, SkeletonMotion
from stmt.sequence import MeshSequence

__all__ = [
    "FORMATS", "Take", "detect_format", "expand_takes", "file_entries", "list_takes", "read_motion",
]  # fmt: skip


def list_takes(path: str | Path) -> list[Take]:
    """The takes of an FBX or glTF file (``[]`` for other formats)."""
    file, _ = split_take(path)
    fmt = detect_format(file)
    if fmt == "fbx":
        return fbx_takes(file)
    if fmt == "gltf":
        return gltf_takes(file)
    return []


def expand_takes(path: str | Path, take: str | None = None) -> list[Path]:
    """The entries a file is classified as: ``FILE#TAKE`` for each take of an FBX or glTF
    file with several (only ``take``, a name or an index counting from 0, when given), the
    path itself otherwise. A path that names its take already is kept as it is."""
    return [entry for entry, _ in file_entries(path, take)]


def file_entries(
    path: str | Path, take: str | None = None, fmt: str | None = None
) -> list[tuple[Path, str | None]]:
    """:func:`expand_takes`, each entry with its format, detected once here unless the
    caller knows it (``fmt``); None where it is left to the reader: a path that names its
    take, or a file whose format cannot be told, which the reader then reports."""
    path = Path(path)
    file, named = split_take(path)
    if named is not None:
        return [(path, None)]
    try:
        fmt = fmt or detect_format(file)
    except InputError:
        if file.suffix.lower() in SCENE_SUFFIXES:
            raise  # its takes cannot be listed: one line, as a take list is asked for
        return [(path, None)]
    if fmt not in ("fbx", "gltf"):
        return [(path, fmt)]
    takes = fbx_takes(file) if fmt == "fbx" else gltf_takes(file)
    if take is not None:
        return [(take_path(file, takes[pick_take(takes, take, file)].name), fmt)]
    if len(takes) <= 1:
        return [(path, fmt)]
    return [(take_path(file, t.name), fmt) for t in takes]


def read_motion(
    path: str | Path, fmt: str | None = None
) -> SkeletonMotion | JointPositions | AmassMotion | MeshSequence:
    """Parse a MoCap file without posing it.

    Returns:
        :class:`~stmt.motion.SkeletonMotion` (BVH, ASF/AMC, FBX, glTF: the first take
        unless the path is ``FILE#TAKE``), :class:`~stmt.motion.JointPositions`
        (joint-position CSV), :class:`~stmt.motion.AmassMotion` (AMASS), or
        :class:`~stmt.sequence.MeshSequence` (mesh files: the vertices are the motion).
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt in ("fbx", "gltf"):
        file, take = split_take(path)
        scene_motion = fbx_motion if fmt == "fbx" else gltf_motion
        return scene_motion(file, take, source=path)
    if fmt in ("amass-smplh", "amass-smplx"):
        return load_amass(path, fmt)
    if fmt == "mesh-npz":
        return read_mesh_npz(path)
    if fmt == "mesh-folder":
        return read_mesh_folder(path)
    if fmt == "bvh":
        return bvh_motion(path)
    if fmt == "joint-csv":
        return read_joint_csv(path)
    if fmt == "joint-mat":
        return read_joint_mat(path)
    if path.suffix.lower() == ".asf":
        raise InputError(
            path,
            "an .asf file holds only the skeleton; pass the .amc motion file (the .asf is found beside it)",
        )
    return amc_motion(path)
