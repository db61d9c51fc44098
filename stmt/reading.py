"""A file read and posed: the one place that composes :mod:`stmt.io` and :mod:`stmt.body`.

Readers parse, bodies pose, and neither imports the other. The path of a file:

1. :func:`read`: the format detected once (:func:`stmt.io.detect_format`) and the file
   parsed into a motion (:func:`stmt.io.read_motion`): a
   :class:`~stmt.motion.SkeletonMotion`, :class:`~stmt.motion.JointPositions`,
   :class:`~stmt.motion.AmassMotion`, or a :class:`~stmt.sequence.MeshSequence` for
   mesh files (the vertices are the motion);
2. :func:`topology`: the rest mesh the motion will be posed on, known before posing
   (to pick a vertex template first);
3. :func:`stmt.body.pose_motion`: the motion on its body, only the vertices and frames
   asked for (a mesh sequence as it is).

:func:`read_sequence` is the three in one call; :func:`body_topology` is step 2 for a
format, without reading a file (``stmt prepare`` builds its template from it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stmt.body import BODIES, amass_body, check_body, pose_motion, rest_mesh
from stmt.errors import InputError
from stmt.io import detect_format, read_motion
from stmt.io.detect import FORMATS, SKELETON_FORMATS
from stmt.io.mesh import read_rest_mesh
from stmt.motion import AmassMotion, JointPositions, SkeletonMotion, hold_detached_first_frame
from stmt.sequence import MeshSequence

__all__ = ["BODIES", "body_topology", "pose_motion", "read", "read_sequence", "topology"]

Motion = SkeletonMotion | JointPositions | AmassMotion | MeshSequence
_NAMES = {"bvh": "BVH", "asf-amc": "ASF/AMC", "joint-csv": "joint-position",
          "joint-mat": "joint-position", "fbx": "FBX",
          "gltf": "glTF"}  # fmt: skip


def read(path: str | Path, body: str = "auto", fmt: str | None = None) -> Motion:
    """Parse ``path`` into a motion, before any body poses it; its format is detected
    here unless the caller knows it (``fmt``).

    Raises :class:`InputError` at once for a skeleton file and a body other than anny
    (``--body auto`` or ``anny``), before the file is parsed."""
    check_body(body)
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt in SKELETON_FORMATS and body not in ("auto", "anny"):
        raise InputError(
            path,
            f"{_NAMES[fmt]} files are posed on the anny body only (--body auto or anny), "
            f"not {body}",
        )
    motion = read_motion(path, fmt)
    if isinstance(motion, SkeletonMotion):  # a T-pose or bind pose before the take
        motion = hold_detached_first_frame(motion)
    return motion


def topology(
    motion: Motion, body: str = "auto", body_models: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rest_vertices (V, 3) float32, faces (F, 3) int64 | None)`` of the mesh
    :func:`stmt.body.pose_motion` will give ``motion``: the body's canonical rest mesh, or a mesh
    sequence's own first frame (faces None for point data)."""
    if isinstance(motion, MeshSequence):
        return motion.rest_vertices, motion.faces
    if isinstance(motion, AmassMotion):
        name, root = amass_body(body, body_models, motion.kind, motion.source)
        return rest_mesh(name, root)
    return rest_mesh("anny")


def read_sequence(path: str | Path, *, body: str = "auto", **posing) -> MeshSequence:
    """Read a MoCap file or mesh folder as a posed mesh sequence (float32, metres, Z up).

    Args:
        path: AMASS SMPL+H / SMPL-X ``.npz``, mesh-sequence ``.npz``, ``.bvh``,
            ``.amc`` (its ``.asf`` is found by the ASF/AMC reader), ``.fbx``,
            ``.glb`` / ``.gltf`` / ``.vrma`` (``FILE#TAKE`` for one take of several;
            the first take otherwise), a joint-position ``.csv``, or a folder of
            per-frame ``.obj`` / ``.ply`` files.
        body: "auto" | "smplh" | "smplx" | "anny": the body parameter files are posed
            on. "auto": AMASS files use their own SMPL family when a body-model folder
            is known (``body_models`` or ``$STMT_BODY_MODELS``), else anny; skeleton
            files always use anny. Mesh sequences carry their own vertices and
            ignore ``body`` and ``body_models``.
        posing: the other keywords of :func:`stmt.body.pose_motion`:

            body_models: folder with SMPL-family model files (``smplh/SMPLH_MALE.npz``
            or ``smplh/male/model.npz`` layouts; likewise ``smplx/``).
        vertex_ids: (N,) integer ids into the full mesh of the chosen body: only those
            vertices are posed (fast path) and ``seq.vertex_ids`` is set. ``seq.faces``
            and ``seq.rest_vertices`` still describe the full mesh.
        frames: the frame indices the caller will look at. Parameter files (AMASS,
            skeletons) then pose only those frames; the sequence keeps the file's frame
            count and fps (true duration), and every other frame repeats the nearest
            listed frame before it (:func:`stmt.body.fill_frames`). Mesh sequences are
            read whole.
        joint_map: {their joint name: canonical joint} for a skeleton whose rig
            :mod:`stmt.retarget` does not know (``--joint-map FILE``).

    Returns:
        The sequence. For body models ``rest_vertices`` is canonical (mean shape, zero
        pose: the same for every file posed on that body); for mesh sequences it is
        the first frame.

    Raises:
        InputError: one line naming the file and what was expected.
    """
    return pose_motion(read(path, body), body=body, **posing)


def body_topology(
    body: str = "auto",
    body_models: str | Path | None = None,
    fmt: str = "amass-smplh",
    path: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The canonical rest mesh files of format ``fmt`` are posed on, without reading a file.

    Args:
        body, body_models: as in :func:`read_sequence`.
        fmt: one of :data:`stmt.io.detect.FORMATS`.
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
        rest, faces = read_rest_mesh(path, fmt)
        if faces is None:
            raise InputError(path, "the mesh sequence has no faces; a surface template needs them")
        return rest, faces, "mesh"
    src = None if path is None else Path(path)
    if fmt in SKELETON_FORMATS:
        if body not in ("auto", "anny"):
            raise InputError(src, f"{fmt} files are posed on the anny body only, not {body}")
        name, root = "anny", None
    else:
        name, root = amass_body(body, body_models, fmt.removeprefix("amass-"), src)
    rest, faces = rest_mesh(name, root)
    return rest, faces, name
