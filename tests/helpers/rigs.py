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

import subprocess
import sys
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
# A take spent mostly bent to the floor: every 4th frame (30 fps) of a cut HDM05 clip
# of performer tr putting something down with the right hand.
HDM05_BEND = DATA / "hdm05" / "HDM_tr_depositFloorR_030_every4th.amc"
HDM05_UNIT_M = 0.0254 / 0.45  # metres per unit of the HDM05 skeleton (ASF "length 0.45")
ACCAD_LIE = DATA / "accad_female1_lie_every4th.bvh"  # a take spent lying on the floor

# Twist / share bones an iClone rig has between the limb joints (leaves here).
ICLONE_EXTRAS = {
    "CC_Base_L_Upperarm": "CC_Base_L_UpperarmTwist01",
    "CC_Base_L_Forearm": "CC_Base_L_ForearmTwist01",
    "CC_Base_R_Thigh": "CC_Base_R_ThighTwist01",
    "CC_Base_L_Calf": "CC_Base_L_CalfTwist01",
    "CC_Base_Hip": "CC_Base_Pelvis",
}


def _cmu_named(path: Path, fps: float = 120.0) -> SkeletonMotion:
    """An HDM05 AMC clip with CMU BVH joint names, file units (1/0.45 inch), Y up, as a
    BVH conversion holds it: no unit or up axis stated."""
    m = amc_motion(path, fps=fps)
    return replace(m, names=tuple(ASF_TO_BVH[n] for n in m.names), unit=None, up=None)


def cmu_clip() -> SkeletonMotion:
    """The HDM05 fixture with CMU BVH joint names (:func:`_cmu_named`)."""
    return _cmu_named(HDM05_CLIP)


def cmu_bend() -> SkeletonMotion:
    """:data:`HDM05_BEND` (30 fps) with CMU BVH joint names (:func:`_cmu_named`)."""
    return _cmu_named(HDM05_BEND, fps=30.0)


def with_first_frame(motion: SkeletonMotion, root_at: np.ndarray | None = None) -> SkeletonMotion:
    """``motion`` after a new first frame in its rest pose (every rotation the identity),
    as CMU's BVH conversions (cgspeed) begin each file with a T-pose; the root where the
    motion starts, or at ``root_at``."""
    eye = np.broadcast_to(np.eye(3), (1, *motion.rotations.shape[1:])).copy()
    first = motion.translations[:1].copy()
    if root_at is not None:
        first[0, 0] = root_at
    return replace(
        motion,
        rotations=np.concatenate([eye, motion.rotations]),
        translations=np.concatenate([first, motion.translations]),
    )


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


def inspect_error(path: Path) -> str:
    """The one ``stmt: error:`` line ``stmt inspect FILE`` ends with (exit status 2)."""
    proc = subprocess.run([sys.executable, "-m", "stmt", "inspect", str(path)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("stmt: error:")
    return lines[0]


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
UNLISTED_RIGS["mocapnet"] = {
    # MocapNET's BVH output (video to BVH): one-letter lowercase sides ("lhand", "lhip" the
    # thigh, "lshoulder" the upper arm)
    "hip": "Hips", "{s}buttock": "{C}HipJoint", "{s}hip": "{Side}UpLeg", "{s}knee": "{Side}Leg",
    "{s}foot": "{Side}Foot", "{s}toe": "{Side}ToeBase", "abdomen": "LowerBack",
    "abdomen2": "Spine", "chest": "Spine1", "neck": "Neck", "neck1": "Neck1", "head": "Head",
    "{s}collar": "{Side}Shoulder", "{s}shoulder": "{Side}Arm", "{s}elbow": "{Side}ForeArm",
    "{s}hand": "{Side}Hand", "{s}mid1": "{Side}FingerBase", "{s}mid2": "{Side}HandIndex1",
    "{s}thumb1": "{C}Thumb",
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


# ------------------------------------------------------------------ rig variants (issue 25)
# Each takes a real clip (the HDM05 excerpt, as CMU- or ASF-named SkeletonMotion) and
# re-expresses it as rigs in the wild write it.


def asf_clip() -> SkeletonMotion:
    """The HDM05 fixture with its ASF bone names (a joint at the start of its bone), as a
    BVH conversion holds it: no stated unit or up axis."""
    return replace(amc_motion(HDM05_CLIP), unit=None, up=None)


def renamed(
    motion: SkeletonMotion, names: dict[str, str] | None = None, case=None
) -> SkeletonMotion:
    """``motion`` with joints renamed (``names``: old -> new, others kept), then each
    name passed through ``case`` (``str.upper``, ``str.title`` ...)."""
    out = tuple((names or {}).get(n, n) for n in motion.names)
    return replace(motion, names=tuple(case(n) for n in out) if case else out)


def bone_ends(motion: SkeletonMotion) -> SkeletonMotion:
    """An ASF-named ``motion`` as a converter writes it that puts each bone's joint at the
    END of the bone (the joint "lfemur" at the knee, a leaf bone's joint at its tip), the
    root kept. A joint turns its children as the bone of its first child turned (where
    siblings turned differently, as the lower back and the hips, those siblings move
    slightly): the pose is this file's own, close to the clip's."""
    parents, n = motion.parents, len(motion.names)
    kids = {j: [c for c in range(n) if parents[c] == j] for j in range(n)}
    glob = motion.forward_kinematics()[1]  # (T, J, 3, 3)
    # joint j of the new skeleton sits where bone j ends; its rotation is its first child's
    new_glob = np.stack([glob[:, kids[j][0]] if kids[j] else glob[:, j] for j in range(n)], 1)
    new_glob[:, 0] = glob[:, 0]
    vec = np.stack(
        [motion.offsets[kids[j][0]] if kids[j] else motion.end_offsets[j] for j in range(n)]
    )  # (J, 3) each bone in its rest frame
    offsets = np.stack([vec[j] if j > 0 else motion.offsets[0] for j in range(n)])
    rot = np.stack(
        [
            new_glob[:, j]
            if parents[j] < 0
            else np.swapaxes(new_glob[:, parents[j]], 1, 2) @ new_glob[:, j]
            for j in range(n)
        ],
        axis=1,
    )
    # the root's children: bones from the root start at the root, so they sit at their vec
    trans = np.broadcast_to(offsets, motion.translations.shape).copy()
    trans[:, 0] = motion.translations[:, 0]
    return replace(
        motion, offsets=offsets, end_offsets=np.zeros_like(motion.end_offsets),
        rotations=rot, translations=trans,
    )  # fmt: skip


def without_head(motion: SkeletonMotion, head: str) -> SkeletonMotion:
    """``motion`` without its (leaf) head joint: the neck ends in an End Site where the
    head joint was, as rigs whose head is no joint have it."""
    j = motion.names.index(head)
    assert j not in motion.parents, "the head must be a leaf"
    return _cut_at(motion, [j])


def without_hands(motion: SkeletonMotion) -> SkeletonMotion:
    """``motion`` with every joint below the forearms cut off: each forearm ends in an
    End Site where its hand joint was (a Blender metarig or FreeMoCap export has no hand
    joints)."""
    return _cut_at(motion, [motion.names.index(f"{s}Hand") for s in ("Left", "Right")])


def _cut_at(motion: SkeletonMotion, cut: list[int]) -> SkeletonMotion:
    """``motion`` without the joints ``cut`` and all below them; each parent of a cut joint
    ends in an End Site where that joint was."""
    drop, ends = set(cut), motion.end_offsets.copy()
    for j in cut:
        ends[motion.parents[j]] = motion.offsets[j]
    while extra := {i for i, p in enumerate(motion.parents) if p in drop} - drop:
        drop |= extra  # and everything under them
    keep = [i for i in range(len(motion.names)) if i not in drop]
    index = {old: new for new, old in enumerate(keep)}
    return replace(
        motion, names=tuple(motion.names[i] for i in keep),
        parents=tuple(index[motion.parents[i]] if motion.parents[i] >= 0 else -1 for i in keep),
        offsets=motion.offsets[keep], end_offsets=ends[keep],
        rotations=motion.rotations[:, keep], translations=motion.translations[:, keep],
    )  # fmt: skip


def renamed_to(motion: SkeletonMotion, names: dict[str, str]) -> SkeletonMotion:
    """``motion`` with its CMU names replaced by ``names`` (the others ``Extra_*``)."""
    return replace(motion, names=tuple(names.get(n, f"Extra_{n}") for n in motion.names))


# Blender metarig names (as FreeMoCap and Rigify exports write them): no hand joints
METARIG = {
    "Hips": "pelvis", "LowerBack": "spine", "Spine": "spine.001", "Spine1": "spine.002",
    "Neck": "neck", "Neck1": "neck.001", "Head": "face", "LHipJoint": "pelvis.L",
    "RHipJoint": "pelvis.R", "LeftUpLeg": "thigh.L", "LeftLeg": "shin.L", "LeftFoot": "foot.L",
    "LeftToeBase": "toe.L", "RightUpLeg": "thigh.R", "RightLeg": "shin.R",
    "RightFoot": "foot.R", "RightToeBase": "toe.R", "LeftShoulder": "shoulder.L",
    "LeftArm": "upper_arm.L", "LeftForeArm": "forearm.L", "RightShoulder": "shoulder.R",
    "RightArm": "upper_arm.R", "RightForeArm": "forearm.R",
}  # fmt: skip


def _yaw(angle: np.ndarray) -> np.ndarray:
    """(T,) angles -> (T, 3, 3) rotations about +Y."""
    c, s, z, o = np.cos(angle), np.sin(angle), np.zeros_like(angle), np.ones_like(angle)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(-1, 3, 3)


def extra_root(motion: SkeletonMotion, name: str, follow: bool = False, z_up: bool = False):
    """A Y-up ``motion`` under a new root joint ``name`` on the floor below the hips, the
    hips its only child: "Reference" (still), "SimulationBone" (``follow``: turning with
    the hips' heading), or a "root" that also turns the world Z up (``z_up``)."""
    pos, glob = motion.forward_kinematics()
    t = motion.num_frames
    height = float(np.median(pos[:, 0, 1] - pos[:, :, 1].min(axis=1)))
    heading = np.zeros(t)
    if follow:
        fwd = glob[:, 0] @ np.array([0.0, 0.0, 1.0])  # (T, 3)
        heading = np.arctan2(fwd[:, 0], fwd[:, 2])
    axes = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]) if z_up else np.eye(3)  # Y -> Z
    ref_rot = axes @ _yaw(heading)  # (T, 3, 3)
    c = np.array([0.0, height, 0.0])  # the hips above the new root
    ref_pos = (pos[:, 0] - c) @ axes.T  # (T, 3); the yaw leaves c as it is
    rot = np.concatenate([ref_rot[:, None], motion.rotations], axis=1)
    rot[:, 1] = np.swapaxes(_yaw(heading), 1, 2) @ motion.rotations[:, 0]
    trans = np.concatenate([ref_pos[:, None], motion.translations], axis=1)
    trans[:, 1] = c
    offsets = np.vstack([np.zeros((1, 3)), motion.offsets])
    offsets[1] = c
    return replace(
        motion, names=(name, *motion.names), parents=(-1, *(p + 1 for p in motion.parents)),
        offsets=offsets, end_offsets=np.vstack([np.zeros((1, 3)), motion.end_offsets]),
        rotations=rot, translations=trans,
    )  # fmt: skip


def zero_bones(motion: SkeletonMotion, joints: list[str]) -> SkeletonMotion:
    """``motion`` with each of ``joints`` moved onto its parent (rest offset zero): the
    bone into it has no length, as in degenerate rigs."""
    offsets = motion.offsets.copy()
    trans = motion.translations.copy()
    for name in joints:
        j = motion.names.index(name)
        offsets[j] = 0.0
        trans[:, j] = 0.0
    return replace(motion, offsets=offsets, translations=trans)


def flipped(motion: SkeletonMotion, joint: str, frames: slice) -> SkeletonMotion:
    """``motion`` with ``joint``'s bone (to its first child) turned half a turn in
    ``frames``, as a tracking glitch throws it."""
    j = motion.names.index(joint)
    child = motion.parents.index(j)
    axis = np.cross(motion.offsets[child], [0.0, 0.0, 1.0])
    axis /= np.linalg.norm(axis)
    half = 2.0 * np.outer(axis, axis) - np.eye(3)  # a half turn about the axis
    rot = motion.rotations.copy()
    rot[frames, j] = rot[frames, j] @ half
    return replace(motion, rotations=rot)


def scaled(motion: SkeletonMotion, factor: float) -> SkeletonMotion:
    """``motion`` in another length unit (offsets, end sites, translations times ``factor``)."""
    return replace(
        motion, offsets=motion.offsets * factor, end_offsets=motion.end_offsets * factor,
        translations=motion.translations * factor,
    )  # fmt: skip


def tracked_positions(motion: SkeletonMotion, factor: float, seed: int = 0) -> SkeletonMotion:
    """``motion`` as a depth-camera (Kinect-style) exporter writes it: every joint a
    position channel and no rotation, lengths times ``factor`` (1000 / unit in metres:
    millimetres), 3 mm of tracking noise, and the left wrist lost onto the elbow for five
    frames (the bones change length, as tracked joints do)."""
    rng = np.random.default_rng(seed)
    pos, _ = motion.forward_kinematics()
    pos = pos * factor
    pos += rng.normal(scale=3.0, size=pos.shape)  # millimetres of noise
    wrist = motion.names.index(names_in_kinect("LeftHand"))
    elbow = motion.parents[wrist]
    lost = slice(20, 25)
    moved = pos[lost, elbow] - pos[lost, wrist]
    for j in range(len(motion.names)):  # the wrist and everything below it
        a = j
        while a >= 0 and a != wrist:
            a = motion.parents[a]
        if a == wrist:
            pos[lost, j] += moved
    local = pos.copy()
    for j, p in enumerate(motion.parents):
        if p >= 0:
            local[:, j] = pos[:, j] - pos[:, p]
    t, n = pos.shape[:2]
    return replace(
        motion, offsets=local[0], end_offsets=np.zeros((n, 3)),
        rotations=np.broadcast_to(np.eye(3), (t, n, 3, 3)).copy(), translations=local,
    )  # fmt: skip


def names_in_kinect(cmu: str) -> str:
    return unlisted_names("kinect")[cmu]


def write_positions_bvh(motion: SkeletonMotion, path: Path) -> Path:
    """Write a motion whose joints only translate (no rotation, as
    :func:`tracked_positions` makes) as a BVH with ``Xposition Yposition Zposition``
    channels on every joint and no End Sites."""
    children: dict[int, list[int]] = {}
    for c, p in enumerate(motion.parents):
        children.setdefault(p, []).append(c)
    lines, order = ["HIERARCHY"], []

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        order.append(j)
        lines.append(f"{pad}{'ROOT' if j == 0 else 'JOINT'} {motion.names[j]}")
        lines.append(pad + "{")
        lines.append(pad + "  OFFSET " + " ".join(f"{x:.6f}" for x in motion.offsets[j]))
        lines.append(pad + "  CHANNELS 3 Xposition Yposition Zposition")
        for kid in children.get(j, []):
            emit(kid, depth + 1)
        lines.append(pad + "}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {motion.num_frames}", f"Frame Time: {1.0 / motion.fps:.6f}"]
    rows = motion.translations[:, order].reshape(motion.num_frames, -1)
    lines += [" ".join(f"{x:.6f}" for x in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# A four-legged animal rigged with 3ds Max Biped (names as biped quadrupeds have them):
# joint -> (parent, rest offset in cm, Y up, facing +Z). Its hind legs are the "legs",
# its front legs the "arms".
QUADRUPED = {
    "Bip01": (None, (0, 55, 0)), "Bip01_Pelvis": ("Bip01", (0, 0, 0)),
    "Bip01_Spine": ("Bip01_Pelvis", (0, 0, 8)), "Bip01_Spine1": ("Bip01_Spine", (0, 1, 18)),
    "Bip01_Spine2": ("Bip01_Spine1", (0, 1, 18)), "Bip01_Neck": ("Bip01_Spine2", (0, 4, 12)),
    "Bip01_Head": ("Bip01_Neck", (0, 14, 10)),
    **{k.format(S=s, x=x): (p.format(S=s), tuple(v if i else v * x for i, v in enumerate(o)))
       for s, x in (("L", 1), ("R", -1))
       for k, p, o in (
           ("Bip01_{S}_Thigh", "Bip01_Spine", (9, -4, -8)),
           ("Bip01_{S}_Calf", "Bip01_{S}_Thigh", (0, -20, 8)),
           ("Bip01_{S}_HorseLink", "Bip01_{S}_Calf", (0, -18, -10)),
           ("Bip01_{S}_Foot", "Bip01_{S}_HorseLink", (0, -11, 2)),
           ("Bip01_{S}_Toe0", "Bip01_{S}_Foot", (0, -2, 6)),
           ("Bip01_{S}_Clavicle", "Bip01_Neck", (5, -6, -2)),
           ("Bip01_{S}_UpperArm", "Bip01_{S}_Clavicle", (3, -4, 0)),
           ("Bip01_{S}_Forearm", "Bip01_{S}_UpperArm", (0, -19, -6)),
           ("Bip01_{S}_Hand", "Bip01_{S}_Forearm", (0, -19, 2)),
           ("Bip01_{S}_Finger0", "Bip01_{S}_Hand", (0, -5, 4)),
       )},
}  # fmt: skip


def quadruped(frames: int = 60, fps: float = 30.0) -> SkeletonMotion:
    """A four-legged animal (:data:`QUADRUPED`) trotting forward: each leg swings about
    the sideways axis, diagonal pairs together."""
    names = tuple(QUADRUPED)
    parents = tuple(names.index(p) if p else -1 for p, _ in QUADRUPED.values())
    offsets = np.array([o for _, o in QUADRUPED.values()], dtype=np.float64)
    ends = np.zeros_like(offsets)
    for j, n in enumerate(names):
        if j not in parents:
            ends[j] = (0, 0, 4) if "Toe" in n or "Finger" in n else (0, 6, 8)
    phase = 2 * np.pi * 2.0 * np.arange(frames) / fps  # two strides a second
    rot = np.broadcast_to(np.eye(3), (frames, len(names), 3, 3)).copy()
    for j, n in enumerate(names):
        swing = {"Thigh": 25, "UpperArm": 25, "Calf": 15, "Forearm": 15}.get(n.split("_")[-1])
        if swing:
            diagonal = ("_L_" in n) == ("Thigh" in n or "Calf" in n)
            a = np.radians(swing) * np.sin(phase + (np.pi if diagonal else 0.0))
            c, s = np.cos(a), np.sin(a)
            one, zero = np.ones_like(a), np.zeros_like(a)
            rot[:, j] = np.stack([one, zero, zero, zero, c, -s, zero, s, c], -1).reshape(-1, 3, 3)
    trans = np.broadcast_to(offsets, (frames, len(names), 3)).copy()
    trans[:, 0, 2] += 100.0 * np.arange(frames) / fps  # a metre a second
    return SkeletonMotion(
        names=names, parents=parents, offsets=offsets, end_offsets=ends, rotations=rot,
        translations=trans, fps=fps,
    )  # fmt: skip
