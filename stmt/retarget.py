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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stmt.errors import InputError
from stmt.motion import SkeletonMotion, axis_angle_to_matrix

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
    # Acclaim ASF bone names (CMU database, HDM05); a joint sits at the start of its bone.
    "acclaim": _sided({
        "root": "Hips", "{s}hipjoint": "{C}HipJoint", "{s}femur": "{Side}UpLeg",
        "{s}tibia": "{Side}Leg", "{s}foot": "{Side}Foot", "{s}toes": "{Side}ToeBase",
        "lowerback": "LowerBack", "upperback": "Spine", "thorax": "Spine1",
        "lowerneck": "Neck", "upperneck": "Neck1", "head": "Head",
        "{s}clavicle": "{Side}Shoulder", "{s}humerus": "{Side}Arm",
        "{s}radius": "{Side}ForeArm", "{s}wrist": "{Side}Hand", "{s}hand": "{Side}FingerBase",
        "{s}fingers": "{Side}HandFinger1", "{s}thumb": "{C}Thumb",
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
    "daz": "DAZ-style CMU BVH",
    "3dsmax": "3ds-Max-style CMU BVH",
    "iclone": "Reallusion iClone / Character Creator",
    "bandai": "Bandai-Namco",
    "mixamo": "Mixamo",
    "smpl": "SMPL body joints",
    "xsens": "Xsens MVN",
    "biped": "3ds Max Biped",
    "joint-map": "the --joint-map file",
    "inferred": "no known rig; joints inferred from side names and the joint tree",
}


def _key(name: str) -> str:
    """Match key of a joint name: namespace prefix dropped, case and separators ignored."""
    key = name.rsplit(":", 1)[-1].strip().lower()
    return "".join(c for c in key if c not in " _-.")


@dataclass(frozen=True)
class RigMatch:
    """A skeleton's joints matched to the canonical joints."""

    rig: str  # a key of RIGS, "joint-map" or "inferred"
    joints: dict[str, int]  # canonical name -> source joint index
    names: tuple[str, ...] = ()  # the skeleton's joint names (shown for an inferred rig)

    def describe(self) -> str:
        text = f"{self.rig} ({RIG_NOTES.get(self.rig, self.rig)}; {len(self.joints)} joints mapped"
        if self.rig == "inferred" and self.names:
            # what was guessed, in --joint-map's terms, so that a wrong guess can be fixed
            pairs = ", ".join(f"{self.names[j]}: {c}" for c, j in self.joints.items())
            text += f"; as a --joint-map: {{{pairs}}}"
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
    from stmt import limits
    from stmt.fileio import load_yaml, read_text

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


def detect_rig(
    names: tuple[str, ...] | list[str],
    joint_map: dict[str, str] | None = None,
    source: Path | None = None,
    parents: tuple[int, ...] | list[int] | None = None,
) -> RigMatch:
    """Match a skeleton's joint names to the canonical joints.

    With ``joint_map`` that mapping is used (on top of nothing else). Otherwise every
    rig of :data:`RIGS` is tried; the one that maps all :data:`REQUIRED` joints and the
    most joints overall wins. If none does and ``parents`` is given, the joints are
    inferred from the tree (:func:`infer_joints`): rigs nobody listed load too.

    Raises:
        InputError: no rig maps every required joint; the message lists the joints
            needed and names ``--joint-map``.
    """
    names = tuple(names)
    if joint_map is not None:
        found = _match(names, joint_map)
        missing = [j for j in REQUIRED if j not in found]
        if missing:
            raise InputError(
                source,
                f"the --joint-map leaves required joints unmapped: {', '.join(missing)} "
                f"(the file's joints: {', '.join(names[:40])}{' ...' if len(names) > 40 else ''})",
            )
        return RigMatch("joint-map", found)
    best: tuple[int, str, dict[str, int]] | None = None
    for rig, table in RIGS.items():
        found = _match(names, table)
        if all(j in found for j in REQUIRED) and (best is None or len(found) > best[0]):
            best = (len(found), rig, found)
    if best is not None:
        return RigMatch(best[1], best[2])
    inferred = infer_joints(names, parents) if parents is not None else None
    if inferred is not None:
        return RigMatch("inferred", inferred, names)
    shown = ", ".join(names[:25]) + (" ..." if len(names) > 25 else "")
    raise InputError(
        source,
        f"unknown rig: cannot map its joints ({shown}) to the body's; pass --joint-map FILE "
        f"(YAML/JSON, their name -> ours) covering at least {', '.join(REQUIRED)}",
    )


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


def _words(name: str) -> tuple[str | None, tuple[str, ...]]:
    """(side "Left"/"Right"/None, lowercase words without the side) of a joint name.

    Sides as rigs write them: ``LeftArm``, ``lThigh``, ``LUArm``, ``L_Thigh``,
    ``thigh_l``, ``thigh.L``, ``ShoulderLeft``, ``CC_Base_L_Thigh``, ``Bip01 L Thigh``.
    """
    raw = name.rsplit(":", 1)[-1].rsplit("|", 1)[-1].strip()
    raw = re.sub(_PREFIX, "", raw, flags=re.IGNORECASE)
    side = None
    m = re.match(r"^([LlRr])(?=[A-Z])", raw)
    if m:  # lThigh, LUArm, RHipJoint (not "LowerBack": a lowercase letter follows)
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


def _has(words: tuple[str, ...], vocab: tuple[str, ...]) -> bool:
    return any(v in w for w in words for v in vocab)


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
    parents = list(parents)
    n = len(names)
    info = [_words(nm) for nm in names]

    def ancestors(j: int) -> list[int]:
        out = []
        while parents[j] >= 0:
            j = parents[j]
            out.append(j)
        return out

    depth = [len(ancestors(j)) for j in range(n)]

    def helper(j: int) -> bool:
        return any(
            w in _HELPER or w.startswith(_HELPER_AFFIX) or w.endswith(_HELPER_AFFIX)
            for w in info[j][1]
        )

    def first(side: str | None, vocab: tuple[str, ...], avoid: tuple[str, ...]) -> int | None:
        hits = [
            j for j in range(n)
            if info[j][0] == side and any(w in vocab for w in info[j][1])
            and not _has(info[j][1], avoid) and not helper(j)
        ]  # fmt: skip
        # the joint nearest the root; at equal depth the vocabulary's order (wrist before hand)
        rank = {j: min(vocab.index(w) for w in info[j][1] if w in vocab) for j in hits}
        return min(hits, key=lambda j: (depth[j], rank[j])) if hits else None

    def up(j: int) -> int | None:
        """The nearest ancestor that is no helper bone; of a bone cut in segments
        (``upperarm01.L``, ``upperarm02.L``), the first segment."""
        a = next((a for a in ancestors(j) if not helper(a)), None)
        while a is not None and parents[a] >= 0 and info[parents[a]] == info[a]:
            a = parents[a]
        return a

    out: dict[str, int] = {}
    for side in ("Left", "Right"):
        hand = first(side, _HAND_WORDS, _NOT_HAND)
        foot = first(side, _FOOT_WORDS, _NOT_FOOT)
        if hand is None or foot is None:
            return None
        fore = up(hand)
        arm = up(fore) if fore is not None else None
        leg = up(foot)
        upleg = up(leg) if leg is not None else None
        if None in (fore, arm, leg, upleg):
            return None
        out.update({f"{side}Hand": hand, f"{side}ForeArm": fore, f"{side}Arm": arm,
                    f"{side}Foot": foot, f"{side}Leg": leg, f"{side}UpLeg": upleg})  # fmt: skip
        clav = parents[arm]
        if clav >= 0 and info[clav][0] == side and _has(info[clav][1], _CLAVICLE):
            out[f"{side}Shoulder"] = clav
        hipj = parents[upleg]
        if hipj >= 0 and info[hipj][0] == side:
            out[f"{side[0]}HipJoint"] = hipj
        toes = [c for c in range(n) if parents[c] == foot and not helper(c)]
        if len(toes) == 1 or any(_has(info[c][1], _NOT_FOOT) for c in toes):
            out[f"{side}ToeBase"] = next((c for c in toes if _has(info[c][1], _NOT_FOOT)), toes[0])

    def common(a: int, b: int) -> int:
        chain = [a, *ancestors(a)]
        return next(x for x in [b, *ancestors(b)] if x in chain)

    hips = common(out["LeftUpLeg"], out["RightUpLeg"])
    # "Head", "head", "Head_M", and "torso_head" (bones named parent_child)
    heads = [j for j in range(n) if info[j][0] is None and info[j][1][-1:] == ("head",)]
    heads = [j for j in heads if hips in ancestors(j)]
    if not heads:
        return None
    head = min(heads, key=lambda j: depth[j])
    out["Hips"], out["Head"] = hips, head
    path = ancestors(head)[::-1]  # root ... head's parent
    path = [j for j in path[path.index(hips) + 1 :] if not helper(j)]  # hips .. head, exclusive
    chest = common(out["LeftHand"], out["RightHand"])
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
    if len(set(out.values())) != len(out):
        return None  # one joint in two roles: not a skeleton we understand
    return out


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


def detect_up(pos: np.ndarray, joints: dict[str, int]) -> str:
    """The world axis the body stands along, from the hips -> shoulders vector over the
    motion ("y" when the body is never upright enough to tell)."""
    hips = 0.5 * (pos[:, joints["LeftUpLeg"]] + pos[:, joints["RightUpLeg"]])
    top = 0.5 * (pos[:, joints["LeftArm"]] + pos[:, joints["RightArm"]])
    torso = _unit(top - hips).mean(axis=0)
    axis = int(np.argmax(np.abs(torso)))
    if abs(torso[axis]) < 0.5:
        return "y"
    return ("-" if torso[axis] < 0 else "") + "xyz"[axis]


@dataclass
class CanonicalMotion:
    """Canonical joint positions in metres, Z up: what :func:`bone_rotations` needs."""

    positions: dict[str, np.ndarray]  # canonical name (or "<name>_end") -> (T, 3)
    rig: RigMatch
    unit: str
    up: str


def canonical_motion(
    motion: SkeletonMotion, joint_map: dict[str, str] | None = None
) -> CanonicalMotion:
    """Forward kinematics of ``motion`` -> canonical joint (and tip) positions, metres, Z up."""
    match = detect_rig(motion.names, joint_map, motion.source, motion.parents)
    pos, glob = motion.forward_kinematics()  # (T, J, 3), (T, J, 3, 3), file units and axes
    if motion.unit is not None:
        scale = float(motion.unit)
        unit_name = f"{scale:.4g} m (stated)"
    else:
        unit_name, scale = detect_unit(_leg_length(pos, match.joints))
    up = motion.up or detect_up(pos, match.joints)
    world = world_to_z_up(up)
    out: dict[str, np.ndarray] = {}
    for canon, j in match.joints.items():
        out[canon] = pos[:, j] @ world.T * scale
        end = motion.end_offsets[j]
        if np.linalg.norm(end) > 0:
            tip = pos[:, j] + np.einsum("tij,j->ti", glob[:, j], end)
            out[f"{canon}_end"] = tip @ world.T * scale
    if not all(np.isfinite(v).all() for v in out.values()):
        raise InputError(motion.source, "the skeleton's joint positions contain NaN or Inf")
    return CanonicalMotion(out, match, unit_name, up)


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
        left = _unit(p["LeftUpLeg"] - p["RightUpLeg"])
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
            tip = next((k for k in spec[0] if k in positions and k in rest), None)
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
