"""Rig retargeting: from a file's skeleton to the body's rig, whatever the rest pose.

Two steps, both here and nowhere else:

1. **Names.** :data:`RIGS` maps the joint names of the rigs found in the wild (CMU
   BVH, Acclaim ASF as in CMU and HDM05, DAZ-style and 3ds-Max-style CMU conversions,
   Reallusion iClone / Character Creator, Bandai-Namco, Mixamo) onto one set of
   canonical joints, named as anny's ``cmu_mb`` bones (``Hips``, ``LeftUpLeg``, ...).
   :func:`detect_rig` picks the rig from the names; ``--joint-map FILE`` (their name
   -> ours, YAML or JSON) covers anything else. Twist and share bones, fingers and
   props map to nothing: they move with their parent.

2. **Rest-pose correction, by geometry.** Rotation channels mean something only
   relative to the file's own rest pose, and real rigs have every kind (T-pose,
   A-pose, Bandai's bones along +X with the orientation baked into the motion).
   So nothing here reads a rotation as if the rest were upright: forward kinematics
   gives each canonical joint's position in the world (plus ``End Site`` tips), and
   :func:`bone_rotations` turns those positions into the target rig's bone rotations.
   Each bone is swung from its parent's pose onto the source bone's direction, then
   twisted about it so that an anatomical reference (the pelvis / shoulder line for
   the spine, the knee / elbow bend plane and the foot for limbs) matches; where that
   reference vanishes (a straight limb) the twist follows the parent. Applied to the
   target rig's own rest joints it gives the identity, so a source standing in the
   rig's rest pose poses the rig at rest, and the result does not depend on the
   source's rest pose. Units (from the leg length) and the up axis (from the torso
   over the motion) are detected unless the file states them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from stmt import limits
from stmt.errors import InputError
from stmt.fileio import load_yaml, read_text
from stmt.motion import JointPositions, SkeletonMotion, axis_angle_to_matrix

# ------------------------------------------------------------------------------ joints

#: Canonical joints a skeleton must have to drive a body.
REQUIRED = (
    "Hips", "LeftUpLeg", "LeftLeg", "LeftFoot", "RightUpLeg", "RightLeg", "RightFoot",
    "LeftArm", "LeftForeArm", "LeftHand", "RightArm", "RightForeArm", "RightHand", "Head",
)  # fmt: skip

#: Canonical joints used when present (spine, neck, clavicles, toes, hand tips).
OPTIONAL = (
    "LHipJoint", "RHipJoint", "LowerBack", "Spine", "Spine1", "Neck", "Neck1",
    "LeftShoulder", "RightShoulder", "LeftToeBase", "RightToeBase",
    "LeftFingerBase", "RightFingerBase", "LeftHandFinger1", "RightHandFinger1",
    "LThumb", "RThumb",
)  # fmt: skip

CANONICAL = REQUIRED + OPTIONAL


def _sided(table: dict[str, str]) -> dict[str, str]:
    """Expand "{L}"/"{R}"-style patterns: key with ``{s}`` (source side) and value with
    ``{S}`` (canonical side) for both sides."""
    out: dict[str, str] = {}
    for src, dst in table.items():
        if "{" not in src:
            out[src] = dst
            continue
        for s_short, s_long, s_up, canon, c_short in (
            ("l", "left", "L", "Left", "L"),
            ("r", "right", "R", "Right", "R"),
        ):
            key = src.format(s=s_short, side=s_long, S=s_up, Side=s_long.title())
            out[key] = dst.format(Side=canon, C=c_short)
    return out


#: Rig name -> {source joint name: canonical joint}. Names match ignoring case and the
#: separators " _-." after dropping a namespace prefix ("mixamorig:Hips" -> "Hips").
RIGS: dict[str, dict[str, str]] = {
    # CMU BVH conversions (cgspeed) and anny's own cmu_mb names.
    "cmu": _sided({
        "Hips": "Hips", "{S}HipJoint": "{C}HipJoint", "{Side}UpLeg": "{Side}UpLeg",
        "{Side}Leg": "{Side}Leg", "{Side}Foot": "{Side}Foot", "{Side}ToeBase": "{Side}ToeBase",
        "LowerBack": "LowerBack", "Spine": "Spine", "Spine1": "Spine1", "Neck": "Neck",
        "Neck1": "Neck1", "Head": "Head", "{Side}Shoulder": "{Side}Shoulder",
        "{Side}Arm": "{Side}Arm", "{Side}ForeArm": "{Side}ForeArm", "{Side}Hand": "{Side}Hand",
        "{Side}FingerBase": "{Side}FingerBase", "{Side}HandIndex1": "{Side}HandFinger1",
        "{Side}HandFinger1": "{Side}HandFinger1", "{S}Thumb": "{C}Thumb",
    }),
    # Acclaim ASF bone names (CMU database, HDM05; also BVH files converted from them, with
    # the root named "hip" or "pelvis"); a joint sits at the start of its bone.
    "acclaim": _sided({
        "root": "Hips", "hip": "Hips", "pelvis": "Hips", "{s}hipjoint": "{C}HipJoint",
        "{s}femur": "{Side}UpLeg", "{s}tibia": "{Side}Leg", "{s}foot": "{Side}Foot", "{s}toes": "{Side}ToeBase",
        "lowerback": "LowerBack", "upperback": "Spine", "thorax": "Spine1",
        "lowerneck": "Neck", "upperneck": "Neck1", "head": "Head",
        "{s}clavicle": "{Side}Shoulder", "{s}humerus": "{Side}Arm",
        "{s}radius": "{Side}ForeArm", "{s}wrist": "{Side}Hand", "{s}hand": "{Side}FingerBase",
        "{s}fingers": "{Side}HandFinger1", "{s}thumb": "{C}Thumb",
    }),
    # The same names where a converter put each joint at the END of its bone (the joint
    # "lfemur" at the knee): the canonical joints sit one name up the chain. Which of the
    # two a file is, the geometry decides (see canonical_motion).
    "acclaim-end": _sided({
        "root": "Hips", "hip": "Hips", "pelvis": "Hips", "{s}hipjoint": "{Side}UpLeg",
        "{s}femur": "{Side}Leg", "{s}tibia": "{Side}Foot", "{s}foot": "{Side}ToeBase",
        "lowerback": "Spine", "upperback": "Spine1", "thorax": "Neck", "lowerneck": "Neck1",
        "upperneck": "Head", "{s}clavicle": "{Side}Arm", "{s}humerus": "{Side}ForeArm",
        "{s}radius": "{Side}Hand", "{s}wrist": "{Side}FingerBase",
        "{s}hand": "{Side}HandFinger1",
    }),
    # CMU conversions with DAZ / Poser names.
    "daz": _sided({
        "hip": "Hips", "abdomen": "LowerBack", "chest": "Spine1", "neck": "Neck",
        "head": "Head", "{s}Buttock": "{C}HipJoint", "{s}Thigh": "{Side}UpLeg",
        "{s}Shin": "{Side}Leg", "{s}Foot": "{Side}Foot", "{s}Toe": "{Side}ToeBase",
        "{s}Collar": "{Side}Shoulder", "{s}Shldr": "{Side}Arm", "{s}ForeArm": "{Side}ForeArm",
        "{s}Hand": "{Side}Hand",
    }),
    # CMU conversions with 3ds Max biped-style names: here LeftShoulder is the upper arm.
    "3dsmax": _sided({
        "Hips": "Hips", "{S}HipJoint": "{C}HipJoint", "{Side}Hip": "{Side}UpLeg",
        "{Side}Knee": "{Side}Leg", "{Side}Ankle": "{Side}Foot", "{Side}Toe": "{Side}ToeBase",
        "lowerback": "LowerBack", "Chest": "Spine", "Chest2": "Spine1", "lowerneck": "Neck",
        "Neck": "Neck1", "Head": "Head", "{Side}Collar": "{Side}Shoulder",
        "{Side}Shoulder": "{Side}Arm", "{Side}Elbow": "{Side}ForeArm",
        "{Side}Wrist": "{Side}Hand",
    }),
    # Reallusion iClone / Character Creator (twist and share bones map to nothing).
    "iclone": _sided({
        "CC_Base_Hip": "Hips", "CC_Base_Waist": "LowerBack", "CC_Base_Spine01": "Spine",
        "CC_Base_Spine02": "Spine1", "CC_Base_NeckTwist01": "Neck",
        "CC_Base_NeckTwist02": "Neck1", "CC_Base_Head": "Head",
        "CC_Base_{S}_Thigh": "{Side}UpLeg", "CC_Base_{S}_Calf": "{Side}Leg",
        "CC_Base_{S}_Foot": "{Side}Foot", "CC_Base_{S}_ToeBase": "{Side}ToeBase",
        "CC_Base_{S}_Clavicle": "{Side}Shoulder", "CC_Base_{S}_Upperarm": "{Side}Arm",
        "CC_Base_{S}_Forearm": "{Side}ForeArm", "CC_Base_{S}_Hand": "{Side}Hand",
        "CC_Base_{S}_Mid1": "{Side}HandFinger1",
    }),
    # Bandai-Namco Research Motion Dataset (bones along +X in the rest pose).
    "bandai": _sided({
        "Hips": "Hips", "Spine": "Spine", "Chest": "Spine1", "Neck": "Neck", "Head": "Head",
        "UpperLeg_{S}": "{Side}UpLeg", "LowerLeg_{S}": "{Side}Leg", "Foot_{S}": "{Side}Foot",
        "Toes_{S}": "{Side}ToeBase", "Shoulder_{S}": "{Side}Shoulder",
        "UpperArm_{S}": "{Side}Arm", "LowerArm_{S}": "{Side}ForeArm", "Hand_{S}": "{Side}Hand",
    }),
    # SMPL's 22 body joints (AMASS parameters posed on another body).
    "smpl": _sided({
        "pelvis": "Hips", "{side}_hip": "{Side}UpLeg", "{side}_knee": "{Side}Leg",
        "{side}_ankle": "{Side}Foot", "{side}_foot": "{Side}ToeBase", "spine1": "LowerBack",
        "spine2": "Spine", "spine3": "Spine1", "neck": "Neck", "head": "Head",
        "{side}_collar": "{Side}Shoulder", "{side}_shoulder": "{Side}Arm",
        "{side}_elbow": "{Side}ForeArm", "{side}_wrist": "{Side}Hand",
        # the same joints as AMASS-to-BVH converters name them
        "{S}_Hip": "{Side}UpLeg", "{S}_Knee": "{Side}Leg",
        "{S}_Ankle": "{Side}Foot", "{S}_Foot": "{Side}ToeBase", "{S}_Collar": "{Side}Shoulder",
        "{S}_Shoulder": "{Side}Arm", "{S}_Elbow": "{Side}ForeArm", "{S}_Wrist": "{Side}Hand",
    }),
    # Xsens MVN.
    "xsens": _sided({
        "Pelvis": "Hips", "L5": "LowerBack", "L3": "Spine", "T8": "Spine1", "Neck": "Neck",
        "Head": "Head", "{Side}UpperLeg": "{Side}UpLeg", "{Side}LowerLeg": "{Side}Leg",
        "{Side}Foot": "{Side}Foot", "{Side}Toe": "{Side}ToeBase",
        "{Side}Shoulder": "{Side}Shoulder", "{Side}UpperArm": "{Side}Arm",
        "{Side}ForeArm": "{Side}ForeArm", "{Side}Hand": "{Side}Hand",
    }),
    # 3ds Max Biped (Bip01_ / Bip001_ prefixes).
    "biped": _sided({
        f"{bip}_{part}": canon
        for bip in ("Bip01", "Bip001")
        for part, canon in {
            "Pelvis": "Hips", "Spine": "LowerBack", "Spine1": "Spine", "Spine2": "Spine1",
            "Neck": "Neck", "Head": "Head", "{S}_Thigh": "{Side}UpLeg",
            "{S}_Calf": "{Side}Leg", "{S}_Foot": "{Side}Foot", "{S}_Toe0": "{Side}ToeBase",
            "{S}_Clavicle": "{Side}Shoulder", "{S}_UpperArm": "{Side}Arm",
            "{S}_Forearm": "{Side}ForeArm", "{S}_Hand": "{Side}Hand",
        }.items()
    }),
    # Kinect v1 and v2 skeletons (joint positions; the hand joint ends the hand).
    "kinect": _sided({
        "HipCenter": "Hips", "SpineBase": "Hips", "SpineLow": "LowerBack", "Spine": "Spine",
        "SpineMid": "Spine", "ShoulderCenter": "Neck", "SpineShoulder": "Spine1",
        "Neck": "Neck", "NeckUpper": "Neck1", "Head": "Head",
        "Clavicle{Side}": "{Side}Shoulder", "Shoulder{Side}": "{Side}Arm",
        "Elbow{Side}": "{Side}ForeArm", "Wrist{Side}": "{Side}Hand",
        "Hand{Side}": "{Side}FingerBase", "HandTip{Side}": "{Side}HandFinger1",
        "Thumb{Side}": "{C}Thumb", "PelvisSide{Side}": "{C}HipJoint", "Hip{Side}": "{Side}UpLeg",
        "Knee{Side}": "{Side}Leg", "Ankle{Side}": "{Side}Foot", "Foot{Side}": "{Side}ToeBase",
    }),
    # Mixamo (names carry a "mixamorig:" namespace, dropped before matching).
    "mixamo": _sided({
        "Hips": "Hips", "Spine": "LowerBack", "Spine1": "Spine", "Spine2": "Spine1",
        "Neck": "Neck", "Head": "Head", "{Side}UpLeg": "{Side}UpLeg", "{Side}Leg": "{Side}Leg",
        "{Side}Foot": "{Side}Foot", "{Side}ToeBase": "{Side}ToeBase",
        "{Side}Shoulder": "{Side}Shoulder", "{Side}Arm": "{Side}Arm",
        "{Side}ForeArm": "{Side}ForeArm", "{Side}Hand": "{Side}Hand",
        "{Side}HandMiddle1": "{Side}HandFinger1",
    }),
}  # fmt: skip

RIG_NOTES = {
    "cmu": "CMU BVH names",
    "acclaim": "Acclaim ASF bones (CMU, HDM05)",
    "acclaim-end": "Acclaim ASF bones, each joint at the end of its bone",
    "daz": "DAZ-style CMU BVH",
    "3dsmax": "3ds-Max-style CMU BVH",
    "iclone": "Reallusion iClone / Character Creator",
    "bandai": "Bandai-Namco",
    "mixamo": "Mixamo",
    "smpl": "SMPL body joints",
    "xsens": "Xsens MVN",
    "biped": "3ds Max Biped",
    "kinect": "Kinect joint positions",
    "joint-map": "the --joint-map file",
    "inferred": "no known rig; joints inferred from side names and the joint tree",
}


# Rig prefixes written without a namespace colon: Mixamo's "mixamorig_Hips" (Blender,
# Unity) and "mixamorigHips" (three.js), MotionBuilder / HumanIK's "Character1_Hips".
_NAME_PREFIX = re.compile(r"^(mixamorig\d*[:_]?|character\d*_)", re.IGNORECASE)


def _key(name: str) -> str:
    """Match key of a joint name: namespace prefix dropped, case and separators ignored."""
    key = _NAME_PREFIX.sub("", name.rsplit(":", 1)[-1].strip()).lower()
    return "".join(c for c in key if c not in " _-.")


@dataclass(frozen=True)
class RigMatch:
    """A skeleton's joints matched to the canonical joints."""

    rig: str  # a key of RIGS, "joint-map" or "inferred"
    joints: dict[str, int]  # canonical name -> source joint index
    names: tuple[str, ...] = ()  # the skeleton's joint names (shown for an inferred rig)
    head_end: int | None = None  # no head joint: the head is where this joint's chain ends
    # no hand joints ("LeftHand", forearm index): the hand is where the forearm's bone ends
    hand_ends: tuple[tuple[str, int], ...] = ()

    def describe(self) -> str:
        text = f"{self.rig} ({RIG_NOTES.get(self.rig, self.rig)}; {len(self.joints)} joints mapped"
        if self.rig == "inferred" and self.names:
            # what was guessed, in --joint-map's terms, so that a wrong guess can be fixed
            pairs = ", ".join(
                f"{self.names[j]}: {c}" for c, j in self.joints.items() if j < len(self.names)
            )  # (a hand that is a forearm's end has no name of its own)
            text += f"; as a --joint-map: {{{pairs}}}"
        if self.head_end is not None and self.names:
            text += f"; no head joint: the head is the end of {self.names[self.head_end]}"
        if self.hand_ends and self.names:
            ends = " and ".join(self.names[j] for _, j in self.hand_ends)
            text += f"; no hand joints: the hands are the ends of {ends}"
        return text + ")"


def _match(names: tuple[str, ...], table: dict[str, str]) -> dict[str, int]:
    lowered = {_key(k): v for k, v in table.items()}
    out: dict[str, int] = {}
    for i, name in enumerate(names):
        canon = lowered.get(_key(name))
        if canon is not None and canon not in out:
            out[canon] = i
    return out


def load_joint_map(path: str | Path) -> dict[str, str]:
    """A ``--joint-map`` file: a YAML or JSON mapping {their joint name: canonical name}."""
    path = Path(path)
    text = read_text(path, "a YAML or JSON joint map", limits.MAX_CONFIG_BYTES)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:
            first = str(e).splitlines()[0] if str(e) else "nested too deeply"
            raise InputError(path, f"not a JSON joint map: {first}") from None
    else:
        data = load_yaml(text, path, "a YAML joint map")
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise InputError(path, "expected a mapping of joint names, {their name: our name}")
    bad = sorted(v for v in data.values() if v not in CANONICAL)
    if bad:
        raise InputError(
            path, f"unknown target joint(s) {', '.join(bad)}; ours are: {', '.join(CANONICAL)}"
        )
    twice = sorted({v for v in data.values() if list(data.values()).count(v) > 1})
    if twice:
        theirs = [k for k, v in data.items() if v == twice[0]]
        raise InputError(path, f"maps {', '.join(theirs)} all to {twice[0]}; one joint each")
    return data


def _neck_end(joints: dict[str, int], parents: tuple[int, ...] | list[int]) -> int | None:
    """The joint whose end is the head of a skeleton without a head joint: from the top of
    the mapped neck (or chest) down the one chain that leads to no mapped joint, to its
    leaf (whose ``End Site`` is the head). None if there is no such single chain."""
    top = next((joints[c] for c in ("Neck1", "Neck", "Spine1") if c in joints), None)
    if top is None:
        return None
    n = len(parents)
    on_the_way = set()  # every joint on the path from the root to a mapped joint
    for j in joints.values():
        while j >= 0 and j not in on_the_way:
            on_the_way.add(j)
            j = parents[j]
    j = top
    while True:
        kids = [c for c in range(n) if parents[c] == j]
        if not kids:
            return j
        free = [c for c in kids if c not in on_the_way]
        if len(free) != 1:
            return None  # no chain, or a fork: nothing to call the neck
        j = free[0]


def _complete(rig: str, found: dict[str, int], names: tuple[str, ...], parents) -> RigMatch | None:
    """A match that drives a body, or None: every required joint, the head possibly as
    the end of the neck chain (:func:`_neck_end`, needs ``parents``), a hand as the end of
    its forearm's bone (a rig with no hand joints: the tip is checked when posing)."""
    hands = tuple(
        (h, found[f"{h[:-4]}ForeArm"])
        for h in ("LeftHand", "RightHand")
        if h not in found and f"{h[:-4]}ForeArm" in found and parents is not None
    )
    if any(j not in found for j in REQUIRED if j != "Head" and j not in dict(hands)):
        return None
    if parents is not None:  # an extra root above the hips ("Reference", "root"): skip it
        taken = set(found.values())
        kids = [c for c, p in enumerate(parents) if p == found["Hips"]]
        while len(kids) == 1 and kids[0] not in taken:
            found = {**found, "Hips": kids[0]}
            kids = [c for c, p in enumerate(parents) if p == kids[0]]
    if "Head" in found:
        return RigMatch(rig, found, names, hand_ends=hands)
    end = _neck_end(found, parents) if parents is not None else None
    return None if end is None else RigMatch(rig, found, names, head_end=end, hand_ends=hands)


def rig_candidates(
    names: tuple[str, ...] | list[str],
    joint_map: dict[str, str] | None = None,
    source: Path | None = None,
    parents: tuple[int, ...] | list[int] | None = None,
) -> list[RigMatch]:
    """Every way to map a skeleton's joints that drives a body, the most joints first: the
    ``joint_map``'s; else each rig of :data:`RIGS` that maps :data:`REQUIRED`; else, if
    ``parents`` is given, the joints inferred from the tree (:func:`infer_joints`). A
    missing ``Head`` may be the end of the neck chain (needs ``parents``).

    Raises:
        InputError: nothing maps every required joint; the message lists the joints
            needed and names ``--joint-map``.
    """
    names = tuple(names)
    if joint_map is not None:
        found = _match(names, joint_map)
        match = _complete("joint-map", found, names, parents)
        if match is None:
            missing = [j for j in REQUIRED if j not in found]
            raise InputError(
                source,
                f"the --joint-map leaves required joints unmapped: {', '.join(missing)} "
                f"(the file's joints: {', '.join(names[:40])}{' ...' if len(names) > 40 else ''})",
            )
        return [match]
    found_all = [
        _complete(rig, _match(names, table), names, parents) for rig, table in RIGS.items()
    ]
    out = sorted((m for m in found_all if m is not None), key=lambda m: -len(m.joints))
    if out:
        return out
    inferred = infer_joints(names, parents) if parents is not None else None
    match = _complete("inferred", inferred, names, parents) if inferred is not None else None
    if match is not None:
        return [match]
    raise unknown_rig(names, source)


_FEWEST_JOINTS = 10  # hips, two legs of three joints, two arms of two, a neck: at least


def unknown_rig(names: tuple[str, ...], source: Path | None) -> InputError:
    """The one line for a skeleton no rig table, inference or tip completes (one with too
    few joints to be a whole body, such as a VR recording of a head and two hands, is
    told so: no joint map can help it)."""
    shown = ", ".join(names[:25]) + (" ..." if len(names) > 25 else "")
    if len(names) < _FEWEST_JOINTS:
        return InputError(
            source,
            f"only {len(names)} joints ({shown}): not a whole body, which needs at least "
            f"{', '.join(REQUIRED)} (a recording of a VR headset and controllers is not one)",
        )
    return InputError(
        source,
        f"unknown rig: cannot map its joints ({shown}) to the body's; pass --joint-map FILE "
        f"(YAML/JSON, their name -> ours) covering at least {', '.join(REQUIRED)}",
    )


def detect_rig(
    names: tuple[str, ...] | list[str],
    joint_map: dict[str, str] | None = None,
    source: Path | None = None,
    parents: tuple[int, ...] | list[int] | None = None,
) -> RigMatch:
    """Match a skeleton's joint names to the canonical joints: the first of
    :func:`rig_candidates` (the rig table that maps the most joints). Where several rigs
    map a file differently, :func:`canonical_motion` lets the geometry decide.

    Raises:
        InputError: no rig maps every required joint (see :func:`rig_candidates`).
    """
    return rig_candidates(names, joint_map, source, parents)[0]


# Words of joint names, for rigs no table lists. Only the side, the hands, feet and head
# are found by name; everything between is found by walking the tree.
_SIDE_WORDS = {"l": "Left", "left": "Left", "r": "Right", "right": "Right"}
_HAND_WORDS = ("wrist", "hand")  # a rig with both: the wrist is the hand joint
_FOOT_WORDS = ("ankle", "foot")
_NOT_HAND = ("index", "middle", "ring", "pinky", "little", "thumb", "finger", "carpal")
_NOT_FOOT = ("toe", "ball")
_HELPER = ("twist", "roll", "share", "part", "helper", "adjust", "corrective", "nub", "end", "ik")
_HELPER_AFFIX = ("twist", "roll")  # also as part of a word: ForearmTwist -> "forearmtwist"
_MIDDLE = ("m", "c", "mid", "center", "centre")  # Head_M, Spine1_M: a middle marker
_PREFIX = r"^(cc_base_|bip0*1[ _]|def[-_.]|org[-_.]|mch[-_.]|rl_)"
_CLAVICLE = ("clavicle", "collar", "shoulder", "scapula")
# Words a one-letter side prefix stands before in names written in one case (Acclaim's
# "lfemur", MocapNET's "lshoulder"): "l"+"owerback" is no side, "l"+"hand" is.
_BODY_WORDS = (
    "hand", "wrist", "finger", "thumb", "index", "mid", "ring", "pinky", "palm", "carpal",
    "metacarpal", "foot", "ankle", "toe", "heel", "ball", "knee", "hip", "thigh", "shin",
    "calf", "leg", "upleg", "arm", "uparm", "fore", "lowarm", "lowleg", "lower", "upper",
    "elbow", "shoulder", "shldr", "collar", "clavicle", "scapula", "buttock", "pelvis",
    "femur", "tibia", "humerus", "radius", "eye",
)  # fmt: skip


def _words(name: str) -> tuple[str | None, tuple[str, ...]]:
    """(side "Left"/"Right"/None, lowercase words without the side) of a joint name.

    Sides as rigs write them: ``LeftArm``, ``lThigh``, ``LUArm``, ``L_Thigh``,
    ``thigh_l``, ``thigh.L``, ``ShoulderLeft``, ``CC_Base_L_Thigh``, ``Bip01 L Thigh``.
    """
    raw = name.rsplit(":", 1)[-1].rsplit("|", 1)[-1].strip()
    raw = re.sub(_PREFIX, "", raw, flags=re.IGNORECASE)
    side = None
    run = re.match(r"[A-Za-z]*", raw).group(0)  # the first run of letters
    if run.islower() or run.isupper() or run[1:].islower():
        # one case: lhand, rfoot, LSHOULDER, Lfemur (a body word must follow the letter)
        if run[:1].lower() in ("l", "r") and run[1:].lower().startswith(_BODY_WORDS):
            side, raw = _SIDE_WORDS[run[0].lower()], raw[1:]
    elif m := re.match(r"^([LlRr])(?=[A-Z])", raw):
        # lThigh, LUArm, RHipJoint (not "LowerBack": a lowercase letter follows)
        side, raw = _SIDE_WORDS[m.group(1).lower()], raw[1:]
    words = [
        w.lower()
        for part in re.split(r"[\s_.\-]+", raw)
        for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", part)
    ]
    if side is None:
        for i in (0, len(words) - 1, *range(1, len(words) - 1)):
            if 0 <= i < len(words) and words[i] in _SIDE_WORDS and len(words) > 1:
                side = _SIDE_WORDS[words.pop(i)]
                break
    words = [w for w in words if not w.isdigit()]
    if side is None and len(words) > 1 and words[-1] in _MIDDLE:
        words.pop()
    return side, tuple(words)


def _is_helper(words: tuple[str, ...]) -> bool:
    """A twist / roll / share / end ... bone: it moves with its parent, drives nothing."""
    return any(
        w in _HELPER or w.startswith(_HELPER_AFFIX) or w.endswith(_HELPER_AFFIX) for w in words
    )


def _has(words: tuple[str, ...], vocab: tuple[str, ...]) -> bool:
    return any(v in w for w in words for v in vocab)


class _Tree:
    """A skeleton's joints as :func:`infer_joints` reads them: each joint's side and name
    words, its parent, its depth, and the walks over the tree it needs."""

    def __init__(self, names: tuple[str, ...], parents: list[int]):
        self.parents, self.n = parents, len(names)
        self.info = [_words(nm) for nm in names]
        self.depth = [len(self.ancestors(j)) for j in range(self.n)]

    def ancestors(self, j: int) -> list[int]:
        out = []
        while self.parents[j] >= 0:
            j = self.parents[j]
            out.append(j)
        return out

    def helper(self, j: int) -> bool:
        return _is_helper(self.info[j][1])

    def first(self, side: str | None, vocab: tuple[str, ...], avoid: tuple[str, ...]) -> int | None:
        """The joint of ``side`` named by ``vocab`` (and by none of ``avoid``) nearest the
        root; at equal depth the vocabulary's order (wrist before hand)."""
        info = self.info
        hits = [
            j for j in range(self.n)
            if info[j][0] == side and any(w in vocab for w in info[j][1])
            and not _has(info[j][1], avoid) and not self.helper(j)
        ]  # fmt: skip
        rank = {j: min(vocab.index(w) for w in info[j][1] if w in vocab) for j in hits}
        return min(hits, key=lambda j: (self.depth[j], rank[j])) if hits else None

    def up(self, j: int | None) -> int | None:
        """The nearest ancestor that is no helper bone; of a bone cut in segments
        (``upperarm01.L``, ``upperarm02.L``), the first segment."""
        if j is None:
            return None
        a = next((a for a in self.ancestors(j) if not self.helper(a)), None)
        while a is not None and self.parents[a] >= 0 and self.info[self.parents[a]] == self.info[a]:
            a = self.parents[a]
        return a

    def forearm(self, side: str) -> int | None:
        """The joint of ``side`` named a forearm (``forearm.L``, ``LowerArm_L``) nearest
        the root, for a rig without hand joints."""
        hits = [
            j for j in range(self.n)
            if self.info[j][0] == side and not self.helper(j)
            and (_has(self.info[j][1], ("forearm", "lowerarm"))
                 or {"lower", "arm"} <= set(self.info[j][1]))
        ]  # fmt: skip
        return min(hits, key=lambda j: self.depth[j]) if hits else None

    def common(self, a: int, b: int) -> int:
        chain = [a, *self.ancestors(a)]
        return next(x for x in [b, *self.ancestors(b)] if x in chain)


def infer_joints(
    names: tuple[str, ...], parents: tuple[int, ...] | list[int]
) -> dict[str, int] | None:
    """Canonical joints of a humanoid skeleton no table lists, or None if it is not one.

    By name only: each side's hand (the joint nearest the root named hand/wrist and no
    finger), foot (ankle/foot, no toe) and the head. By the tree: the forearm and upper
    arm are the hand's next two ancestors that are not helper bones (twist, roll,
    share ...), a clavicle the upper arm's parent if it is on the same side and named
    like one; the leg and thigh likewise above the foot (the thigh's sided parent is a
    hip joint); the hips the common ancestor of the thighs, the chest that of the
    hands; the spine and neck joints are the path between hips, chest and head.
    """
    tree = _Tree(names, list(parents))
    out: dict[str, int] = {}
    for side in ("Left", "Right"):
        limbs = _limbs(tree, side)
        if limbs is None:
            return None
        out.update(limbs)
    if not _trunk(tree, out):
        return None
    if len(set(out.values())) != len(out):
        return None  # one joint in two roles: not a skeleton we understand
    return out


def _limbs(tree: _Tree, side: str) -> dict[str, int] | None:
    """The arm and leg joints of ``side`` (module docstring of :func:`infer_joints`)."""
    parents, info = tree.parents, tree.info
    hand = tree.first(side, _HAND_WORDS, _NOT_HAND)
    foot = tree.first(side, _FOOT_WORDS, _NOT_FOOT)
    if foot is None:
        return None
    # no hand joint (a Blender metarig export): the forearm by name; the hand is where its
    # bone ends (stmt.retarget._complete)
    fore = tree.up(hand) if hand is not None else tree.forearm(side)
    arm = tree.up(fore)
    leg = tree.up(foot)
    upleg = tree.up(leg)
    if None in (fore, arm, leg, upleg):
        return None
    out = {f"{side}ForeArm": fore, f"{side}Arm": arm,
           f"{side}Foot": foot, f"{side}Leg": leg, f"{side}UpLeg": upleg}  # fmt: skip
    if hand is not None:
        out[f"{side}Hand"] = hand
    clav = parents[arm]
    if clav >= 0 and info[clav][0] == side and _has(info[clav][1], _CLAVICLE):
        out[f"{side}Shoulder"] = clav
    hipj = parents[upleg]
    if hipj >= 0 and info[hipj][0] == side:
        out[f"{side[0]}HipJoint"] = hipj
    toes = [c for c in range(tree.n) if parents[c] == foot and not tree.helper(c)]
    if len(toes) == 1 or any(_has(info[c][1], _NOT_FOOT) for c in toes):
        out[f"{side}ToeBase"] = next((c for c in toes if _has(info[c][1], _NOT_FOOT)), toes[0])
    return out


def _trunk(tree: _Tree, out: dict[str, int]) -> bool:
    """The hips, spine, chest, neck and head joints into ``out`` (which holds the limbs);
    False when the head or the neck above the chest cannot be found."""
    hips = tree.common(out["LeftUpLeg"], out["RightUpLeg"])
    out["Hips"] = hips
    chest = tree.common(*(out.get(f"{s}Hand", out[f"{s}ForeArm"]) for s in ("Left", "Right")))
    # "Head", "head", "Head_M", and "torso_head" (bones named parent_child); without one,
    # the head is the end of the neck chain above the chest (stmt.retarget._neck_end)
    heads = [
        j for j in range(tree.n) if tree.info[j][0] is None and tree.info[j][1][-1:] == ("head",)
    ]
    heads = [j for j in heads if hips in tree.ancestors(j)]
    if heads:
        head = out["Head"] = min(heads, key=lambda j: tree.depth[j])
        path = tree.ancestors(head)[::-1]  # root ... head's parent
    else:
        end = (
            _neck_end({**out, "Spine1": chest}, tree.parents)
            if hips in [chest, *tree.ancestors(chest)]
            else None
        )
        if end is None:
            return False
        path = [*tree.ancestors(end)[::-1], end]  # root ... the neck's last joint
    path = [
        j for j in path[path.index(hips) + 1 :] if not tree.helper(j)
    ]  # hips .. head, exclusive
    if chest in path:
        k = path.index(chest)
        out["Spine1"] = chest
        below, above = path[:k], path[k + 1 :]
        if below:
            out["LowerBack"] = below[0]
        if len(below) >= 2:
            out["Spine"] = below[len(below) // 2] if len(below) > 2 else below[1]
        if above:
            out["Neck"] = above[0]
        if len(above) >= 2:
            out["Neck1"] = above[1]
    return True


# ------------------------------------------------------------------ positions, units, up

# Candidate length units (metres per file unit).
UNITS = {
    "m": 1.0,
    "cm": 0.01,
    "mm": 0.001,
    "inch": 0.0254,
    "foot": 0.3048,
    "cmu": 0.0254 / 0.45,  # CMU ASF "length 0.45": one unit = 1/0.45 inch
}
_TYPICAL_LEG_M = 0.85  # hip -> knee -> ankle of an adult


def _leg_length(pos: np.ndarray, joints: dict[str, int]) -> float:
    """Median over frames of the mean hip->knee->ankle length of both legs, file units."""
    total = []
    for side in ("Left", "Right"):
        a, b, c = (pos[:, joints[f"{side}{n}"]] for n in ("UpLeg", "Leg", "Foot"))
        total.append(np.linalg.norm(b - a, axis=-1) + np.linalg.norm(c - b, axis=-1))
    return float(np.median(0.5 * (total[0] + total[1])))


def detect_unit(leg: float) -> tuple[str, float]:
    """The unit making a leg of length ``leg`` (file units) human-sized."""
    if not (np.isfinite(leg) and leg > 0):
        return "m", 1.0
    name = min(UNITS, key=lambda u: abs(np.log(leg * UNITS[u] / _TYPICAL_LEG_M)))
    return name, UNITS[name]


_AXES = {"x": 0, "y": 1, "z": 2}


def world_to_z_up(up: str) -> np.ndarray:
    """(3, 3) rotation taking a world whose up axis is ``up`` ("y", "-z", ...) to Z up."""
    sign = -1.0 if up.startswith("-") else 1.0
    axis = np.zeros(3)
    axis[_AXES[up[-1]]] = sign
    return _swing(axis[None], np.array([[0.0, 0.0, 1.0]]))[0]


_UPRIGHT_MEAN = 0.8  # mean torso direction this close to an axis: the body stands along it
_UPRIGHT_SOME = 0.7  # ...or this close in a tenth of the frames: it stands along it at times
_FLOOR_CLEARER = 0.5  # the floor's motion along another axis at most this share of the mean's


_FLOOR_NEAR_M = 0.15  # the lowest joint of a body on the floor: at most this above it
_FLOOR_STILL_M = 0.05  # ...moving at most this much (std) over the take


def _on_floor(lowest: np.ndarray) -> bool:
    """Whether a take's lowest point along an axis, per frame (metres), lies on a floor at
    0, as a capture volume's floor is: the joint centres touching it just above zero."""
    med = float(np.median(lowest))
    return (
        0.0 <= med <= _FLOOR_NEAR_M
        and float(lowest.std()) <= _FLOOR_STILL_M
        and float(lowest.min()) >= -_FLOOR_STILL_M
    )


def detect_up(pos: np.ndarray, joints: dict[str, int], scale: float) -> str:
    """The world axis the body stands along: from the torso (:func:`_torso_up`), except
    that a take that lies on a floor at 0 along Y (the up axis BVH, ASF/AMC and Kinect
    files are written in) while not along the torso's axis is Y up: a body lying or
    crawling the whole take has its torso along the floor, and read by the torso alone it
    would be stood up on its head or feet (``scale``: the file's unit in metres)."""
    up = _torso_up(pos, joints)
    if up == "y":
        return up
    body = pos[:, sorted(set(joints.values()))] * scale  # the mapped joints: no props
    sign = -1.0 if up.startswith("-") else 1.0
    along = (body[..., _AXES[up[-1]]] * sign).min(axis=1)
    if _on_floor(body[..., 1].min(axis=1)) and not _on_floor(along):
        return "y"
    return up


def _torso_up(pos: np.ndarray, joints: dict[str, int]) -> str:
    """The world axis the body stands along ("y" when it is never upright enough to tell).

    A body that stands most of the take: the mean hips -> shoulders direction. One that
    bends to the floor or lies down for much of it has its mean torso between two axes,
    and that mean may lean to the wrong one: then, of the axes it stands along at times
    (the torso within ~45 degrees of it in a tenth of the frames), the one along which
    its lowest point moves least, the floor it stands, bends and lies on (a horizontal
    axis sees the body's extent change as it bends or lies down), where that is the
    mean's axis or its floor is clearly stiller than along the mean's axis."""
    hips = 0.5 * (pos[:, joints["LeftUpLeg"]] + pos[:, joints["RightUpLeg"]])
    top = 0.5 * (pos[:, joints["LeftArm"]] + pos[:, joints["RightArm"]])
    unit = _unit(top - hips)  # (T, 3)
    torso = unit.mean(axis=0)
    axis = int(np.argmax(np.abs(torso)))
    if abs(torso[axis]) < _UPRIGHT_MEAN:
        # the most upright tenth of the frames, per axis and way: (3, 2) for +axis, -axis
        upright = np.quantile(np.stack([unit, -unit], axis=-1), 0.9, axis=0)
        sign = np.where(upright[:, 1] > upright[:, 0], -1.0, 1.0)  # (3,) the way it stands
        body = pos[:, sorted(set(joints.values()))]  # the mapped joints: no props or roots
        floor = (body * sign).min(axis=1)  # (T, 3) its lowest point along each axis
        moves = np.where(upright.max(axis=1) >= _UPRIGHT_SOME, floor.std(axis=0), np.inf)
        best = int(np.argmin(moves))
        if np.isfinite(moves[best]) and (
            best == axis or moves[best] < _FLOOR_CLEARER * moves[axis]
        ):
            return ("-" if sign[best] < 0 else "") + "xyz"[best]
    if abs(torso[axis]) < 0.5:
        return "y"
    return ("-" if torso[axis] < 0 else "") + "xyz"[axis]


# --------------------------------------------------------------- is it a human body?

#: Proportions of a human skeleton, as (typical, lowest, highest). Typical: the median of
#: Bandai-Namco and HDM05 takes (thigh/shin 0.89-1.06, upper arm/forearm 1.09-1.63,
#: arm/leg 0.53-0.63, torso/leg 0.48-0.71 there); the range is far wider than people
#: vary, so that only a skeleton that is no human body (or a wrong mapping) falls out.
#: "leg" is hip -> knee -> ankle, "arm" shoulder -> elbow -> wrist, "torso" the mid-hip
#: -> mid-shoulder distance, lengths the median over the take.
HUMAN_PROPORTIONS = {
    "thigh/shin": (1.0, 0.5, 2.0),
    "upper arm/forearm": (1.2, 0.5, 2.5),
    "arm/leg": (0.6, 0.3, 1.1),
    "torso/leg": (0.55, 0.25, 1.3),
    "hip width/leg": (0.2, 0.0, 0.8),
    "shoulder width/leg": (0.35, 0.0, 1.2),
}
_SIDE_RATIO = 1.6  # a left limb bone this many times its right one (or less) is no body's
_QUADRUPED = 0.85  # torso/leg or arm/leg above this, never upright: four-legged
_LIMBS = {
    "left leg": ("LeftUpLeg", "LeftLeg", "LeftFoot"),
    "right leg": ("RightUpLeg", "RightLeg", "RightFoot"),
    "left arm": ("LeftArm", "LeftForeArm", "LeftHand"),
    "right arm": ("RightArm", "RightForeArm", "RightHand"),
}


def _length(p: dict[str, np.ndarray], a: str, b: str) -> np.ndarray:
    return np.linalg.norm(p[b] - p[a], axis=-1)


def _mid(p: dict[str, np.ndarray], a: str) -> np.ndarray:
    return 0.5 * (p[f"Left{a}"] + p[f"Right{a}"])


def proportions(p: dict[str, np.ndarray]) -> dict[str, float]:
    """The ratios of :data:`HUMAN_PROPORTIONS` (and each limb bone's left/right ratio,
    keyed "left/right <bone>") of joint positions ``p`` (canonical name -> (T, 3))."""
    med = {}
    for side in ("Left", "Right"):
        for bone, (a, b) in {
            "thigh": ("UpLeg", "Leg"), "shin": ("Leg", "Foot"),
            "upper arm": ("Arm", "ForeArm"), "forearm": ("ForeArm", "Hand"),
        }.items():  # fmt: skip
            med[side, bone] = float(np.median(_length(p, side + a, side + b)))
    both = {b: med["Left", b] + med["Right", b] for _, b in med}
    leg = 0.5 * (both["thigh"] + both["shin"])
    tiny = 1e-12
    out = {
        "thigh/shin": both["thigh"] / max(both["shin"], tiny),
        "upper arm/forearm": both["upper arm"] / max(both["forearm"], tiny),
        "arm/leg": 0.5 * (both["upper arm"] + both["forearm"]) / max(leg, tiny),
        "torso/leg": float(np.median(np.linalg.norm(_mid(p, "Arm") - _mid(p, "UpLeg"), axis=-1)))
        / max(leg, tiny),
        "hip width/leg": float(np.median(_length(p, "LeftUpLeg", "RightUpLeg"))) / max(leg, tiny),
        "shoulder width/leg": float(np.median(_length(p, "LeftArm", "RightArm"))) / max(leg, tiny),
    }
    for _, b in med:
        out[f"left/right {b}"] = med["Left", b] / max(med["Right", b], tiny)
    return out


def _upright_share(p: dict[str, np.ndarray]) -> float:
    """Share of frames in which the legs hang from the hips away from the shoulders (the
    hips -> shoulders and hips -> feet directions more than 120 degrees apart)."""
    hips = _mid(p, "UpLeg")
    cos = np.einsum("ti,ti->t", _unit(_mid(p, "Arm") - hips), _unit(_mid(p, "Foot") - hips))
    return float(np.mean(cos < -0.5))


def _tree_problems(
    joints: dict[str, int], parents, head: int | None
) -> tuple[list[str], list[str]]:
    """What is wrong with the joint tree of a mapping: ``(limbs that are not one chain from
    their root out, limbs or the head hanging below another)``. An IK rig breaks only the
    first (its feet hang from the root); a wrong mapping breaks the second."""

    def above(a: int, b: int) -> bool:  # a is an ancestor of b
        while b >= 0:
            b = parents[b]
            if b == a:
                return True
        return False

    chains, hangs = [], []
    for limb, chain in _LIMBS.items():
        idx = [joints[c] for c in chain]
        if not (above(idx[0], idx[1]) and above(idx[1], idx[2])):
            chains.append(f"its {limb} is not one chain ({' -> '.join(chain)})")
    parts = {limb: [joints[c] for c in chain] for limb, chain in _LIMBS.items()}
    if head is not None:
        parts["head"] = [head]
    for a, ja in parts.items():
        for b, jb in parts.items():
            if a != b and any(above(x, y) for x in ja for y in jb):
                hangs.append(f"its {b} hangs below its {a}")
    return chains, hangs


def human_problems(
    p: dict[str, np.ndarray], rest: dict[str, np.ndarray] | None = None
) -> list[str]:
    """Why joint positions ``p`` (canonical name -> (T, 3), any unit and axes) are no
    human body: proportions outside :data:`HUMAN_PROPORTIONS`, unequal sides, or a long
    torso that is upright neither in the ``rest`` pose nor in most frames (a four-legged
    animal). Empty for a human."""
    ratios = proportions(p)
    out = []
    for name, (typical, low, high) in HUMAN_PROPORTIONS.items():
        if not low <= ratios[name] <= high:
            out.append(f"its {name} ratio is {ratios[name]:.2f} (a human's is about {typical})")
    for name, r in ratios.items():
        if name.startswith("left/right") and not 1 / _SIDE_RATIO <= r <= _SIDE_RATIO:
            out.append(
                f"its left and right {name[11:]} differ {max(r, 1 / max(r, 1e-12)):.1f}-fold"
            )
    upright = _upright_share(p) >= 0.5 or (rest is not None and _upright_share(rest) > 0)
    part = max(("torso/leg", "arm/leg"), key=lambda k: ratios[k])
    if not upright and ratios[part] > _QUADRUPED:
        out.append(
            f"it never stands upright (not in its rest pose, not in most frames) and its "
            f"{part.split('/')[0]} is {ratios[part]:.2f} leg lengths long (a human's about "
            f"{HUMAN_PROPORTIONS[part][0]}): a four-legged animal?"
        )
    return out


def _human_score(p: dict[str, np.ndarray]) -> float:
    """How far from a typical human's proportions (0 = typical): picks between mappings."""
    ratios = proportions(p)
    return float(
        sum(np.log(max(ratios[k], 1e-12) / t) ** 2 for k, (t, _, _) in HUMAN_PROPORTIONS.items()
            if t > 0)
    )  # fmt: skip


# ------------------------------------------------------------------ the canonical motion

_MIN_BONE_M = 0.01  # a bone shorter than this (median over the take) has no direction
_STRETCH = 0.2  # a bone whose length changes by more than this share is not rigid
# A bone turning more than this between two frames at this rate or more flips: a limb
# turns at most ~2,500 degrees/s (a pitcher's elbow), 83 degrees a frame at 30 fps.
_FLIP_DEG, _FLIP_FPS = 120.0, 20.0


@dataclass
class CanonicalMotion:
    """Canonical joint positions in metres, Z up: what :func:`bone_rotations` needs."""

    positions: dict[str, np.ndarray]  # canonical name (or "<name>_end") -> (T, 3)
    rig: RigMatch
    unit: str
    up: str
    warnings: list[str] = field(default_factory=list)  # the skeleton is odd but usable
    scale: float = 1.0  # metres per file unit (stated or detected)


def _choose(matches: list[RigMatch], pos: np.ndarray) -> RigMatch:
    """Of mappings that all drive a body, the first unless they place the required
    joints differently: then the one with the most human proportions (Acclaim names
    with joints at the start or at the end of their bones, for instance)."""
    first = matches[0]

    def key(m: RigMatch) -> tuple:
        return tuple(m.joints.get(j, -1) for j in REQUIRED) + (m.head_end,)

    if all(key(m) == key(first) for m in matches):
        return first
    scores = [_human_score(_positions(pos, m.joints, REQUIRED[:-1])) for m in matches]
    return matches[int(np.argmin(scores))]  # the first of equals: the most joints


def _positions(pos: np.ndarray, joints: dict[str, int], names) -> dict[str, np.ndarray]:
    return {c: pos[:, joints[c]] for c in names if c in joints}


def _rest_pose(motion: SkeletonMotion) -> np.ndarray:
    """(1, J, 3) the joints of the file's rest pose (its offsets, no rotation)."""
    out = np.zeros((1, len(motion.names), 3))
    for j, p in enumerate(motion.parents):
        out[0, j] = motion.offsets[j] + (out[0, p] if p >= 0 else 0.0)
    return out


def _continues(motion: SkeletonMotion, j: int, max_deg: float = 60.0) -> bool:
    """Whether joint j's End Site carries on its bone's direction (within ``max_deg`` in
    the rest pose), as a head's top does above a neck: the end can stand for the head."""
    bone, end = motion.offsets[j], motion.end_offsets[j]
    n = np.linalg.norm(bone) * np.linalg.norm(end)
    if n == 0:
        return True  # a zero-length bone or a leaf end: nothing to compare
    return float(np.dot(bone, end) / n) >= np.cos(np.radians(max_deg))


def _names_of(match: RigMatch, j: int) -> set[str]:
    """The canonical names a mapping gives joint j."""
    return {c for c, k in match.joints.items() if k == j}


def _with_hand_ends(motion: SkeletonMotion, matches: list[RigMatch], pos, glob):
    """Rigs without hand joints (:attr:`RigMatch.hand_ends`): the ends of their forearms
    as joints appended after the file's, so that every check and the posing see hands.
    Returns ``(pos (T, J + K, 3), rest (1, J + K, 3), matches, parents of the K)``; a match
    whose forearm has no end is dropped (InputError when none is left)."""
    rest = _rest_pose(motion)
    eye = np.broadcast_to(np.eye(3), (1, len(motion.names), 3, 3))
    extra: dict[int, int] = {}  # forearm -> index of its end
    ends, rest_ends, out = [], [], []
    for m in matches:
        joints = dict(m.joints)
        for canon, j in m.hand_ends:
            if j not in extra:
                tip = _bone_tip(motion, pos, glob, set(m.joints.values()), j)
                if tip is None:
                    break
                extra[j] = len(motion.names) + len(ends)
                ends.append(tip)
                rest_ends.append(_bone_tip(motion, rest, eye, set(m.joints.values()), j))
            joints[canon] = extra[j]
        else:
            out.append(replace(m, joints=joints))
    if not out:  # no hand joints, and the forearms end in no End Site
        raise unknown_rig(motion.names, motion.source)
    if ends:
        pos = np.concatenate([pos, np.stack(ends, axis=1)], axis=1)
        rest = np.concatenate([rest, np.stack(rest_ends, axis=1)], axis=1)
    return pos, rest, out, list(extra)


def _skeleton_warnings(p: dict[str, np.ndarray], fps: float) -> list[str]:
    """Lines about a usable but degenerate skeleton (``p`` in metres): bones of no length
    (posed from the next joint, or moved with their parent), bones that change length
    (tracked joint positions, Kinect-style, where frames with jumping joints pose badly)
    and bones that flip between two frames faster than a body turns (they tear the mesh)."""
    out = []
    short, stretched, flipped = [], [], []
    for label, (tips, _) in BONES.items():
        tip = next((k for k in tips if k in p), None)
        if label not in p or tip is None:
            continue
        bone = p[tip] - p[label]  # (T, 3)
        length = np.linalg.norm(bone, axis=-1)
        med = float(np.median(length))
        if med < _MIN_BONE_M:
            short.append(f"{label}->{tip}")
            continue
        both = (length[1:] > _MIN_BONE_M) & (length[:-1] > _MIN_BONE_M)
        cos = np.einsum("ti,ti->t", _unit(bone[1:]), _unit(bone[:-1]))[both]
        turn = float(np.degrees(np.arccos(np.clip(cos.min(), -1.0, 1.0)))) if cos.size else 0.0
        if turn > _FLIP_DEG and fps >= _FLIP_FPS:
            flipped.append(
                (turn, f"{label}->{tip}", int(np.sum(cos < np.cos(np.radians(_FLIP_DEG)))))
            )
        if label in ("LeftHand", "RightHand", "LeftToeBase", "RightToeBase"):
            continue  # tips of hands and toes: a finger pose or an end site, no bone to keep
        change = float(np.max(np.abs(length / med - 1.0)))
        if change > _STRETCH:
            share = float(np.mean(np.abs(length / med - 1.0) > _STRETCH))
            stretched.append((change, f"{label}->{tip}", share))
    if short:
        out.append(
            f"degenerate skeleton: zero-length bone(s) {', '.join(short)}; "
            "each is posed from the next joint along, or moves with its parent"
        )
    if stretched:
        change, bone, share = max(stretched)
        out.append(
            f"degenerate skeleton: {len(stretched)} bone(s) change length during the take "
            f"({bone} by up to {change:.0%}, in {share:.0%} of frames): tracked joint "
            "positions rather than a rigid skeleton; frames where joints jump pose badly"
        )
    if flipped:
        turn, bone, count = max(flipped)
        out.append(
            f"degenerate skeleton: {len(flipped)} bone(s) flip between frames ({bone} turns "
            f"{turn:.0f} degrees from one frame to the next, {count} time(s)): the mesh tears there"
        )
    if "LeftUpLeg" in p and float(np.median(_length(p, "LeftUpLeg", "RightUpLeg"))) < _MIN_BONE_M:
        out.append("degenerate skeleton: both thighs start at one point; the pelvis turns "
                   "with the shoulders")  # fmt: skip
    return out


def _human_check(
    motion, match: RigMatch, pos: np.ndarray, rest_pose=None, hand_parents=()
) -> list[str]:
    """Refuse a mapped skeleton that is no human body (InputError, the reason named);
    the warnings of one posed anyway: with a ``--joint-map`` (the user's word that the
    file is a body: only a mapping that crosses limbs is refused) or as tracked joint
    positions (a Kinect loses a limb for a while)."""
    points = isinstance(motion, JointPositions)
    body = _positions(pos, match.joints, REQUIRED[:-1])
    chains, hangs = [], []
    if not points:  # hands that are forearm ends (_with_hand_ends) hang off their forearms
        head = match.joints.get("Head", match.head_end)
        chains, hangs = _tree_problems(match.joints, [*motion.parents, *hand_parents], head)
    if not points and rest_pose is None:
        rest_pose = _rest_pose(motion)
    rest = None if points else _positions(rest_pose, match.joints, REQUIRED[:-1])
    problems = hangs or chains or human_problems(body, rest)
    if match.rig == "joint-map" and problems and not hangs:
        found = "; ".join(chains + human_problems(body, rest))
        return [f"not a human body's tree or proportions (posed as --joint-map says): {found}"]
    if points and problems:
        found = "; ".join(problems)
        return [f"joint positions far from a human body's proportions (tracking errors?): {found}"]
    if problems:
        raise InputError(
            motion.source,
            f"not a human body, as mapped by rig {match.rig}: {'; '.join(problems)}",
        )
    return []


def _bone_tip(
    motion: SkeletonMotion, pos: np.ndarray, glob: np.ndarray, mapped: set[int], j: int
) -> np.ndarray | None:
    """Where joint j's bone ends: its End Site, else its one child if that is a leaf
    no canonical joint takes (a "HeadTop_End" or "ltoes" joint), else None."""
    if np.linalg.norm(motion.end_offsets[j]) > 0:
        return pos[:, j] + np.einsum("tij,j->ti", glob[:, j], motion.end_offsets[j])
    kids = [c for c, p in enumerate(motion.parents) if p == j]
    leaf = kids[0] if len(kids) == 1 and kids[0] not in motion.parents else None
    if leaf is not None and leaf not in mapped and not _is_helper(_words(motion.names[leaf])[1]):
        return pos[:, leaf]
    return None


_READ_FRAMES = 4096  # frames (evenly spread) a take's rig, unit and up axis are read from


def _positions_of(motion: SkeletonMotion | JointPositions):
    """(positions (T, J, 3), global rotations (T, J, 3, 3) or None), file units and axes;
    InputError when they are NaN or Inf."""
    if isinstance(motion, JointPositions):
        pos, glob = motion.positions, None
    else:
        pos, glob = motion.forward_kinematics()
    if not np.isfinite(pos).all():
        raise InputError(motion.source, "the skeleton's joint positions contain NaN or Inf")
    return pos, glob


def canonical_motion(
    motion: SkeletonMotion | JointPositions,
    joint_map: dict[str, str] | None = None,
    frames: np.ndarray | None = None,
) -> CanonicalMotion:
    """Forward kinematics of ``motion`` -> canonical joint (and tip) positions, metres, Z up,
    of ``frames`` only (all when None). Joint positions (:class:`JointPositions`) are taken
    as they are (they have no tree and no rest pose to check).

    The rig, unit and up axis are read from the whole take (at most 4,096 evenly spread
    frames of it), whatever frames are posed: a file reads the same in ``stmt prepare``
    (every frame), ``stmt classify`` (its windows' frames) and ``stmt view``.

    Where rig tables map the file differently, the most human geometry wins
    (:func:`_choose`). A skeleton that is no human body is refused (with a ``joint_map``,
    the user's word that it is one, posed with a warning); a degenerate one is posed
    with :attr:`CanonicalMotion.warnings`.

    Raises:
        InputError: no rig maps the joints; the joints are NaN/Inf; or the mapped
            skeleton is no human body (:func:`human_problems`, the reason named).
    """
    points = isinstance(motion, JointPositions)
    parents = None if points else motion.parents
    matches = rig_candidates(motion.names, joint_map, motion.source, parents)
    rest_pose, hand_parents = None, []
    total = motion.num_frames
    spread = None  # the frames the take is read from: all, or an even spread of them
    if total > _READ_FRAMES:
        spread = np.linspace(0, total - 1, _READ_FRAMES).round().astype(np.int64)
    pos, glob = _positions_of(motion.take(spread))  # (T, J, 3), (T, J, 3, 3) or None
    if not points:
        pos, rest_pose, matches, hand_parents = _with_hand_ends(motion, matches, pos, glob)
    match = _choose(matches, pos)
    odd = _human_check(motion, match, pos, rest_pose, hand_parents)
    if motion.unit is not None:
        scale = float(motion.unit)
        unit_name = f"{scale:.4g} m (stated)"
    else:
        unit_name, scale = detect_unit(_leg_length(pos, match.joints))
    up = motion.up or detect_up(pos, match.joints, scale)
    world = world_to_z_up(up)
    if spread is None:  # read whole: the frames to pose are rows of what was read
        if frames is not None:
            pos, glob = pos[frames], None if glob is None else glob[frames]
    else:  # read from a spread: the frames to pose (all when None), read as the take
        pos, glob = _positions_of(motion.take(frames))
        if not points:
            pos, _, (match,), _ = _with_hand_ends(motion, [match], pos, glob)

    mapped = set(match.joints.values())

    def tip(j: int) -> np.ndarray | None:
        """Where joint j's bone ends (:func:`_bone_tip`); None for joint positions and
        for a hand that is itself a forearm's end."""
        if points or j >= len(motion.names):
            return None
        return _bone_tip(motion, pos, glob, mapped, j)

    out: dict[str, np.ndarray] = {}
    for canon, j in match.joints.items():
        out[canon] = pos[:, j] @ world.T * scale
        end = tip(j)
        if end is not None:
            out[f"{canon}_end"] = end @ world.T * scale
    if match.head_end is not None:
        j = match.head_end
        end = tip(j)
        if end is not None and not _continues(motion, j):
            end = None  # the end turns away (a metarig's "face" bone points forward)
        if end is None:  # the head sits at the chain's last joint, then no neck bone
            out = {k: v for k, v in out.items() if k.split("_end")[0] not in _names_of(match, j)}
        out["Head"] = (pos[:, j] if end is None else end) @ world.T * scale
    warnings = odd + _skeleton_warnings(out, motion.fps)
    return CanonicalMotion(out, match, unit_name, up, warnings, scale)


# ---------------------------------------------------------------------- rotation helpers


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T, 3) unit directions -> (T, 3, 3) rotations of smallest angle taking a onto b."""
    axis = np.cross(a, b)
    s = np.linalg.norm(axis, axis=-1)
    c = np.einsum("ti,ti->t", a, b)
    angle = np.arctan2(s, c)
    # Opposite directions: a half turn about any axis perpendicular to a.
    helper = np.where(np.abs(a[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    perp = _unit(np.cross(a, helper))
    axis = np.where((s > 1e-9)[:, None], axis / np.maximum(s, 1e-12)[:, None], perp)
    angle = np.where((s > 1e-9) | (c < 0), angle, 0.0)
    return axis_angle_to_matrix(axis * angle[:, None])


def _perp(v: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Component of ``v`` perpendicular to the unit direction ``d`` (both (T, 3))."""
    return v - np.einsum("ti,ti->t", v, d)[:, None] * d


# ------------------------------------------------------------------------ the bone solver

# Target bone -> (tip candidates, twist reference, the reference in the rig's rest).
# Tips are canonical joints ("X_end": the tip of X). A bone whose head or every tip is
# missing in the source moves rigidly with its parent.
_SPINE = ("Spine", "Spine1", "Neck", "Neck1", "Head")
BONES: dict[str, tuple[tuple[str, ...], str]] = {
    "LowerBack": (_SPINE, "left_pelvis"),
    "Spine": (_SPINE[1:], "left_mid"),
    "Spine1": (_SPINE[2:], "left_shoulders"),
    "Neck": (_SPINE[3:], "left_shoulders"),
    "Neck1": (_SPINE[4:], "left_shoulders"),
    "Head": (("Head_end",), "left_shoulders"),
    **{f"{s}Shoulder": ((f"{s}Arm",), "torso_up") for s in ("Left", "Right")},
    **{f"{s}Arm": ((f"{s}ForeArm",), f"{s}:upper_arm") for s in ("Left", "Right")},
    **{f"{s}ForeArm": ((f"{s}Hand",), f"{s}:forearm") for s in ("Left", "Right")},
    **{
        f"{s}Hand": ((f"{s}FingerBase", f"{s}HandFinger1", f"{s}Hand_end"), "none")
        for s in ("Left", "Right")
    },
    **{f"{s}UpLeg": ((f"{s}Leg",), f"{s}:thigh") for s in ("Left", "Right")},
    **{f"{s}Leg": ((f"{s}Foot",), f"{s}:shin") for s in ("Left", "Right")},
    **{f"{s}Foot": ((f"{s}ToeBase", f"{s}Foot_end"), f"{s}:foot") for s in ("Left", "Right")},
    **{f"{s}ToeBase": ((f"{s}ToeBase_end",), "none") for s in ("Left", "Right")},
}

_TWIST_FULL = 0.3  # |reference ⟂ bone| at and above which the twist follows it fully


def _reference(rule: str, p: dict[str, np.ndarray], d: np.ndarray) -> np.ndarray | None:
    """(T, 3) twist reference of a bone with direction ``d`` (unnormalised: its length
    ⟂ ``d`` says how well defined the twist is), or None for "follow the parent".

    Each reference names one anatomical direction so that source and rig agree:
    left for the spine, up for the clavicles, anterior for the limbs, dorsal for the foot.
    """
    if rule == "none":
        return None
    left_pelvis = p["LeftUpLeg"] - p["RightUpLeg"]
    left_shoulders = p["LeftArm"] - p["RightArm"]
    if rule == "left_pelvis":
        return _perp(_unit(left_pelvis), d)
    if rule == "left_shoulders":
        return _perp(_unit(left_shoulders), d)
    if rule == "left_mid":
        return _perp(_unit(_unit(left_pelvis) + _unit(left_shoulders)), d)
    if rule == "torso_up":
        hips = 0.5 * (p["LeftUpLeg"] + p["RightUpLeg"])
        return _perp(_unit(0.5 * (p["LeftArm"] + p["RightArm"]) - hips), d)
    side, part = rule.split(":")
    if part in ("upper_arm", "forearm"):
        upper = _unit(p[f"{side}ForeArm"] - p[f"{side}Arm"])
        fore = _unit(p[f"{side}Hand"] - p[f"{side}ForeArm"])
        # The elbow flexes anteriorly: the forearm leaves the upper arm towards the front
        # of the upper arm, and the upper arm leaves the forearm towards its back.
        return _perp(fore, d) if part == "upper_arm" else -_perp(upper, d)
    thigh = _unit(p[f"{side}Leg"] - p[f"{side}UpLeg"])
    shin = _unit(p[f"{side}Foot"] - p[f"{side}Leg"])
    toe = p.get(f"{side}ToeBase", p.get(f"{side}Foot_end"))
    foot = None if toe is None else _unit(toe - p[f"{side}Foot"])
    if part == "foot":
        return _perp(-shin, d)  # the top of the foot faces the shin
    # The knee flexes posteriorly: the shin leaves the thigh towards its back, the thigh
    # leaves the shin towards its front; the toes point to the front of both.
    ref = -_perp(shin, d) if part == "thigh" else _perp(thigh, d)
    return ref if foot is None else ref + _perp(foot, d)


def _rest_positions(heads: np.ndarray, tails: np.ndarray, labels: tuple[str, ...]):
    """The rig's rest joints under canonical names (bone heads; "X_end" = X's tail)."""
    out = {name: heads[i][None].astype(np.float64) for i, name in enumerate(labels)}
    out.update({f"{name}_end": tails[i][None].astype(np.float64) for i, name in enumerate(labels)})
    return out


def bone_rotations(
    positions: dict[str, np.ndarray],
    labels: tuple[str, ...],
    parents: tuple[int, ...],
    heads: np.ndarray,
    tails: np.ndarray,
) -> np.ndarray:
    """Global rotation of each bone of a rig (names = canonical joints) that poses it
    like the canonical joint ``positions``.

    Args:
        positions: canonical joint name -> (T, 3) position, metres, Z up (as from
            :func:`canonical_motion`); must hold :data:`REQUIRED`.
        labels, parents: the rig's bones (canonical names) and parent indices.
        heads, tails: (B, 3) the rig's rest bone heads and tails, same frame (Z up).

    Returns:
        (T, B, 3, 3) float64 rotation of each bone about its head, relative to the rig's
        rest pose (the identity when ``positions`` are the rig's rest joints).
    """
    rest = _rest_positions(heads, tails, labels)
    t = next(iter(positions.values())).shape[0]
    rot = np.empty((t, len(labels), 3, 3))

    # The pelvis: a full frame from the hip line and the torso.
    def pelvis_frame(p: dict[str, np.ndarray]) -> np.ndarray:
        left = p["LeftUpLeg"] - p["RightUpLeg"]
        narrow = np.linalg.norm(left, axis=-1, keepdims=True) < _MIN_BONE_M
        left = _unit(np.where(narrow, p["LeftArm"] - p["RightArm"], left))  # thighs at one point
        up = 0.5 * (p["LeftArm"] + p["RightArm"]) - 0.5 * (p["LeftUpLeg"] + p["RightUpLeg"])
        up = _unit(_perp(up, left))
        return np.stack([left, up, np.cross(left, up)], axis=-1)  # (T, 3, 3) columns

    root = pelvis_frame(positions) @ pelvis_frame(rest)[0].T  # (T, 3, 3)
    for b, label in enumerate(labels):
        parent = parents[b]
        if parent < 0:
            rot[:, b] = root
            continue
        spec = BONES.get(label)
        tip = None
        if spec is not None and label in positions:
            tip = next(  # the first tip the bone has a direction to (_MIN_BONE_M)
                (k for k in spec[0] if k in positions and k in rest
                 and np.median(_length(positions, label, k)) >= _MIN_BONE_M),
                None,
            )  # fmt: skip
        if tip is None:  # not driven by the source: rigid with the parent
            rot[:, b] = rot[:, parent]
            continue
        d = _unit(positions[tip] - positions[label])  # (T, 3) source bone direction
        a = _unit(rest[tip] - rest[label])[0]  # (3,) rig rest bone direction
        parent_rot = rot[:, parent]
        swung = _swing(parent_rot @ a, d) @ parent_rot  # (T, 3, 3)
        ref = _reference(spec[1], positions, d)
        if ref is not None:
            ref_rest = _reference(spec[1], rest, a[None])[0]  # (3,) in the rig's rest
            now = _perp(np.einsum("tij,j->ti", swung, _unit(ref_rest)), d)
            angle = np.arctan2(
                np.einsum("ti,ti->t", d, np.cross(now, ref)), np.einsum("ti,ti->t", now, ref)
            )
            weight = np.clip(np.linalg.norm(ref, axis=-1) / _TWIST_FULL, 0.0, 1.0)
            weight *= min(1.0, float(np.linalg.norm(ref_rest)) / _TWIST_FULL)
            swung = axis_angle_to_matrix(d * (weight * angle)[..., None]) @ swung
        rot[:, b] = swung
    return rot


def hip_scale(positions: dict[str, np.ndarray], heads: np.ndarray, labels: tuple[str, ...]):
    """(mid-hip (T, 3) of the source, rig leg length / source leg length)."""
    mid = 0.5 * (positions["LeftUpLeg"] + positions["RightUpLeg"])
    rest = {n: heads[i] for i, n in enumerate(labels)}

    def leg(p, side):
        return np.linalg.norm(p[f"{side}Leg"] - p[f"{side}UpLeg"], axis=-1) + np.linalg.norm(
            p[f"{side}Foot"] - p[f"{side}Leg"], axis=-1
        )

    src = float(np.median(leg(positions, "Left") + leg(positions, "Right")))
    rig = float(leg(rest, "Left") + leg(rest, "Right"))
    return mid, rig / max(src, 1e-9)
