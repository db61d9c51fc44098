"""Rigs found in the wild load as they are and pose the same body (stmt.retarget)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from stmt.errors import InputError
from stmt.io import read_motion
from stmt.reading import read_sequence
from stmt.retarget import RIGS, canonical_motion, detect_rig
from tests.helpers import rigs

# One clip on two rigs: the same body within this distance (BVH text rounds to 1e-6).
SAME_BODY_M = 1e-3


def test_real_bandai_file_loads_as_it_is():
    """Bandai-Namco: bones along +X in the rest pose, every joint translated."""
    seq = read_sequence(rigs.BANDAI_CLIP)
    assert seq.rig.startswith("bandai") and "unit cm" in seq.rig and "up y" in seq.rig
    v = seq.vertices  # (T, V, 3), Z up
    height = v[:, :, 2].max(axis=1) - v[:, :, 2].min(axis=1)
    assert np.all((height > 1.5) & (height < 1.9)), "an upright adult in every frame"
    assert abs(float(v[:, :, 2].min())) < 0.05, "the feet are on the floor"
    head = seq.joints[:, seq.joint_names.index("Head"), 2]
    hips = seq.joints[:, seq.joint_names.index("Hips"), 2]
    assert np.all(head > hips + 0.4)
    travelled = np.linalg.norm(seq.joints[-1, 0, :2] - seq.joints[0, 0, :2])
    assert travelled > 0.5, "one second of walking moves the hips"


def test_real_hdm05_file_loads_as_it_is():
    seq = read_sequence(rigs.HDM05_CLIP)
    assert seq.rig.startswith("acclaim") and seq.fps == 120.0
    v = seq.vertices
    assert 1.5 < float(np.ptp(v[0, :, 2])) < 1.9 and abs(float(v[0, :, 2].min())) < 0.05


@pytest.mark.parametrize("rig", sorted(set(RIGS) - {"acclaim"}))
def test_one_clip_on_two_rigs_poses_the_same_body(rig, tmp_path):
    """The HDM05 clip in CMU names vs in ``rig``'s names with a random rest pose (and
    iClone's twist/share bones): rig detected, same vertices within SAME_BODY_M."""
    clip = rigs.cmu_clip()
    ref = read_sequence(rigs.to_bvh(rigs.restricted_to(rig, clip), tmp_path / "ref.bvh"))
    alt_path = rigs.to_bvh(rigs.reexpress(clip, rig, seed=1), tmp_path / f"{rig}.bvh")
    assert detect_rig(read_motion(alt_path).names).rig == rig
    alt = read_sequence(alt_path)
    assert alt.rig.startswith(rig)
    err = np.abs(alt.vertices - ref.vertices).max()
    assert err < SAME_BODY_M, f"{rig}: {err * 1000:.2f} mm"
    # and the pose is a real one, not the rest pose: the kick lifts the left foot
    foot = alt.joints[:, alt.joint_names.index("LeftFoot"), 2]
    assert np.ptp(foot) > 0.05


def test_rest_pose_does_not_matter():
    """The same clip with two different random rest poses gives the same canonical joints."""
    clip = rigs.cmu_clip()
    a = canonical_motion(rigs.reexpress(clip, "cmu", seed=2)).positions
    b = canonical_motion(rigs.reexpress(clip, "cmu", seed=3)).positions
    c = canonical_motion(clip).positions
    for name in c:
        np.testing.assert_allclose(a[name], c[name], atol=1e-9)
        np.testing.assert_allclose(b[name], c[name], atol=1e-9)


def test_every_rig_table_maps_the_required_joints():
    from stmt.retarget import REQUIRED

    for rig, table in RIGS.items():
        assert set(REQUIRED) <= set(table.values()), rig


def _unknown_rig(tmp_path):
    clip = rigs.cmu_clip()
    theirs = {n: f"bone{i:02d}" for i, n in enumerate(clip.names)}
    from dataclasses import replace

    path = rigs.to_bvh(
        replace(clip, names=tuple(theirs[n] for n in clip.names)), tmp_path / "x.bvh"
    )
    return clip, theirs, path


def test_unknown_rig_names_the_joint_map_flag_and_the_joints_needed(tmp_path):
    _, _, path = _unknown_rig(tmp_path)
    with pytest.raises(InputError, match="--joint-map") as err:
        read_sequence(path)
    assert "x.bvh" in str(err.value) and "LeftUpLeg" in str(err.value)
    assert "--joint-map" in rigs.inspect_error(path)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_joint_map_file_poses_an_unknown_rig(tmp_path, suffix):
    clip, theirs, path = _unknown_rig(tmp_path)
    ours = {theirs[n]: n for n in clip.names if n in RIGS["cmu"]}  # CMU names are ours
    ours = {k: RIGS["cmu"][v] for k, v in ours.items()}
    map_file = tmp_path / f"map{suffix}"
    if suffix == ".json":
        map_file.write_text(json.dumps(ours))
    else:
        map_file.write_text("".join(f"{k}: {v}\n" for k, v in ours.items()))
    ref = read_sequence(rigs.to_bvh(clip, tmp_path / "ref.bvh"))
    proc = subprocess.run([sys.executable, "-m", "stmt", "inspect", str(path), "--joint-map",
                           str(map_file), "--json"], capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rig"].startswith("joint-map")
    from stmt.retarget import load_joint_map

    seq = read_sequence(path, joint_map=load_joint_map(map_file))
    assert np.abs(seq.vertices - ref.vertices).max() < SAME_BODY_M


def test_bad_joint_map_is_one_line(tmp_path):
    bad = tmp_path / "map.json"
    bad.write_text('{"bone00": "NotAJoint"}')
    proc = subprocess.run([sys.executable, "-m", "stmt", "inspect", str(rigs.BANDAI_CLIP),
                           "--joint-map", str(bad)], capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "NotAJoint" in proc.stderr and "map.json" in proc.stderr


def test_rig_tables_have_no_two_names_with_one_key():
    from stmt.retarget import _key

    for rig, table in RIGS.items():
        keys = [_key(k) for k in table]
        assert len(keys) == len(set(keys)), rig


def test_classify_takes_the_joint_map_too(tmp_path):
    clip, theirs, path = _unknown_rig(tmp_path)
    ours = {theirs[n]: RIGS["cmu"][n] for n in clip.names if n in RIGS["cmu"]}
    map_file = tmp_path / "map.json"
    map_file.write_text(json.dumps(ours))
    ckpt = "checkpoints/stmt-tiny-synthetic.ckpt"
    run = [sys.executable, "-m", "stmt", "classify", str(path), "--ckpt", ckpt, "--json"]
    without = subprocess.run(run, capture_output=True, text=True, check=False)
    assert without.returncode == 2 and "--joint-map" in without.stderr
    with_map = subprocess.run(run + ["--joint-map", str(map_file)], capture_output=True,
                              text=True, check=False)  # fmt: skip
    assert with_map.returncode == 0, with_map.stderr
    assert json.loads(with_map.stdout)[0]["overall"][0]["label"]


@pytest.mark.parametrize(
    ("name", "side", "words"),
    [
        ("LeftUpLeg", "Left", ("up", "leg")), ("lThigh", "Left", ("thigh",)),
        ("LUArm", "Left", ("u", "arm")), ("thigh_l", "Left", ("thigh",)),
        ("upperarm.R", "Right", ("upperarm",)), ("ShoulderRight", "Right", ("shoulder",)),
        ("CC_Base_L_Thigh", "Left", ("thigh",)), ("Bip01 R Calf", "Right", ("calf",)),
        ("mixamorig:RightHand", "Right", ("hand",)), ("LowerBack", None, ("lower", "back")),
        ("spine_01", None, ("spine",)), ("lForearmTwist", "Left", ("forearm", "twist")),
        ("Head_M", None, ("head",)), ("lTorso_Clavicle", "Left", ("torso", "clavicle")),
    ],
)  # fmt: skip
def test_joint_name_words_and_side(name, side, words):
    from stmt.retarget import _words

    assert _words(name) == (side, words)


@pytest.mark.parametrize("rig", sorted(rigs.UNLISTED_RIGS))
def test_a_rig_no_table_lists_is_inferred_and_poses_the_same_body(rig, tmp_path):
    """Unreal, OptiTrack Motive, Kinect-style, MakeHuman, "parent_child" and Maya Advanced
    Skeleton names (two with bones cut in segments), random rest pose: every joint the CMU table maps (fingers aside) is found
    under its own name, and the body is the CMU-named clip's within SAME_BODY_M."""
    from dataclasses import replace

    from stmt.retarget import RIGS

    clip = rigs.cmu_clip()
    alt_motion = rigs.unlisted(clip, rig, seed=4)
    match = detect_rig(alt_motion.names, parents=alt_motion.parents)
    listed = rig in RIGS  # Kinect names: a table lists them (joint-position files use it)
    assert match.rig == (rig if listed else "inferred")
    table = rigs.unlisted_names(rig)
    expected = {
        canon: table[clip.names[j]]
        for canon, j in detect_rig(clip.names).joints.items()
        if "Finger" not in canon and "Thumb" not in canon
    }
    body = {c: j for c, j in match.joints.items() if "Finger" not in c and "Thumb" not in c}
    assert {c: alt_motion.names[j] for c, j in body.items()} == expected

    fingers = {n for n in clip.names if "Finger" in n or "Thumb" in n or "Index" in n}
    # the inference leaves fingers out; the Kinect table maps them as the CMU table does
    ref_motion = clip if listed else replace(
        clip, names=tuple(f"Extra_{n}" if n in fingers else n for n in clip.names)
    )  # fmt: skip
    ref = read_sequence(rigs.to_bvh(ref_motion, tmp_path / "ref.bvh"))
    alt = read_sequence(rigs.to_bvh(alt_motion, tmp_path / f"{rig}.bvh"))
    if not listed:
        assert alt.rig.startswith("inferred")
        assert f"{expected['Hips']}: Hips" in alt.rig, "the guess is shown, in --joint-map's terms"
    err = np.abs(alt.vertices - ref.vertices).max()
    assert err < SAME_BODY_M, f"{rig}: {err * 1000:.2f} mm"


def test_a_real_file_of_a_rig_no_table_lists_loads():
    """The classic Biovision sample (LeftUpArm/LeftLowArm/LeftLowLeg, from the wild)."""
    seq = read_sequence(rigs.DATA / "wild" / "biovision_example.bvh")
    assert seq.rig.startswith("inferred") and "LeftLowArm: LeftForeArm" in seq.rig
    v = seq.vertices
    height = v[:, :, 2].max(axis=1) - v[:, :, 2].min(axis=1)
    assert np.all((height > 1.4) & (height < 2.0)), height
    head = seq.joints[:, seq.joint_names.index("Head"), 2]
    hips = seq.joints[:, seq.joint_names.index("Hips"), 2]
    assert np.all(head > hips + 0.4)


def test_names_without_sides_are_not_guessed(tmp_path):
    """A tree of anonymous bones is not a humanoid the inference can read: the error
    naming --joint-map, not a body posed from a guess."""
    clip, _, _ = _unknown_rig(tmp_path)
    with pytest.raises(InputError, match="--joint-map"):
        detect_rig(tuple(f"bone{i:02d}" for i in range(len(clip.names))), parents=clip.parents)


def test_joint_names_with_spaces_load(tmp_path):
    """3ds Max writes Biped joints as ``Bip01 L Thigh``: the name is the rest of the line."""
    from dataclasses import replace

    under = rigs.reexpress(rigs.cmu_clip(), "biped", seed=5)
    spaced = replace(
        under, names=tuple(n.replace("_", " ") if n.startswith("Bip") else n for n in under.names)
    )
    path = rigs.to_bvh(spaced, tmp_path / "spaced.bvh")
    assert "JOINT Bip01 L Thigh" in path.read_text()
    assert "Bip01 L Thigh" in read_motion(path).names
    a = read_sequence(path)
    b = read_sequence(rigs.to_bvh(under, tmp_path / "under.bvh"))
    assert a.rig.startswith("biped")
    assert np.abs(a.vertices - b.vertices).max() < SAME_BODY_M
