"""glTF / GLB / VRMA: the reader over the spec, takes, the round trip from BVH, and refusals."""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stmt import limits
from stmt.errors import InputError
from stmt.io import detect_format, expand_takes, list_takes, read_motion
from stmt.io.bvh import bvh_motion
from stmt.retarget import canonical_motion, detect_rig, load_joint_map
from tests.helpers.rigs import BANDAI_CLIP, cmu_clip, reexpress
from tests.helpers.scene_writers import write_gltf

DATA = Path(__file__).parent / "data"
ROBOT = DATA / "robot_expressive_anims.glb"
ROBOT_MAP = DATA / "robot_expressive.joints.yaml"
TOL_M = 1e-5  # float32 storage of positions in metres


def positions_m(motion, names) -> np.ndarray:
    """(T, J, 3) positions of ``names`` in metres (file axes)."""
    pos, _ = motion.forward_kinematics()
    unit = motion.unit if motion.unit is not None else 0.01
    return pos[:, [motion.names.index(n) for n in names]] * unit


@pytest.fixture(scope="module")
def bandai():
    return bvh_motion(BANDAI_CLIP)  # centimetres, Y up, 30 frames


@pytest.mark.parametrize("interpolation", ["LINEAR", "STEP", "CUBICSPLINE"])
@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_round_trip_from_bvh_keeps_every_joint(tmp_path, bandai, interpolation, suffix):
    f = write_gltf(tmp_path / f"walk{suffix}", [("walk", bandai)], unit=0.01,
                   interpolation=interpolation)  # fmt: skip
    assert detect_format(f) == "gltf"
    m = read_motion(f)
    assert m.format == "gltf" and m.unit == 1.0 and m.up == "y"
    assert m.num_frames == bandai.num_frames and m.fps == 30.0
    want = positions_m(replace(bandai, unit=0.01), bandai.names)
    assert np.abs(positions_m(m, bandai.names) - want).max() < TOL_M


def test_takes_are_listed_and_addressed(tmp_path, bandai):
    slow = replace(bandai, fps=15.0)
    f = write_gltf(tmp_path / "clips.glb", [("Walk", bandai), ("Walk slow", slow)], unit=0.01)
    takes = list_takes(f)
    assert [(t.name, t.frames, t.fps) for t in takes] == [
        ("Walk", 30, 30.0),
        ("Walk slow", 30, 15.0),
    ]
    assert takes[1].duration_s == pytest.approx(2.0)
    assert expand_takes(f) == [Path(f"{f}#Walk"), Path(f"{f}#Walk slow")]
    assert expand_takes(f, "1") == [Path(f"{f}#Walk slow")]
    assert expand_takes(f, "Walk") == [Path(f"{f}#Walk")]
    m = read_motion(f"{f}#Walk slow")
    assert m.fps == 15.0 and str(m.source) == f"{f}#Walk slow"
    assert read_motion(f).fps == 30.0  # the first take without a name
    with pytest.raises(InputError, match="no take 'Run'.*0: 'Walk', 1: 'Walk slow'"):
        expand_takes(f, "Run")
    with pytest.raises(InputError, match="no take"):
        read_motion(f"{f}#Run")
    assert expand_takes(BANDAI_CLIP) == [BANDAI_CLIP]  # no takes: the file itself


def test_three_js_robot_fixture_has_its_clips_and_stands_upright():
    takes = {t.name: t for t in list_takes(ROBOT)}
    assert len(takes) == 14 and {"Walking", "Running", "Dance", "Wave"} <= set(takes)
    assert takes["Running"].fps == 24.0 and takes["Running"].frames == 24
    joint_map = load_joint_map(ROBOT_MAP)
    for name in ("Walking", "Running", "Wave"):
        c = canonical_motion(read_motion(f"{ROBOT}#{name}"), joint_map)
        p = c.positions  # metres, Z up
        assert (p["Head"][:, 2] > p["Hips"][:, 2]).all()
        for foot in ("LeftFoot", "RightFoot"):  # (a cartoon run kicks a foot up to the hips)
            assert p["Hips"][:, 2].mean() > p[foot][:, 2].mean() + 0.5
        assert (np.abs(p["LeftHand"] - p["RightHand"]).max(axis=1) > 0.3).all()  # two arms
        # an IK rig (feet off the armature) and a cartoon's proportions: posed as the
        # --joint-map says, with a warning instead of the refusal an unmapped file gets
        assert any("posed as --joint-map says" in w and "not one chain" in w for w in c.warnings)
    with pytest.raises(InputError, match="unknown rig"):  # its feet hang off the armature
        canonical_motion(read_motion(f"{ROBOT}#Running"))


def test_vrma_maps_its_nodes_to_humanoid_bones(tmp_path):
    cmu = cmu_clip()
    vrm = {"Hips": "hips", "LeftUpLeg": "leftUpperLeg", "LeftLeg": "leftLowerLeg",
           "LeftFoot": "leftFoot", "RightUpLeg": "rightUpperLeg", "RightLeg": "rightLowerLeg",
           "RightFoot": "rightFoot", "Spine": "spine", "Spine1": "chest", "Neck": "neck",
           "Head": "head", "LeftShoulder": "leftShoulder", "LeftArm": "leftUpperArm",
           "LeftForeArm": "leftLowerArm", "LeftHand": "leftHand", "RightShoulder": "rightShoulder",
           "RightArm": "rightUpperArm", "RightForeArm": "rightLowerArm", "RightHand": "rightHand"}  # fmt: skip
    renamed = replace(cmu, names=tuple(f"J{i}" for i in range(len(cmu.names))))
    by_new = {f"J{i}": vrm[n] for i, n in enumerate(cmu.names) if n in vrm}
    f = write_gltf(tmp_path / "clip.vrma", [("clip", renamed)], unit=0.0254 / 0.45,
                   vrm_bones=by_new, skin=False)  # fmt: skip
    m = read_motion(f)
    assert "leftUpperLeg" in m.names and "hips" in m.names
    match = detect_rig(m.names, None, f, m.parents)
    for ours, bone in (("LeftUpLeg", "leftUpperLeg"), ("RightHand", "rightHand"), ("Head", "head")):
        assert m.names[match.joints[ours]] == bone


def test_reexpressed_mixamo_rig_with_prefix_variants(tmp_path):
    mixamo = reexpress(cmu_clip(), "mixamo", seed=3)
    for prefix in ("mixamorig_", "mixamorig", "mixamorig7:"):
        names = tuple(n.replace("mixamorig:", prefix) for n in mixamo.names)
        f = write_gltf(tmp_path / "m.glb", [("t", replace(mixamo, names=names))], unit=0.02)
        m = read_motion(f)
        assert detect_rig(m.names, None, f, m.parents).rig == "mixamo"


# -------------------------------------------------------------------------- refusals


def _glb_parts(path: Path) -> tuple[dict, bytes]:
    b = path.read_bytes()
    n = struct.unpack("<I", b[12:16])[0]
    doc = json.loads(b[20 : 20 + n])
    m = struct.unpack("<I", b[20 + n : 24 + n])[0]
    return doc, b[28 + n : 28 + n + m]


def _glb(path: Path, doc: dict, blob: bytes) -> Path:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    head = struct.pack("<4sII", b"glTF", 2, 28 + len(js) + len(blob))
    path.write_bytes(head + struct.pack("<II", len(js), 0x4E4F534A) + js
                     + struct.pack("<II", len(blob), 0x004E4942) + blob)  # fmt: skip
    return path


@pytest.fixture
def glb(tmp_path, bandai) -> Path:
    return write_gltf(tmp_path / "walk.glb", [("walk", bandai)], unit=0.01)


def _refused(path: Path, match: str) -> None:
    with pytest.raises(InputError, match=match) as err:
        read_motion(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_truncated_and_inconsistent_files_are_one_line(tmp_path, glb):
    data = glb.read_bytes()
    cut = tmp_path / "cut.glb"
    cut.write_bytes(data[: len(data) // 2])
    _refused(cut, "truncated")
    doc, blob = _glb_parts(glb)
    doc["accessors"][3]["count"] *= 50
    _refused(_glb(tmp_path / "count.glb", doc, blob), "needs .* bytes|wrong count")
    doc, blob = _glb_parts(glb)
    anim = doc["animations"][0]
    kinds = {ch["target"]["path"]: anim["samplers"][ch["sampler"]] for ch in anim["channels"]}
    kinds["rotation"]["output"] = kinds["translation"]["output"]  # VEC3 where VEC4 belongs
    _refused(_glb(tmp_path / "mismatch.glb", doc, blob), "key times but output")
    doc, blob = _glb_parts(glb)
    doc["nodes"][3]["children"] = [*doc["nodes"][3].get("children", []), 0]
    _refused(_glb(tmp_path / "cycle.glb", doc, blob), "cycle|two parents")
    doc, blob = _glb_parts(glb)
    doc["nodes"][0]["children"] = [0]
    _refused(_glb(tmp_path / "self.glb", doc, blob), "cycle|two parents")
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"glTF" + b"\x02\x00\x00\x00" + b"\xff" * 8)
    _refused(bad, "truncated|chunk")
    notgltf = tmp_path / "walk2.glb"
    notgltf.write_bytes(b"PK\x03\x04 certainly not a glb")
    with pytest.raises(InputError, match="not a readable .npz file"):
        detect_format(notgltf)  # the content decides: a zip archive is an .npz
    text = tmp_path / "x.gltf"
    text.write_text('{"asset": {"version": "1.0"}}')
    _refused(text, "only glTF 2.0")


def test_nothing_to_classify_is_one_line(tmp_path, glb):
    doc, blob = _glb_parts(glb)
    doc["animations"] = []
    _refused(_glb(tmp_path / "static.glb", doc, blob), "a skeleton but no animation")
    doc, blob = _glb_parts(glb)
    for ch in doc["animations"][0]["channels"]:
        ch["target"]["path"] = "weights"
    _refused(_glb(tmp_path / "morph.glb", doc, blob), "morph weights")


def test_limits_are_checked_before_sampling(glb, monkeypatch):
    monkeypatch.setattr(limits, "MAX_NODES", 10)
    _refused(glb, "nodes, more than the limit")
    monkeypatch.undo()
    monkeypatch.setattr(limits, "MAX_KEYS", 5)
    _refused(glb, "count 30")
    monkeypatch.undo()
    limits.set_max_frames(10)
    try:
        _refused(glb, "more than the limit of 10")
    finally:
        limits.set_max_frames(None)


def test_non_humanoid_skeleton_is_one_line(tmp_path, bandai):
    keep = [i for i, n in enumerate(bandai.names) if "Arm" not in n and "Hand" not in n]
    idx = {j: k for k, j in enumerate(keep)}
    legs_only = replace(
        bandai, names=tuple(f"bone{k}" for k in range(len(keep))),
        parents=tuple(idx.get(bandai.parents[j], -1) for j in keep),
        offsets=bandai.offsets[keep], end_offsets=bandai.end_offsets[keep],
        rotations=bandai.rotations[:, keep], translations=bandai.translations[:, keep],
    )  # fmt: skip
    f = write_gltf(tmp_path / "tail.glb", [("wag", legs_only)], unit=0.01)
    with pytest.raises(InputError, match="unknown rig") as err:
        canonical_motion(read_motion(f))
    assert "\n" not in str(err.value)
