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
from stmt.retarget import RIGS, _key, _sided

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
        motion,
        names=tuple(t if t.startswith("Extra_") else n for n, t in zip(motion.names, theirs)),
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


# Rigs that no table of stmt.retarget lists, as such files name their joints, written as
# stmt.retarget.RIGS are ({their name pattern: CMU name}, expanded by
# stmt.retarget._sided). Loading these exercises the inference from side names and the
# joint tree (stmt.retarget.infer_joints).
UNLISTED_RIGS: dict[str, dict[str, str]] = {
    # Unreal Engine mannequin (no hip joint bones there: named here as a rig would)
    "unreal": {
        "pelvis": "Hips", "hip_joint_{s}": "{C}HipJoint", "thigh_{s}": "{Side}UpLeg",
        "calf_{s}": "{Side}Leg", "foot_{s}": "{Side}Foot", "ball_{s}": "{Side}ToeBase",
        "spine_01": "LowerBack", "spine_02": "Spine", "spine_03": "Spine1", "neck_01": "Neck",
        "neck_02": "Neck1", "head": "Head", "clavicle_{s}": "{Side}Shoulder",
        "upperarm_{s}": "{Side}Arm", "lowerarm_{s}": "{Side}ForeArm", "hand_{s}": "{Side}Hand",
        "index_metacarpal_{s}": "{Side}FingerBase", "index_01_{s}": "{Side}HandIndex1",
        "thumb_01_{s}": "{C}Thumb",
    },
    # OptiTrack Motive
    "motive": {
        "Hip": "Hips", "{S}Pelvis": "{C}HipJoint", "{S}Thigh": "{Side}UpLeg",
        "{S}Shin": "{Side}Leg", "{S}Foot": "{Side}Foot", "{S}Toe": "{Side}ToeBase",
        "Ab": "LowerBack", "Spine": "Spine", "Chest": "Spine1", "Neck": "Neck",
        "Neck2": "Neck1", "Head": "Head", "{S}Shoulder": "{Side}Shoulder",
        "{S}UArm": "{Side}Arm", "{S}FArm": "{Side}ForeArm", "{S}Hand": "{Side}Hand",
        "{S}Index1": "{Side}FingerBase", "{S}Index2": "{Side}HandIndex1",
        "{S}Thumb1": "{C}Thumb",
    },
    # Kinect-style names, the side last (here ShoulderLeft is the upper arm, HandLeft a
    # finger joint below WristLeft)
    "kinect": {
        "SpineBase": "Hips", "PelvisSide{Side}": "{C}HipJoint", "Hip{Side}": "{Side}UpLeg",
        "Knee{Side}": "{Side}Leg", "Ankle{Side}": "{Side}Foot", "Foot{Side}": "{Side}ToeBase",
        "SpineLow": "LowerBack", "SpineMid": "Spine", "SpineShoulder": "Spine1", "Neck": "Neck",
        "NeckUpper": "Neck1", "Head": "Head", "Clavicle{Side}": "{Side}Shoulder",
        "Shoulder{Side}": "{Side}Arm", "Elbow{Side}": "{Side}ForeArm",
        "Wrist{Side}": "{Side}Hand", "Hand{Side}": "{Side}FingerBase",
        "HandTip{Side}": "{Side}HandIndex1", "Thumb{Side}": "{C}Thumb",
    },
    # MakeHuman / Blender (".L" suffixes); the forearm is cut in two segments below
    "makehuman": {
        "root": "Hips", "pelvis.{S}": "{C}HipJoint", "upperleg01.{S}": "{Side}UpLeg",
        "lowerleg01.{S}": "{Side}Leg", "foot.{S}": "{Side}Foot", "toe1-1.{S}": "{Side}ToeBase",
        "spine05": "LowerBack", "spine04": "Spine", "spine03": "Spine1", "neck01": "Neck",
        "neck02": "Neck1", "head": "Head", "clavicle.{S}": "{Side}Shoulder",
        "upperarm01.{S}": "{Side}Arm", "lowerarm01.{S}": "{Side}ForeArm",
        "wrist.{S}": "{Side}Hand", "metacarpal2.{S}": "{Side}FingerBase",
        "finger2-1.{S}": "{Side}HandIndex1", "finger1-1.{S}": "{C}Thumb",
    },
    # bones named "parent_child", l/r prefixes (a games-industry rig seen in research code)
    "games": {
        "RootJoint": "Hips", "{s}Pelvis": "{C}HipJoint", "{s}Hip": "{Side}UpLeg",
        "{s}Knee": "{Side}Leg", "{s}Ankle": "{Side}Foot", "{s}ToeJoint": "{Side}ToeBase",
        "pelvis_lowerback": "LowerBack", "lowerback_midback": "Spine",
        "lowerback_torso": "Spine1", "torso_neck": "Neck", "neck_upperneck": "Neck1",
        "torso_head": "Head", "{s}Torso_Clavicle": "{Side}Shoulder", "{s}Shoulder": "{Side}Arm",
        "{s}Elbow": "{Side}ForeArm", "{s}Wrist": "{Side}Hand",
        "{s}Finger_Base": "{Side}FingerBase", "{s}Finger_Tip": "{Side}HandIndex1",
        "{s}Thumb": "{C}Thumb",
    },
    # Maya Advanced Skeleton: _M/_L/_R suffixes, limbs cut by "Part" joints (below)
    "advancedskeleton": {
        "Root_M": "Hips", "Pelvis_{S}": "{C}HipJoint", "Hip_{S}": "{Side}UpLeg",
        "Knee_{S}": "{Side}Leg", "Ankle_{S}": "{Side}Foot", "Toes_{S}": "{Side}ToeBase",
        "Spine1_M": "LowerBack", "Spine2_M": "Spine", "Chest_M": "Spine1", "Neck_M": "Neck",
        "NeckUpper_M": "Neck1", "Head_M": "Head", "Scapula_{S}": "{Side}Shoulder",
        "Shoulder_{S}": "{Side}Arm", "Elbow_{S}": "{Side}ForeArm", "Wrist_{S}": "{Side}Hand",
        "MiddleFinger1_{S}": "{Side}FingerBase", "MiddleFinger2_{S}": "{Side}HandIndex1",
        "ThumbFinger1_{S}": "{C}Thumb",
    },
}  # fmt: skip
# Bones of UNLISTED_RIGS cut in segments: (the CMU joint whose bone is cut, the new
# joint's name), applied in order (cutting a new joint's bone cuts it again).
UNLISTED_SEGMENTS = {
    "makehuman": [("LeftForeArm", "lowerarm02.L"), ("RightUpLeg", "upperleg02.R")],
    "advancedskeleton": [
        ("LeftForeArm", "ElbowPart1_L"), ("Extra_ElbowPart1_L", "ElbowPart2_L"),
        ("RightArm", "ShoulderPart1_R"), ("RightUpLeg", "HipPart1_R"),
    ],
}  # fmt: skip


def unlisted_names(rig: str) -> dict[str, str]:
    """{CMU name: ``rig``'s name} of an unlisted rig."""
    return {cmu: theirs for theirs, cmu in _sided(UNLISTED_RIGS[rig]).items()}


def split_bone(motion: SkeletonMotion, joint: str, name: str) -> SkeletonMotion:
    """``motion`` with a joint ``name`` inserted halfway along ``joint``'s bone to its
    child, as rigs that cut a bone in segments have. The new joint turns with ``joint``
    (identity local rotation), so every other joint stays where it was."""
    j = motion.names.index(joint)
    child = next(c for c, p in enumerate(motion.parents) if p == j)
    half = motion.offsets[child] / 2
    k = len(motion.names)
    names, parents = [*motion.names, name], list(motion.parents) + [j]
    parents[child] = k
    offsets = np.vstack([motion.offsets, half])
    offsets[child] = half
    t = motion.rotations.shape[0]
    rot = np.concatenate([motion.rotations, np.broadcast_to(np.eye(3), (t, 1, 3, 3))], axis=1)
    trans = np.concatenate([motion.translations, np.broadcast_to(half, (t, 1, 3))], axis=1)
    trans[:, child] = half
    ends = np.vstack([motion.end_offsets, np.zeros((1, 3))])
    # the writer wants parents before children: move the new joint before its child
    order = [i for i in range(k + 1) if i != k]
    order.insert(order.index(child), k)
    inv = {old: new for new, old in enumerate(order)}
    return replace(
        motion, names=tuple(names[i] for i in order),
        parents=tuple(inv[parents[i]] if parents[i] >= 0 else -1 for i in order),
        offsets=offsets[order], end_offsets=ends[order], rotations=rot[:, order],
        translations=trans[:, order],
    )  # fmt: skip


def unlisted(motion: SkeletonMotion, rig: str, seed: int = 0) -> SkeletonMotion:
    """The CMU-named ``motion`` renamed into an unlisted rig, its bones cut where that rig
    cuts them, with a random rest pose."""
    table = unlisted_names(rig)
    for first, second in UNLISTED_SEGMENTS.get(rig, []):
        motion = split_bone(motion, first, f"Extra_{second}")
    moved = reexpress(motion, "cmu", seed=seed)  # CMU names kept, rest pose moved
    names = tuple(
        n.replace("Extra_", "") if n.startswith("Extra_") else table.get(n, f"Extra_{n}")
        for n in moved.names
    )  # fmt: skip
    return replace(moved, names=names)
