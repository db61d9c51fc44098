"""Bodies pose motions: one table picks the body for a motion, :func:`pose_motion` poses it.

- :mod:`stmt.body.smpl`: SMPL+H / SMPL-X from the user's own model files
  (``--body-models DIR`` or ``$STMT_BODY_MODELS``) and fast linear blend
  skinning of a vertex subset.
- :mod:`stmt.body.anny`: the free anny body (ships its data, runs offline), posed from
  any skeleton through :mod:`stmt.retarget`.

==========================  ========================================================
motion (from a reader)      body
==========================  ========================================================
MeshSequence (mesh files)   none: the file's own vertices
SkeletonMotion (BVH, AMC,   anny
FBX, glTF), JointPositions
AmassMotion (AMASS npz)     its own SMPL family when model files are known
                            (``body_models`` or ``$STMT_BODY_MODELS``), else anny
                            (:func:`amass_body`)
==========================  ========================================================

Bodies never parse files (:mod:`stmt.io` does; :mod:`stmt.reading` composes the two).
Nothing heavy is imported here: anny and torch load when something is posed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stmt.body import anny, smpl
from stmt.errors import InputError
from stmt.motion import AMASS_FAMILIES, AmassMotion, JointPositions, SkeletonMotion
from stmt.retarget import canonical_motion
from stmt.sequence import MeshSequence, check_vertex_ids

BODIES = ("auto", "smplh", "smplx", "anny")


def select_frames(frames: np.ndarray | None, num_frames: int) -> np.ndarray | None:
    """Sorted unique frame indices to pose for a ``frames`` argument; None (pose all)
    when ``frames`` is None or lists every frame."""
    if frames is None:
        return None
    sel = np.unique(np.asarray(frames, dtype=np.int64).reshape(-1))  # (K,) sorted
    if sel.size and (sel[0] < 0 or sel[-1] >= num_frames):
        raise ValueError(f"frames must lie in [0, {num_frames}), got {sel[0]}..{sel[-1]}")
    return None if sel.size == num_frames else sel


def fill_frames(x: np.ndarray | None, sel: np.ndarray | None, num_frames: int):
    """(K, ...) values posed at frames ``sel`` -> (num_frames, ...): frame t holds the
    last posed frame at or before t (the first posed frame before that). Identity when
    ``sel`` is None."""
    if x is None or sel is None:
        return x
    if sel.size == 0:
        raise ValueError("no frames selected")
    at = np.searchsorted(sel, np.arange(num_frames), side="right") - 1  # (T,)
    return x[np.maximum(at, 0)]


def check_body(body: str) -> None:
    if body not in BODIES:
        raise ValueError(f"body must be one of {BODIES}, got {body!r}")


def amass_body(
    body: str, body_models, kind: str, source: Path | None = None
) -> tuple[str, Path | None]:
    """``(body name, body-model folder | None)`` that AMASS parameters of ``kind``
    ("smplh" | "smplx") are posed on: the table of the module docstring.

    - ``"auto"``: the file's own SMPL family when a body-model folder is given
      (``body_models`` or ``$STMT_BODY_MODELS``), else the free anny body;
    - ``"smplh"`` / ``"smplx"``: must match the file (156 vs 165 columns);
    - ``"anny"``: the 22 SMPL body joints (root + body, first 66 values) mapped onto
      anny by :func:`stmt.body.anny.pose_from_smpl`.
    """
    if body == "anny":
        return "anny", None
    root = smpl.models_dir(body_models)
    if body == "auto":
        return (kind, root) if root is not None else ("anny", None)
    name, width = AMASS_FAMILIES[kind]
    if body != kind:
        raise InputError(
            source,
            f"this file holds {name} parameters ({width} pose columns) and cannot "
            f"be posed on --body {body}; use --body {kind}, auto or anny",
        )
    if root is None:
        raise InputError(
            source,
            f"--body {body} needs the {name} model files: pass --body-models DIR "
            "or set STMT_BODY_MODELS (or use --body anny)",
        )
    return kind, root


def rest_mesh(name: str, root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The canonical rest mesh of body ``name`` ("anny" | "smplh" | "smplx", the latter
    from the model folder ``root``): ``(vertices (V, 3) float32, faces (F, 3) int64)``,
    the same for every motion posed on it."""
    if name == "anny":
        rest, faces = anny.rest_mesh()
        return np.asarray(rest, dtype=np.float32), np.asarray(faces, dtype=np.int64)
    model = smpl.load_model(smpl.canonical_model_file(root, name), name)
    return model.v_template.copy(), model.faces.copy()


def pose_motion(
    motion: SkeletonMotion | JointPositions | AmassMotion | MeshSequence,
    *,
    body: str = "auto",
    body_models: str | Path | None = None,
    vertex_ids: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    joint_map: dict[str, str] | None = None,
) -> MeshSequence:
    """Pose a reader's motion on the body the table above picks.

    Args:
        motion: a :class:`~stmt.motion.SkeletonMotion`, :class:`~stmt.motion.JointPositions`
            or :class:`~stmt.motion.AmassMotion`; a mesh sequence's reader gives a
            :class:`~stmt.sequence.MeshSequence`, posed already: it comes back as it is,
            restricted to ``vertex_ids``.
        body: "auto" | "smplh" | "smplx" | "anny" (skeletons: "auto" or "anny").
        body_models: the SMPL-family model folder (AMASS motions).
        vertex_ids: (N,) ids into the body's full mesh: pose only those vertices.
        frames: pose only these frames; the others repeat the nearest posed frame before
            them (:func:`fill_frames`), so the sequence keeps the true length and fps,
            and lists the posed ones in ``posed``.
        joint_map: {their joint: canonical joint} for a skeleton of an unknown rig.

    Returns:
        A :class:`~stmt.sequence.MeshSequence` (float32, metres, Z up).
    """
    check_body(body)
    if isinstance(motion, MeshSequence):  # its own vertices: nothing to pose
        ids = check_vertex_ids(vertex_ids, motion.num_vertices, motion.source)
        return motion if ids is None else motion.subset(ids)
    if isinstance(motion, AmassMotion):
        return _pose_amass(motion, body, body_models, vertex_ids, frames)
    if body not in ("auto", "anny"):
        raise InputError(
            motion.source,
            f"skeleton files are posed on the anny body only (--body auto or anny), not {body}",
        )
    return _pose_skeleton(motion, vertex_ids, frames, joint_map)


def _pose_skeleton(motion, vertex_ids, frames, joint_map) -> MeshSequence:
    rest_vertices, faces = anny.rest_mesh()
    ids = check_vertex_ids(vertex_ids, len(rest_vertices), motion.source)
    total = motion.num_frames
    sel = select_frames(frames, total)
    canonical = canonical_motion(motion, joint_map, frames=sel)
    vertices, joints = anny.pose_positions(canonical.positions, ids)
    return MeshSequence(
        vertices=fill_frames(vertices, sel, total),
        faces=faces,
        fps=motion.fps,
        body="anny",
        source=motion.source,
        format=motion.format,
        joints=fill_frames(joints, sel, total),
        rest_vertices=rest_vertices,
        vertex_ids=ids,
        joint_names=list(anny.bone_labels()),
        rig=f"{canonical.rig.describe()}, unit {canonical.unit}, up {canonical.up}",
        posed=sel,
        warnings=[*motion.warnings, *canonical.warnings],
    )


def _pose_amass(motion: AmassMotion, body, body_models, vertex_ids, frames) -> MeshSequence:
    """AMASS parameters on the body :func:`amass_body` picks; ``vertex_ids`` poses only
    those vertices, ``frames`` only those frames."""
    path, fmt = motion.source, motion.format
    name, root = amass_body(body, body_models, motion.kind, path)
    total = motion.num_frames
    sel = select_frames(frames, total)
    part = motion.take(sel)
    if name == "anny":
        rest, faces = anny.rest_mesh()
        ids = check_vertex_ids(vertex_ids, len(rest), path)
        # root + 21 body joints
        vertices, joints = anny.pose_from_smpl(part.poses[:, :66], part.trans, None, ids)
        vertices, joints = fill_frames(vertices, sel, total), fill_frames(joints, sel, total)
        return MeshSequence(
            vertices=vertices, faces=faces, fps=motion.fps, body="anny", source=path, format=fmt,
            joints=joints, rest_vertices=rest, vertex_ids=ids, joint_names=list(anny.bone_labels()),
            posed=sel,
        )  # fmt: skip
    if motion.gender is None:
        raise InputError(
            path, "missing key 'gender' (male, female or neutral): it picks the model file"
        )
    if motion.betas is None:
        raise InputError(path, "missing key 'betas' (the body shape, e.g. 16 values)")
    model = smpl.load_model(smpl.find_model_file(root, name, motion.gender), name)
    canonical = smpl.load_model(smpl.canonical_model_file(root, name), name)
    if canonical.num_vertices != model.num_vertices:
        raise InputError(
            model.path,
            f"has {model.num_vertices} vertices but {canonical.path} has {canonical.num_vertices}",
        )
    ids = check_vertex_ids(vertex_ids, model.num_vertices, path)
    smpl.warn_dropped_betas(motion.betas, model, path)
    vertices, joints = smpl.pose(model, part.poses, part.trans, motion.betas, ids)
    vertices, joints = fill_frames(vertices, sel, total), fill_frames(joints, sel, total)
    return MeshSequence(
        vertices=vertices, faces=canonical.faces, fps=motion.fps, body=name, source=path, format=fmt,
        joints=joints, rest_vertices=canonical.v_template, vertex_ids=ids,
        joint_names=smpl.JOINT_NAMES[name], posed=sel,
    )  # fmt: skip
