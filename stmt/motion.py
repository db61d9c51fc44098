"""What a reader returns: a motion as the file holds it, before any body poses it.

Readers parse, bodies pose (see ``shared/DESIGN.md``): a BVH or ASF/AMC reader turns
a file into a :class:`SkeletonMotion` (its own joint names, rest offsets, per-frame
local rotations and translations, frame rate), a joint-position reader (a Kinect
CSV) into :class:`JointPositions`, an AMASS reader into
:class:`AmassMotion` (SMPL-family parameters), and a mesh reader
straight into a :class:`stmt.sequence.MeshSequence` (the vertices are the motion).
:mod:`stmt.retarget` maps a skeleton onto a body's rig; :mod:`stmt.body` poses it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np


@dataclass
class SkeletonMotion:
    """A skeleton animation in the file's own units, axes and joint names.

    Convention (BVH's, which ASF/AMC is converted to): in the rest pose every joint
    frame is aligned with the world axes; a joint's global rotation is
    ``G_j = G_parent @ R_j`` and its position ``p_j = p_parent + G_parent @ t_j``,
    with ``t_j`` its local translation (the rest ``offsets`` unless the file animates
    it). The rest pose may be anything (T-pose, A-pose, bones along an axis): nothing
    downstream assumes it is upright.

    Attributes:
        names: joint names as in the file; parents come before children.
        parents: (J,) parent index, -1 for the root (index 0).
        offsets: (J, 3) rest offset of each joint from its parent, file units.
        end_offsets: (J, 3) where a leaf's bone ends (BVH ``End Site``), zeros if none.
        rotations: (T, J, 3, 3) float64 local rotation of each joint.
        translations: (T, J, 3) float64 local translation of each joint (the root's:
            its position in the world), file units.
        fps: frames per second.
        unit: metres per file unit when the format states it (ASF), else None
            (detected from the leg length by :mod:`stmt.retarget`).
        up: the world's up axis when the format states it ("y" for ASF/AMC), else
            None (detected from the motion by :mod:`stmt.retarget`).
        source: the file, named in errors.
        format: "bvh" or "asf-amc".
        warnings: what reading found odd and dealt with (:func:`hold_detached_first_frame`).
    """

    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray
    end_offsets: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray
    fps: float
    unit: float | None = None
    up: str | None = None
    source: Path | None = None
    format: str = "bvh"
    warnings: tuple[str, ...] = ()

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])

    def take(self, frames: np.ndarray | None) -> SkeletonMotion:
        """The motion at the given frame indices only (all frames when None)."""
        if frames is None:
            return self
        return replace(
            self, rotations=self.rotations[frames], translations=self.translations[frames]
        )

    def forward_kinematics(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions (T, J, 3), global rotations (T, J, 3, 3)) in the file's world."""
        rot = self.rotations
        glob = np.empty_like(rot)
        pos = np.empty(rot.shape[:2] + (3,))
        for j, p in enumerate(self.parents):
            if p < 0:
                glob[:, j], pos[:, j] = rot[:, j], self.translations[:, j]
            else:
                glob[:, j] = glob[:, p] @ rot[:, j]
                pos[:, j] = pos[:, p] + np.einsum("tij,tj->ti", glob[:, p], self.translations[:, j])
        return pos, glob


@dataclass
class JointPositions:
    """A skeleton given as joint positions per frame, without rotations: what a depth
    camera (Kinect) or a marker solver without a rig writes.

    Attributes:
        names: joint names as in the file (their parents are not known).
        positions: (T, J, 3) float64 joint positions, file units and axes.
        fps: frames per second (a file with time stamps is resampled to a steady rate).
        unit, up, source, format, warnings: as :class:`SkeletonMotion`.
    """

    names: tuple[str, ...]
    positions: np.ndarray
    fps: float
    unit: float | None = None
    up: str | None = None
    source: Path | None = None
    format: str = "joint-csv"
    warnings: tuple[str, ...] = ()

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    def take(self, frames: np.ndarray | None) -> JointPositions:
        """The motion at the given frame indices only (all frames when None)."""
        if frames is None:
            return self
        return replace(self, positions=self.positions[frames])


# A first step this share of the body's size and this many times the median step, the
# next step under half of it: not motion. HDM05's test clips with a T-pose put before
# them jump 0.40-1.29 body sizes from it at 24-120 fps and then move on at most 0.30 of
# that; the clips' own first steps are at most 0.21 body sizes at 24 fps, 0.04 at 120.
_DETACHED_OF_BODY = 0.25
_DETACHED_OF_STEP = 3.0
_DETACHED_FRAMES = 512  # the frames the step is compared over (a take may be hours long)


def detached_first_frame(positions: np.ndarray) -> bool:
    """Whether frame 0 of joint positions (T, J, 3) stands apart from the motion: the
    body jumps from it to frame 1 by over a quarter of its size and three times the
    median step of the frames given, then moves on at under half that pace. CMU's BVH
    conversions (cgspeed) add a T-pose as the first frame of every file, and some
    exporters write the bind pose there; real motion never jumps so."""
    if positions.shape[0] < 4:
        return False
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=-1).max(axis=1)  # (T-1,)
    size = float(np.median(np.ptp(positions, axis=1).max(axis=-1)))  # the body's extent
    jump, usual = float(steps[0]), float(np.median(steps[1:]))
    return bool(
        jump > _DETACHED_OF_BODY * size
        and jump > _DETACHED_OF_STEP * usual
        and steps[1] < 0.5 * jump
    )


def hold_detached_first_frame(motion: SkeletonMotion) -> SkeletonMotion:
    """``motion`` with a first frame that stands apart from the motion
    (:func:`detached_first_frame`, over its first 512 frames) replaced by the second,
    and a warning saying so; the frame count and times stay the file's. Any other motion
    as it is."""
    start = motion.take(np.arange(min(motion.num_frames, _DETACHED_FRAMES)))
    if not detached_first_frame(start.forward_kinematics()[0]):
        return motion
    rotations, translations = motion.rotations.copy(), motion.translations.copy()
    rotations[0], translations[0] = rotations[1], translations[1]
    note = (
        "the first frame is a pose apart from the motion (as the T-pose CMU's BVH "
        "conversions add): posed as the second frame"
    )
    return replace(
        motion, rotations=rotations, translations=translations,
        warnings=(*motion.warnings, note),
    )  # fmt: skip


#: The two SMPL families AMASS files hold: name, and pose columns per frame.
AMASS_FAMILIES = {"smplh": ("SMPL+H", 156), "smplx": ("SMPL-X", 165)}


@dataclass
class AmassMotion:
    """The parameters of one AMASS file, checked (:func:`stmt.io.amass.load_amass`).

    Attributes:
        kind: "smplh" or "smplx" (:data:`AMASS_FAMILIES`).
        poses: (T, 156 | 165) float64 axis-angle.
        trans: (T, 3) float64 metres.
        betas: (B,) float64, or None when the file has none.
        gender: "male" | "female" | "neutral", or None when the file has none.
        fps: frames per second.
        source: the file.
    """

    kind: str
    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray | None
    gender: str | None
    fps: float
    source: Path | None = None

    @property
    def format(self) -> str:
        return f"amass-{self.kind}"

    @property
    def num_frames(self) -> int:
        return int(self.poses.shape[0])

    def take(self, frames: np.ndarray | None) -> AmassMotion:
        """The motion at the given frame indices only (all frames when None)."""
        if frames is None:
            return self
        return replace(self, poses=self.poses[frames], trans=self.trans[frames])


def axis_angle_to_matrix(rotvec: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Rodrigues: (..., 3) axis-angle (radians) -> (..., 3, 3) float64 rotation matrices,
    ``I + sin(a) K + (1 - cos(a)) K^2`` with K the cross-product matrix of the unit axis.

    ``eps`` > 0 takes the angle as ``|rotvec + eps|`` and the axis as ``rotvec / angle``,
    smplx's convention (its ``batch_rodrigues`` uses 1e-8), for results that match it.
    """
    r = np.asarray(rotvec, dtype=np.float64)
    if eps > 0:
        angle = np.linalg.norm(r + eps, axis=-1, keepdims=True)  # (..., 1)
        axis = r / angle
    else:
        angle = np.linalg.norm(r, axis=-1, keepdims=True)
        axis = r / np.where(angle > 1e-12, angle, 1.0)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(r.shape[:-1] + (3, 3))
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)
