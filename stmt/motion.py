"""What a reader returns: a motion as the file holds it, before any body poses it.

Readers parse, bodies pose (see ``shared/DESIGN.md``): a BVH or ASF/AMC reader turns
a file into a :class:`SkeletonMotion` (its own joint names, rest offsets, per-frame
local rotations and translations, frame rate), an AMASS reader into
:class:`stmt.io.amass.AmassMotion` (SMPL-family parameters), and a mesh reader
straight into a :class:`stmt.sequence.MeshSequence` (the vertices are the motion).
:mod:`stmt.retarget` maps a skeleton onto a body's rig; :mod:`stmt.body` poses it.
"""

from __future__ import annotations

from dataclasses import dataclass
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

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])

    def take(self, frames: np.ndarray | None) -> SkeletonMotion:
        """The motion at the given frame indices only (all frames when None)."""
        if frames is None:
            return self
        from dataclasses import replace

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
