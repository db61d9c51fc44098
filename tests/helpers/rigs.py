"""Re-express a real clip in another rig's joint names and rest pose (test fixtures).

The clip (a few frames of HDM05, ``tests/data/hdm05``) is read as a
:class:`~stmt.motion.SkeletonMotion` with its ASF bone names renamed to the CMU BVH
names. :func:`reexpress` then renames it into a rig of :data:`stmt.retarget.RIGS` and
moves its rest pose: each joint's rest frame is turned by a random rotation ``Q_j``
(offsets ``Q_parent @ o_j``, end sites ``Q_j @ e_j``, local rotations
``Q_parent @ R_j @ Q_j^T``), which leaves every joint's world position unchanged but
gives a rest pose that is neither a T-pose nor upright, as real rigs have.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from stmt.data.samples import write_bvh
from stmt.io.asf_amc import ASF_TO_BVH, amc_motion
from stmt.motion import SkeletonMotion
from stmt.retarget import RIGS, _key

DATA = Path(__file__).resolve().parents[1] / "data"
HDM05_CLIP = DATA / "hdm05" / "HDM_bd_kickLFront1Reps_001_first60_120.amc"
BANDAI_CLIP = DATA / "bandai_walk-turn-left_normal_001_first30.bvh"

# Twist / share bones an iClone rig has between the limb joints (leaves here).
ICLONE_EXTRAS = {
    "CC_Base_L_Upperarm": "CC_Base_L_UpperarmTwist01",
    "CC_Base_L_Forearm": "CC_Base_L_ForearmTwist01",
    "CC_Base_R_Thigh": "CC_Base_R_ThighTwist01",
    "CC_Base_L_Calf": "CC_Base_L_CalfTwist01",
    "CC_Base_Hip": "CC_Base_Pelvis",
}


def cmu_clip() -> SkeletonMotion:
    """The HDM05 fixture with CMU BVH joint names, file units (1/0.45 inch), Y up."""
    m = amc_motion(HDM05_CLIP)
    return replace(m, names=tuple(ASF_TO_BVH[n] for n in m.names), unit=None, up=None)


def names_in(rig: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """CMU names -> ``rig``'s names; joints that rig has no name for become ``Extra_*``
    (mapped by no rig)."""
    canon = {_key(k): v for k, v in RIGS["cmu"].items()}
    theirs: dict[str, str] = {}
    for name, target in RIGS[rig].items():
        theirs.setdefault(target, name)
    out = []
    for n in names:
        c = canon.get(_key(n))
        out.append(theirs.get(c, f"Extra_{n}") if c is not None else f"Extra_{n}")
    if rig == "mixamo":
        out = [n if n.startswith("Extra_") else f"mixamorig:{n}" for n in out]
    return tuple(out)


def restricted_to(rig: str, motion: SkeletonMotion) -> SkeletonMotion:
    """The CMU clip with the joints ``rig`` cannot name renamed ``Extra_*`` too, so that
    both drive the same joints of the body."""
    theirs = names_in(rig, motion.names)
    return replace(
        motion, names=tuple(t if t.startswith("Extra_") else n for n, t in zip(motion.names, theirs))
    )


def _random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    return q * np.linalg.det(q)[:, None, None]  # proper rotations


def reexpress(motion: SkeletonMotion, rig: str, seed: int = 0) -> SkeletonMotion:
    """``motion`` in ``rig``'s joint names and a random rest pose (module docstring);
    iClone also gets twist/share leaf bones, which must not change the pose."""
    rng = np.random.default_rng(seed)
    j = len(motion.names)
    q = _random_rotations(j, rng)  # (J, 3, 3) rest frame change of each joint
    parent_q = np.stack([q[p] if p >= 0 else np.eye(3) for p in motion.parents])
    offsets = np.einsum("jab,jb->ja", parent_q, motion.offsets)
    ends = np.einsum("jab,jb->ja", q, motion.end_offsets)
    rot = parent_q[None] @ motion.rotations @ np.swapaxes(q, 1, 2)[None]
    trans = np.broadcast_to(offsets, motion.translations.shape).copy()
    trans[:, 0] = motion.translations[:, 0]
    names, parents = list(names_in(rig, motion.names)), list(motion.parents)
    if rig == "iclone":
        t = rot.shape[0]
        for host, extra in ICLONE_EXTRAS.items():
            k = names.index(host)
            names.append(extra)
            parents.append(k)
            offsets = np.vstack([offsets, rng.normal(scale=2.0, size=(1, 3))])
            ends = np.vstack([ends, np.zeros((1, 3))])
            rot = np.concatenate([rot, _random_rotations(t, rng)[:, None]], axis=1)
            trans = np.concatenate([trans, np.broadcast_to(offsets[-1], (t, 1, 3))], axis=1)
    return replace(
        motion, names=tuple(names), parents=tuple(parents), offsets=offsets,
        end_offsets=ends, rotations=rot, translations=trans,
    )  # fmt: skip


def to_bvh(motion: SkeletonMotion, path: Path) -> Path:
    """Write a skeleton motion whose non-root joints are not translated as a BVH file."""
    return write_bvh(
        path, list(motion.names), list(motion.parents), motion.offsets, motion.end_offsets,
        motion.rotations, motion.translations[:, 0], motion.fps,
    )  # fmt: skip
