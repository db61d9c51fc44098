"""Bodies pose motions: one table picks the body for a motion, :func:`pose_motion` poses it.

- :mod:`stmt.body.smpl`: SMPL+H / SMPL-X from the user's own model files
  (``--body-models DIR`` or ``$STMT_BODY_MODELS``) and fast linear blend
  skinning of a vertex subset.
- :mod:`stmt.body.anny`: the free anny body (ships its data, runs offline), posed from
  any skeleton through :mod:`stmt.retarget`.

==========================  ========================================================
motion (from a reader)      body
==========================  ========================================================
SkeletonMotion (BVH, AMC)   anny
AmassMotion (AMASS npz)     its own SMPL family when model files are known
                            (``body_models`` or ``$STMT_BODY_MODELS``), else anny
==========================  ========================================================

Nothing heavy is imported here, so ``import stmt.body.smpl`` does not pull in anny
and neither pulls in torch until something is posed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from stmt.errors import InputError

BODIES = ("auto", "smplh", "smplx", "anny")

# The optional ``frames`` argument: indices, or (num_frames, fps) -> indices.
Frames = np.ndarray | Callable[[int, float], np.ndarray]


def select_frames(frames: Frames | None, num_frames: int, fps: float) -> np.ndarray | None:
    """Sorted unique frame indices to pose for a ``frames`` argument; None (pose all)
    when ``frames`` is None or lists every frame."""
    if frames is None:
        return None
    if callable(frames):
        frames = frames(num_frames, fps)
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


def pose_motion(
    motion,
    *,
    body: str = "auto",
    body_models: str | Path | None = None,
    vertex_ids: np.ndarray | None = None,
    frames: Frames | None = None,
    joint_map: dict[str, str] | None = None,
):
    """Pose a reader's motion on the body the table above picks.

    Args:
        motion: a :class:`stmt.motion.SkeletonMotion`, :class:`stmt.motion.JointPositions`
            or :class:`stmt.io.amass.AmassMotion`.
        body: "auto" | "smplh" | "smplx" | "anny" (skeletons: "auto" or "anny").
        body_models: the SMPL-family model folder (AMASS motions).
        vertex_ids: (N,) ids into the body's full mesh: pose only those vertices.
        frames: pose only these frames; the others repeat the nearest posed frame before
            them (:func:`fill_frames`), so the sequence keeps the true length and fps.
        joint_map: {their joint: canonical joint} for a skeleton of an unknown rig.

    Returns:
        A :class:`stmt.sequence.MeshSequence` (float32, metres, Z up).
    """
    from stmt.motion import JointPositions, SkeletonMotion

    check_body(body)
    if isinstance(motion, (SkeletonMotion, JointPositions)):
        if body not in ("auto", "anny"):
            raise InputError(
                motion.source,
                f"skeleton files are posed on the anny body only (--body auto or anny), not {body}",
            )
        return _pose_skeleton(motion, vertex_ids, frames, joint_map)
    from stmt.io.amass import pose_amass

    return pose_amass(motion, body, body_models, vertex_ids, frames)


def _pose_skeleton(motion, vertex_ids, frames, joint_map):
    from stmt.body.anny import bone_labels, pose_positions, rest_mesh
    from stmt.body.smpl import check_vertex_ids
    from stmt.retarget import canonical_motion
    from stmt.sequence import MeshSequence

    rest_vertices, faces = rest_mesh()
    ids = check_vertex_ids(vertex_ids, len(rest_vertices), motion.source)
    total = motion.num_frames
    sel = select_frames(frames, total, motion.fps)
    canonical = canonical_motion(motion.take(sel), joint_map)
    vertices, joints = pose_positions(canonical.positions, ids)
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
        joint_names=list(bone_labels()),
        rig=f"{canonical.rig.describe()}, unit {canonical.unit}, up {canonical.up}",
        warnings=list(canonical.warnings),
    )
