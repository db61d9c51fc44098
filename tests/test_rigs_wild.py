"""Rigs from the wild (issue 25): Acclaim names in BVH files, one-letter side prefixes, a
head that is only an End Site, an extra root above the hips, skeletons in millimetres or
with zero-length bones load and pose the clip they hold; a four-legged animal is refused.

Every fixture re-expresses the real HDM05 clip (tests/helpers/rigs.py), so "poses right"
is checked against that clip: the same body where the geometry is the same, else each
limb of the posed body pointing where the clip's limb points.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from stmt.errors import InputError
from stmt.io import read_motion
from stmt.motion import SkeletonMotion
from stmt.reading import read_sequence
from stmt.retarget import (
    HUMAN_PROPORTIONS,
    canonical_motion,
    detect_rig,
    human_problems,
    proportions,
)
from tests.helpers import rigs

SAME_BODY_M = 1e-3  # as tests/test_retarget.py: BVH text rounds to 1e-6

# Limb bones of the posed body, as (head joint, tail joint) of anny's bones.
LIMBS = {
    f"{s} {part}": (f"{s}{a}", f"{s}{b}")
    for s in ("Left", "Right")
    for part, (a, b) in {
        "thigh": ("UpLeg", "Leg"), "shin": ("Leg", "Foot"),
        "upper arm": ("Arm", "ForeArm"), "forearm": ("ForeArm", "Hand"),
    }.items()
}  # fmt: skip


@pytest.fixture(scope="module")
def clip_body():
    """The HDM05 clip as its own AMC file poses it (the truth every rig is held to)."""
    return read_sequence(rigs.HDM05_CLIP)


def limb_angles(seq, truth, frames=slice(None)) -> dict[str, float]:
    """Largest angle (degrees) over ``frames`` between each limb bone of ``seq`` and of
    ``truth`` (both posed bodies)."""
    out = {}
    for limb, (a, b) in LIMBS.items():
        dirs = []
        for s in (seq, truth):
            v = s.joints[frames, s.joint_names.index(b)] - s.joints[frames, s.joint_names.index(a)]
            dirs.append(v / np.linalg.norm(v, axis=-1, keepdims=True))
        cos = np.clip(np.einsum("ti,ti->t", *dirs), -1.0, 1.0)
        out[limb] = float(np.degrees(np.arccos(cos)).max())
    return out


def assert_upright_kick(seq) -> None:
    """An upright adult whose left foot kicks (the clip's motion, not a rest pose)."""
    j, names = seq.joints, seq.joint_names
    head, hips = j[:, names.index("Head"), 2], j[:, names.index("Hips"), 2]
    feet = j[:, [names.index("LeftFoot"), names.index("RightFoot")], 2]
    assert np.all(head > hips + 0.4) and np.all(feet.max(axis=1) < hips)
    assert np.ptp(j[:, names.index("LeftFoot"), 2]) > 0.2


def load(motion, tmp_path, name: str):
    return read_sequence(rigs.to_bvh(motion, tmp_path / f"{name}.bvh"))


# ------------------------------------------------------------------- Acclaim names in BVH


@pytest.mark.parametrize(
    ("root", "case"),
    [("hip", None), ("pelvis", str.upper), ("root", str.title), ("HIP", str.lower)],
)
def test_acclaim_names_in_a_bvh_file_pose_the_clip(root, case, tmp_path, clip_body):
    """ASF bone names in a BVH file (the joint at the start of its bone), the root named
    hip, pelvis or root, any case: the body of the AMC file itself."""
    seq = load(rigs.renamed(rigs.asf_clip(), {"root": root}, case), tmp_path, "asf")
    assert seq.rig.startswith("acclaim (") and "unit cmu" in seq.rig
    assert np.abs(seq.vertices - clip_body.vertices).max() < SAME_BODY_M
    assert seq.warnings == []


def test_acclaim_names_at_bone_ends_are_told_apart_by_geometry(tmp_path, clip_body):
    """The same names where each joint sits at the END of its bone ("lfemur" at the knee):
    both Acclaim tables map every name (the start one more joints), and the leg and arm
    proportions pick the end one; the body kicks like the clip."""
    motion = rigs.renamed(rigs.bone_ends(rigs.asf_clip()), {"root": "hip"})
    assert detect_rig(motion.names).rig == "acclaim", "by names alone: the start convention"
    path = rigs.to_bvh(motion, tmp_path / "ends.bvh")
    seq = read_sequence(path)
    assert seq.rig.startswith("acclaim-end (")
    assert_upright_kick(seq)
    worst = limb_angles(seq, clip_body)
    assert max(worst.values()) < 5.0, worst
    # read the start way, these joint positions are no human's: the reason the end way won
    pos, _ = read_motion(path).forward_kinematics()
    start = detect_rig(motion.names, parents=motion.parents).joints
    assert human_problems({c: pos[:, j] for c, j in start.items()})


# --------------------------------------------------------------- side prefixes, MocapNET


@pytest.mark.parametrize(
    ("name", "side", "words"),
    [
        ("lhand", "Left", ("hand",)), ("rfoot", "Right", ("foot",)),
        ("lshoulder", "Left", ("shoulder",)), ("LFEMUR", "Left", ("femur",)),
        ("Rhumerus", "Right", ("humerus",)), ("rring1", "Right", ("ring",)),
        ("lowerback", None, ("lowerback",)), ("LOWERBACK", None, ("lowerback",)),
        ("radius", None, ("radius",)), ("ring1", None, ("ring",)), ("root", None, ("root",)),
    ],
)  # fmt: skip
def test_one_letter_side_prefixes_in_one_case(name, side, words):
    from stmt.retarget import _words

    assert _words(name) == (side, words)


def test_mocapnet_names_pose_the_clip(tmp_path, clip_body):
    """MocapNET's output rig ("lhip" the thigh, "lshoulder" the upper arm), random rest
    pose; the full identity with the CMU-named clip is in test_retarget's unlisted-rig test."""
    seq = load(rigs.unlisted(rigs.cmu_clip(), "mocapnet", seed=6), tmp_path, "mocapnet")
    assert seq.rig.startswith("inferred") and "lhip: LeftUpLeg" in seq.rig
    assert_upright_kick(seq)
    assert max(limb_angles(seq, clip_body).values()) < 1.0


# ------------------------------------------------------------------ a head that is an End Site


@pytest.mark.parametrize("rig", ["cmu", "kinect", "mocapnet"])
def test_a_head_that_is_only_an_end_site(rig, tmp_path):
    """No head joint, the neck ending in an End Site where the head sits (a listed rig and
    two inferred ones): the body is the one with the head joint, bar the head's own nod."""
    clip = rigs.cmu_clip()
    if rig != "cmu":
        clip = rigs.renamed(clip, rigs.unlisted_names(rig))
    head = next(n for n in clip.names if n.lower() == "head")
    ref = load(clip, tmp_path, "ref")
    seq = load(rigs.without_head(clip, head), tmp_path, "headless")
    assert "no head joint: the head is the end of" in seq.rig
    assert_upright_kick(seq)
    np.testing.assert_allclose(seq.joints, ref.joints, atol=SAME_BODY_M)


# -------------------------------------------------------------- an extra root above the hips


@pytest.mark.parametrize(
    ("name", "follow", "z_up"),
    [("Reference", False, False), ("SimulationBone", True, False), ("root", False, True)],
)
def test_an_extra_root_above_the_hips(name, follow, z_up, tmp_path):
    """A still "Reference", a "SimulationBone" turning with the hips, a "root" that makes
    the world Z up: the same body as without it (also for inferred and Acclaim names)."""
    clip = rigs.cmu_clip()
    acclaim = rigs.renamed(rigs.asf_clip(), {"root": "hip"})
    for motion in (clip, rigs.renamed(clip, rigs.unlisted_names("unreal")), acclaim):
        ref = load(motion, tmp_path, "ref")
        moved = rigs.extra_root(motion, name, follow, z_up)
        seq = load(moved, tmp_path, name)
        assert seq.rig.split(" ")[0] == ref.rig.split(" ")[0]
        assert ("up z" in seq.rig) == z_up
        assert np.abs(seq.vertices - ref.vertices).max() < SAME_BODY_M
        hips = detect_rig(moved.names, parents=moved.parents).joints["Hips"]
        assert hips == 1, f"the hips, not the {name} above them"


# ---------------------------------------------------------------------- units, degenerate


def test_a_skeleton_in_millimetres(tmp_path):
    clip = rigs.cmu_clip()
    seq = load(rigs.scaled(clip, rigs.HDM05_UNIT_M * 1000), tmp_path, "mm")
    ref = load(clip, tmp_path, "ref")
    assert "unit mm" in seq.rig and seq.warnings == []
    assert np.abs(seq.vertices - ref.vertices).max() < SAME_BODY_M


def test_tracked_joint_positions_in_millimetres_warn_and_pose(tmp_path, clip_body):
    """A Kinect-style file: position channels only, millimetres, tracking noise, the left
    wrist lost onto the elbow for five frames: loads in mm, warns that bones change
    length, and poses the clip in the frames where tracking held."""
    kinect = rigs.unlisted(rigs.cmu_clip(), "kinect")
    motion = rigs.tracked_positions(kinect, rigs.HDM05_UNIT_M * 1000)
    seq = read_sequence(rigs.write_positions_bvh(motion, tmp_path / "kinect.bvh"))
    assert "unit mm" in seq.rig
    assert len(seq.warnings) == 1 and "change length" in seq.warnings[0]
    assert "LeftForeArm->LeftHand" in seq.warnings[0]
    good = np.r_[0:20, 25:60]
    assert_upright_kick(seq)
    assert max(limb_angles(seq, clip_body, good).values()) < 8.0  # 3 mm of noise: 4.6


def test_zero_length_bones_warn_and_pose(tmp_path, clip_body):
    """Joints sitting on their parent (no bone to point along): one warning naming the
    bones; each is posed from the next joint along, the limbs still follow the clip."""
    motion = rigs.zero_bones(rigs.cmu_clip(), ["Spine1", "LeftToeBase", "LeftFingerBase"])
    seq = load(motion, tmp_path, "zero")
    assert len(seq.warnings) == 1
    for bone in ("Spine->Spine1", "LeftFoot->LeftToeBase", "LeftHand->LeftFingerBase"):
        assert bone in seq.warnings[0]
    assert_upright_kick(seq)
    assert max(limb_angles(seq, clip_body).values()) < 1.0


def test_a_bone_that_flips_between_frames_warns(tmp_path, clip_body):
    """A tracking glitch throws the left forearm back for two frames (at 120 fps): one
    warning naming it; the frames around it still pose the clip."""
    seq = load(rigs.flipped(rigs.cmu_clip(), "LeftForeArm", slice(30, 32)), tmp_path, "flip")
    assert len(seq.warnings) == 1 and "flip between frames" in seq.warnings[0]
    assert re.search(r"LeftForeArm->LeftHand turns 1[5-8]\d degrees", seq.warnings[0])
    assert max(limb_angles(seq, clip_body, np.r_[0:30, 32:60]).values()) < 1.0


def test_real_fixture_rigs_load_without_warnings():
    for path in (rigs.BANDAI_CLIP, rigs.HDM05_CLIP, rigs.DATA / "wild" / "biovision_example.bvh"):
        assert read_sequence(path).warnings == [], path


# --------------------------------------------------------------- up axis, a first T-pose


def torso_directions(clip) -> np.ndarray:
    """(T, 3) unit mid-hip -> mid-shoulder directions of a CMU-named clip, file axes."""
    pos, _ = clip.forward_kinematics()
    n = clip.names
    hips = pos[:, [n.index("LeftUpLeg"), n.index("RightUpLeg")]].mean(axis=1)
    torso = pos[:, [n.index("LeftArm"), n.index("RightArm")]].mean(axis=1) - hips
    return torso / np.linalg.norm(torso, axis=-1, keepdims=True)


@pytest.mark.parametrize("z_up", [False, True], ids=["y-up", "z-up-root"])
def test_a_take_spent_bending_to_the_floor_stands_along_its_up_axis(z_up, tmp_path):
    """A real take of bending down to put something on the floor, as a BVH file that
    states no up axis: its torso points along the floor's forward axis for so much of it
    that the mean torso direction leans that way (the rule before: the body lay on its
    back, "up -x"). It is posed as its AMC file (up stated) poses it; so it is under a
    root that turns the world Z up (a root joint that sinks below the floor with the
    hips, which the floor the body bends on must not count)."""
    clip = rigs.cmu_bend()
    mean = torso_directions(clip).mean(axis=0)
    assert np.argmax(np.abs(mean)) != 1  # the hard case: the mean leans off the up axis (y)
    seq = load(rigs.extra_root(clip, "root", z_up=True) if z_up else clip, tmp_path, "bend")
    assert f"up {'z' if z_up else 'y'}" in seq.rig and seq.warnings == []
    truth = read_sequence(rigs.HDM05_BEND)  # its AMC file: up y stated
    assert np.abs(seq.vertices - truth.vertices).max() < SAME_BODY_M


def test_a_take_spent_lying_on_the_floor_lies_on_it(tmp_path):
    """A real take of a woman lying on the floor the whole time (ACCAD's Female1 BVH, every
    4th frame): her torso points along the floor (Z) in every frame, so the torso alone
    read Z as up and stood her on her head or feet (the rule before: "up z", and the
    model read her moving legs as a wave, 0.97). Along Y her lowest joints lie just above
    0, as on a capture volume's floor, and along Z they do not: Y is up, the body lies."""
    motion = read_motion(rigs.ACCAD_LIE)
    torso = torso_directions(motion)
    assert np.abs(torso[:, 1]).max() < 0.6 and np.abs(torso.mean(axis=0)[2]) > 0.8
    canon = canonical_motion(motion)
    assert canon.up == "y" and canon.unit == "cm"
    p = canon.positions  # metres, Z up
    hips = 0.5 * (p["LeftUpLeg"] + p["RightUpLeg"])
    up = (0.5 * (p["LeftArm"] + p["RightArm"]) - hips)[:, 2]
    assert np.abs(up).max() < 0.25 and np.median(hips[:, 2]) < 0.3  # lying, hips low
    seq = load(motion, tmp_path, "lie")
    assert "up y" in seq.rig and seq.vertices[..., 2].max() < 0.8


def test_a_standing_take_written_z_up_stays_z_up_beside_a_floor_at_y_0(tmp_path):
    """The floor rule needs the torso's axis to have no floor at 0: the kick take turned
    Z up on a floor at 0, its lowest joints along Y also just above 0 (it stands in
    front of the origin), reads Z up as before."""
    clip = rigs.extra_root(rigs.cmu_clip(), "root", z_up=True)
    pos, _ = clip.forward_kinematics()
    assert abs(np.median(pos[..., 2].min(axis=1))) < 0.5 / rigs.HDM05_UNIT_M  # floor at 0
    shift = 0.05 / rigs.HDM05_UNIT_M - pos[..., 1].min()  # lowest Y joint 5 cm above 0
    trans = clip.translations.copy()
    trans[:, 0, 1] += shift
    moved = replace(clip, translations=trans)
    assert canonical_motion(moved).up == "z"


def test_the_frames_posed_are_read_as_part_of_the_take():
    """classify poses only its windows' frames: those of a take spent bending could be all
    bent frames, which alone read a horizontal up axis. The rig, unit and up axis are
    read from the whole take, so the posed frames are exactly those of the whole take.
    (Its floor lifted 1 m off 0, as some files have it: on a floor at 0 the bent frames
    alone read Y up too.)"""
    clip = rigs.cmu_bend()
    bent = np.flatnonzero(np.abs(torso_directions(clip)[:, 1]) < 0.5)  # over 60 deg off y
    assert 20 < len(bent) < clip.num_frames
    assert canonical_motion(clip.take(bent)).up == "y"  # on its floor at 0
    trans = clip.translations.copy()
    trans[:, 0, 1] += 1.0 / rigs.HDM05_UNIT_M
    clip = replace(clip, translations=trans)
    assert canonical_motion(clip.take(bent)).up != "y"  # read alone: another axis
    part, whole = canonical_motion(clip, frames=bent), canonical_motion(clip)
    assert part.up == whole.up == "y" and part.unit == whole.unit
    assert sorted(part.positions) == sorted(whole.positions)
    for name, p in part.positions.items():  # (to rounding: BLAS may block T frames apart)
        np.testing.assert_allclose(p, whole.positions[name][bent], rtol=0, atol=1e-9)


def running(motion, every: int, speed_m_s: float = 3.0):
    """Every ``every``-th frame of ``motion``, its root carried forward at a run's speed."""
    part = motion.take(np.arange(0, motion.num_frames, every))
    fps = motion.fps / every
    trans = part.translations.copy()
    trans[:, 0, 0] += np.arange(part.num_frames) / fps * speed_m_s / rigs.HDM05_UNIT_M
    return replace(part, translations=trans, fps=fps)


@pytest.mark.parametrize("root_at", [None, (0.0, 17.0, 0.0)], ids=["root-in-place", "at-origin"])
@pytest.mark.parametrize("every", [1, 5], ids=["120fps", "24fps-running"])
def test_a_t_pose_before_the_take_is_posed_as_its_first_frame(root_at, every, tmp_path):
    """CMU's BVH conversions begin every file with a T-pose frame the motion then jumps
    away from: the reader holds the motion's first pose there instead (one warning),
    so the file is the motion it holds; the frame count and times stay the file's. So
    at 24 fps with the body carried at 3 m/s, where its every step is 12.5 cm (the rule
    before wanted the jump ten times the median step, and missed it)."""
    clip = rigs.cmu_clip() if every == 1 else running(rigs.cmu_clip(), every)
    root = None if root_at is None else np.array(root_at)
    seq = load(rigs.with_first_frame(clip, root), tmp_path, "tpose")
    plain = load(clip, tmp_path, "plain")
    assert len(seq.warnings) == 1 and "first frame is a pose apart" in seq.warnings[0]
    assert seq.num_frames == plain.num_frames + 1
    assert np.abs(seq.vertices[1:] - plain.vertices).max() < SAME_BODY_M
    assert np.abs(seq.vertices[0] - plain.vertices[0]).max() < SAME_BODY_M
    assert_upright_kick(seq)


def test_a_take_that_starts_in_motion_keeps_its_first_frame(tmp_path):
    """A take whose first frame is motion (its first step as large as the next ones, or
    the body still; at 120 fps, or at 15 fps sprinting) is read as it is: only a jump
    apart from the motion is held."""
    clip = rigs.cmu_clip()
    fast = running(clip, 8, 6.0)  # 15 fps, the body carried at 6 m/s: 40 cm a frame
    for motion in (clip, clip.take(np.r_[0, 0, 0, 1:60]), clip.take(np.arange(10, 60)), fast):
        read = read_sequence(rigs.to_bvh(motion, tmp_path / "m.bvh"))
        assert read.warnings == []


# -------------------------------------------------------------------------- not a human


def test_a_four_legged_animal_is_refused(tmp_path):
    """A quadruped rigged with 3ds Max Biped names maps as a biped; its proportions and
    posture say it is none: one line naming the file, exit status 2."""
    path = rigs.to_bvh(rigs.quadruped(), tmp_path / "dog.bvh")
    with pytest.raises(InputError, match="not a human body") as err:
        read_sequence(path)
    assert "dog.bvh" in str(err.value) and "four-legged" in str(err.value)
    assert "not a human body" in rigs.inspect_error(path)


def test_a_head_and_two_hands_are_refused_as_no_whole_body(tmp_path):
    """A VR recording (a headset and two controllers under a still root, as a Godot VR
    recorder writes it): no joint map can make a body of it, so the line says what is
    missing instead of asking for one."""
    clip = rigs.cmu_clip()
    keep = [clip.names.index(n) for n in ("Hips", "Head", "LeftHand", "RightHand")]
    pos, _ = clip.forward_kinematics()
    names = ("__0", "head", "hand_l", "hand_r")
    vr = SkeletonMotion(
        names=names, parents=(-1, 0, 0, 0), offsets=np.zeros((4, 3)),
        end_offsets=np.zeros((4, 3)),
        rotations=np.broadcast_to(np.eye(3), (clip.num_frames, 4, 3, 3)).copy(),
        translations=np.concatenate([np.zeros((clip.num_frames, 1, 3)), pos[:, keep[1:]]], 1),
        fps=clip.fps,
    )  # fmt: skip
    path = rigs.to_bvh(vr, tmp_path / "vr.bvh")
    line = rigs.inspect_error(path)
    assert "vr.bvh: only 4 joints (__0, head, hand_l, hand_r): not a whole body" in line
    assert "LeftUpLeg" in line  # what a body needs
    assert "--joint-map" not in line


def test_a_mapping_whose_limbs_cross_the_tree_is_refused(tmp_path):
    """A --joint-map that swaps the left hand and the right foot (a wrong map): the tree
    check says so instead of posing a body from it."""
    clip = rigs.cmu_clip()
    wrong = {n: n for n in clip.names if n in ("Hips", "Head") or n.startswith(("Left", "Right"))}
    wrong = {k: v for k, v in wrong.items() if "Finger" not in k and "Index" not in k}
    wrong["RightFoot"], wrong["LeftHand"] = "LeftHand", "RightFoot"
    with pytest.raises(InputError, match="not a human body.*hangs below its right leg"):
        canonical_motion(clip, wrong)


def test_every_human_fixture_has_human_proportions():
    """The real clips sit inside HUMAN_PROPORTIONS' ranges, near the typical values."""
    for path in (rigs.BANDAI_CLIP, rigs.HDM05_CLIP, rigs.DATA / "wild" / "biovision_example.bvh"):
        c = canonical_motion(read_motion(path))
        body = {k: v for k, v in c.positions.items() if not k.endswith("_end")}
        assert human_problems(body) == [], path
        ratios = proportions(body)
        for name, (typical, _, _) in HUMAN_PROPORTIONS.items():
            assert abs(np.log(ratios[name] / typical)) < np.log(2.2), (path, name)


def test_forearms_that_end_in_an_end_site_are_the_hands(tmp_path, clip_body):
    """No hand joints (a Blender metarig / FreeMoCap export: upper_arm.L, forearm.L ending
    in an End Site): the hands are the forearms' ends, by CMU names and by inference from
    metarig names alike, and the limbs pose as the clip's."""
    cut = rigs.without_hands(rigs.cmu_clip())
    assert "LeftHand" not in cut.names
    seq = load(cut, tmp_path, "cmu-no-hands")
    assert "the hands are the ends of LeftForeArm and RightForeArm" in seq.rig
    angles = limb_angles(seq, clip_body)
    assert max(angles.values()) < 1.0, angles
    metarig = rigs.renamed_to(cut, rigs.METARIG)
    meta = load(metarig, tmp_path, "metarig")
    assert meta.rig.startswith("inferred") and "ends of forearm.L and forearm.R" in meta.rig
    assert_upright_kick(meta)
    angles = limb_angles(meta, clip_body)
    assert max(angles.values()) < 1.0, angles


def test_a_neck_chain_ending_in_a_forward_face_keeps_the_head_up(tmp_path):
    """A metarig's last neck bone (``face``) may end in an End Site pointing forward, not
    up: that end is no head top, so the head sits at the joint and turns with the neck,
    as if the file had no End Site there, instead of nodding 90 degrees."""
    from dataclasses import replace

    cut = rigs.without_head(rigs.cmu_clip(), "Head")  # the neck chain ends in an End Site
    j = cut.names.index("Neck1")
    up = cut.end_offsets[j]
    forward = np.cross(up, cut.offsets[cut.names.index("LeftArm")])  # across the shoulders
    forward *= 0.2 * np.linalg.norm(up) / np.linalg.norm(forward)
    ends_fwd, ends_none = cut.end_offsets.copy(), cut.end_offsets.copy()
    ends_fwd[j], ends_none[j] = forward, 0.0
    face = load(replace(cut, end_offsets=ends_fwd), tmp_path, "face")
    plain = load(replace(cut, end_offsets=ends_none), tmp_path, "plain")
    assert np.abs(face.vertices - plain.vertices).max() < 1e-5
    head, hips = (face.joints[:, face.joint_names.index(n), 2] for n in ("Head", "Hips"))
    assert np.all(head > hips + 0.4)
