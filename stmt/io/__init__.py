"""MoCap readers: a file becomes a motion; :func:`read_sequence` poses it.

The path is one-way: a reader parses (:func:`read_motion`: a
:class:`~stmt.motion.SkeletonMotion` for BVH and ASF/AMC, an
:class:`~stmt.io.amass.AmassMotion` for AMASS, a :class:`~stmt.sequence.MeshSequence`
for mesh files), :mod:`stmt.retarget` maps a skeleton's rig, and a body
(:func:`stmt.body.pose_motion`) poses the frames asked for.

Public functions:

- :func:`read_sequence` — read any supported file or folder as a posed mesh sequence.
- :func:`read_motion` — the parsed motion alone (no body model involved).
- :func:`body_topology` — the canonical rest mesh a file of some format would
  be posed on, without reading a file (to build a vertex template first).
- :func:`detect_format` — the format name alone.

Formats (``seq.format``): "amass-smplh", "amass-smplx" (:mod:`stmt.io.amass`),
"bvh" (:mod:`stmt.io.bvh`), "asf-amc" (:mod:`stmt.io.asf_amc`), "joint-csv"
(:mod:`stmt.io.joints_csv`), "fbx" (:mod:`stmt.io.fbx`), "gltf" (:mod:`stmt.io.gltf`),
"mesh-npz", "mesh-folder" (:mod:`stmt.io.mesh`). FBX and glTF files hold takes:
``FILE#TAKE`` reads one (:func:`list_takes`, :func:`expand_takes`). Every reader raises
:class:`stmt.errors.InputError` (one line naming the file) for bad input.

This module imports only numpy and the light stmt modules; readers and body
models load when first used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stmt.body import BODIES, Frames, check_body, fill_frames, select_frames
from stmt.errors import InputError
from stmt.io.detect import FORMATS, SCENE_SUFFIXES, SKELETON_FORMATS, detect_format
from stmt.io.scenegraph import Take, pick_take, split_take, take_path
from stmt.sequence import MeshSequence

__all__ = [
    "BODIES", "FORMATS", "Frames", "Take", "body_topology", "detect_format", "expand_takes",
    "fill_frames", "list_takes", "read_motion", "read_sequence", "select_frames",
]  # fmt: skip


def list_takes(path: str | Path) -> list[Take]:
    """The takes of an FBX or glTF file (``[]`` for other formats)."""
    file, _ = split_take(path)
    fmt = detect_format(file)
    if fmt == "fbx":
        from stmt.io.fbx import fbx_takes

        return fbx_takes(file)
    if fmt == "gltf":
        from stmt.io.gltf import gltf_takes

        return gltf_takes(file)
    return []


def expand_takes(path: str | Path, take: str | None = None) -> list[Path]:
    """The entries a file is classified as: ``FILE#TAKE`` for each take of an FBX or glTF
    file with several (only ``take``, a name or an index counting from 0, when given), the
    path itself otherwise. A path that names its take already is kept as it is."""
    path = Path(path)
    file, named = split_take(path)
    if named is not None or file.suffix.lower() not in SCENE_SUFFIXES and not _is_scene(file):
        return [path]
    takes = list_takes(file)
    if take is not None:
        return [take_path(file, takes[pick_take(takes, take, file)].name)]
    if len(takes) <= 1:
        return [path]
    return [take_path(file, t.name) for t in takes]


def _is_scene(path: Path) -> bool:
    try:
        return path.is_file() and detect_format(path) in ("fbx", "gltf")
    except InputError:
        return False


def read_motion(path: str | Path, fmt: str | None = None):
    """Parse a MoCap file without posing it.

    Returns:
        :class:`~stmt.motion.SkeletonMotion` (BVH, ASF/AMC, FBX, glTF: the first take
        unless the path is ``FILE#TAKE``), :class:`~stmt.io.amass.AmassMotion`
        (AMASS), or :class:`~stmt.sequence.MeshSequence` (mesh files: the vertices are
        the motion).
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt in ("fbx", "gltf"):
        file, take = split_take(path)
        if fmt == "fbx":
            from stmt.io.fbx import fbx_motion as scene_motion
        else:
            from stmt.io.gltf import gltf_motion as scene_motion
        return scene_motion(file, take, source=path)
    if fmt in ("amass-smplh", "amass-smplx"):
        from stmt.io.amass import load_amass

        return load_amass(path, fmt)
    if fmt == "mesh-npz":
        from stmt.io.mesh import read_mesh_npz

        return read_mesh_npz(path)
    if fmt == "mesh-folder":
        from stmt.io.mesh import read_mesh_folder

        return read_mesh_folder(path)
    if fmt == "bvh":
        from stmt.io.bvh import bvh_motion

        return bvh_motion(path)
    if fmt == "joint-csv":
        from stmt.io.joints_csv import read_joint_csv

        return read_joint_csv(path)
    if path.suffix.lower() == ".asf":
        raise InputError(
            path,
            "an .asf file holds only the skeleton; pass the .amc motion file (the .asf is found beside it)",
        )
    from stmt.io.asf_amc import amc_motion

    return amc_motion(path)


def read_sequence(
    path: str | Path,
    *,
    body: str = "auto",
    body_models: str | Path | None = None,
    vertex_ids: np.ndarray | None = None,
    frames: Frames | None = None,
    joint_map: dict[str, str] | None = None,
) -> MeshSequence:
    """Read a MoCap file or mesh folder as a posed mesh sequence (float32, metres, Z up).

    Args:
        path: AMASS SMPL+H / SMPL-X ``.npz``, mesh-sequence ``.npz``, ``.bvh``,
            ``.amc`` (its ``.asf`` is found by the ASF/AMC reader), ``.fbx``,
            ``.glb`` / ``.gltf`` / ``.vrma`` (``FILE#TAKE`` for one take of several;
            the first take otherwise), or a folder of per-frame ``.obj`` / ``.ply`` files.
        body: "auto" | "smplh" | "smplx" | "anny": the body parameter files are posed
            on. "auto": AMASS files use their own SMPL family when a body-model folder
            is known (``body_models`` or ``$STMT_BODY_MODELS``), else anny; BVH and
            ASF/AMC always use anny. Mesh sequences carry their own vertices and
            ignore ``body`` and ``body_models``.
        body_models: folder with SMPL-family model files (``smplh/SMPLH_MALE.npz`` or
            ``smplh/male/model.npz`` layouts; likewise ``smplx/``).
        vertex_ids: (N,) integer ids into the full mesh of the chosen body: only those
            vertices are posed (fast path) and ``seq.vertex_ids`` is set. ``seq.faces``
            and ``seq.rest_vertices`` still describe the full mesh.
        frames: the frame indices the caller will look at, or a function
            ``(num_frames, fps) -> indices`` called once the file's length and rate are
            known. Parameter files (AMASS, BVH, ASF/AMC) then pose only those frames; the
            sequence keeps the file's frame count and fps (true duration), and every
            other frame repeats the nearest listed frame before it (see
            :func:`fill_frames`). Mesh sequences are read whole. For callers that look
            at the listed frames only (``stmt classify``, :mod:`stmt.predict`).
        joint_map: {their joint name: canonical joint} for a skeleton whose rig
            :mod:`stmt.retarget` does not know (``--joint-map FILE``).

    Returns:
        The sequence. For body models ``rest_vertices`` is canonical (mean shape, zero
        pose: the same for every file posed on that body); for mesh sequences it is
        the first frame.

    Raises:
        InputError: one line naming the file and what was expected.
    """
    check_body(body)
    path = Path(path)
    fmt = detect_format(path)
    if fmt in ("mesh-npz", "mesh-folder"):
        from stmt.io.mesh import read_mesh_folder, read_mesh_npz

        read = read_mesh_npz if fmt == "mesh-npz" else read_mesh_folder
        return read(path, vertex_ids=vertex_ids)
    if fmt in SKELETON_FORMATS and body not in ("auto", "anny"):
        name = {"bvh": "BVH", "asf-amc": "ASF/AMC", "joint-csv": "joint-position", "fbx": "FBX",
                "gltf": "glTF"}[fmt]  # fmt: skip
        raise InputError(
            path, f"{name} files are posed on the anny body only (--body auto or anny), not {body}"
        )
    from stmt.body import pose_motion

    return pose_motion(
        read_motion(path, fmt),
        body=body,
        body_models=body_models,
        vertex_ids=vertex_ids,
        frames=frames,
        joint_map=joint_map,
    )


def body_topology(
    body: str = "auto",
    body_models: str | Path | None = None,
    fmt: str = "amass-smplh",
    path: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The canonical rest mesh files of format ``fmt`` are posed on, without reading a file.

    Args:
        body, body_models: as in :func:`read_sequence`.
        fmt: one of :data:`FORMATS`.
        path: needed only for "mesh-npz" / "mesh-folder", whose topology is the
            file's own (its first frame is read).

    Returns:
        ``(rest_vertices (V, 3) float32, faces (F, 3) int64, name)`` with name
        "smplh" | "smplx" | "anny" | "mesh". Equals ``read_sequence(...).rest_vertices``
        / ``.faces`` for every file of that format and body.
    """
    check_body(body)
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if fmt in ("mesh-npz", "mesh-folder"):
        if path is None:
            raise ValueError(
                f"body_topology(fmt={fmt!r}) needs the path: a mesh sequence has its own topology"
            )
        from stmt.io.mesh import read_rest_mesh

        rest, faces = read_rest_mesh(path, fmt)
        if faces is None:
            raise InputError(path, "the mesh sequence has no faces; a surface template needs them")
        return rest, faces, "mesh"
    src = None if path is None else Path(path)
    if fmt in SKELETON_FORMATS:
        if body not in ("auto", "anny"):
            raise InputError(src, f"{fmt} files are posed on the anny body only, not {body}")
        name = "anny"
    else:
        from stmt.io.amass import resolve_body

        name, root = resolve_body(body, body_models, fmt, src)
    if name == "anny":
        from stmt.body.anny import rest_mesh

        rest, faces = rest_mesh()
        return np.asarray(rest, dtype=np.float32), np.asarray(faces, dtype=np.int64), "anny"
    from stmt.body.smpl import canonical_model_file, load_model

    model = load_model(canonical_model_file(root, name), name)
    return model.v_template.copy(), model.faces.copy(), name
