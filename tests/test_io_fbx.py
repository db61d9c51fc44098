"""FBX through ufbx: round trips from BVH (pre-rotations, axes, units, custom rates), takes,
the traps of real exports, the isolation of the binding's crash, and refusals."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stmt import limits
from stmt.errors import InputError
from stmt.io import detect_format, expand_takes, list_takes, read_motion
from stmt.io.bvh import bvh_motion
from stmt.retarget import canonical_motion, detect_rig
from tests.helpers.rigs import BANDAI_CLIP, cmu_clip, reexpress
from tests.helpers.scene_writers import FbxTake, write_fbx_ascii

pytest.importorskip("ufbx")

DATA = Path(__file__).parent / "data"
HUMANIK_STATIC = DATA / "ufbx_maya_character_7500_ascii.fbx"
TOL_M = 1e-6


def positions_m(motion, names) -> np.ndarray:
    pos, _ = motion.forward_kinematics()
    return pos[:, [motion.names.index(n) for n in names]] * motion.unit


@pytest.fixture(scope="module")
def bandai():
    return replace(bvh_motion(BANDAI_CLIP), unit=0.01)  # centimetres, Y up, 30 frames


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"up": "z"},
        {"pre_rotation_seed": None, "fps": 24.0},
        {"fps": 177.0},
        {"wrapper": ("Armature", (-90.0, 0.0, 0.0), 100.0), "length_scale": 0.01,
         "unit_scale_factor": 100.0},  # Blender: metres, an Armature node turned and scaled
    ],
    ids=["maya-like", "z-up", "no-prerotation-24fps", "177fps", "blender-armature"],
)  # fmt: skip
def test_round_trip_from_bvh_keeps_every_joint(tmp_path, bandai, options):
    f = write_fbx_ascii(tmp_path / "walk.fbx", [FbxTake("Take 001", bandai)], **options)
    assert detect_format(f) == "fbx"
    m = read_motion(f)
    assert m.format == "fbx" and m.up == "y" and m.num_frames == bandai.num_frames
    assert m.fps == options.get("fps", 30.0)
    assert m.unit == pytest.approx(0.01 * options.get("unit_scale_factor", 1.0))
    want = positions_m(bandai, bandai.names)
    assert np.abs(positions_m(m, bandai.names) - want).max() < TOL_M


def test_takes_and_the_keys_span_not_the_stated_one(tmp_path, bandai):
    # a Unity export states 0-0.77 s for keys at 2.9-19.2 s: the keys decide
    takes = [FbxTake("Idle", bandai), FbxTake("Walk", bandai, start_s=2.9, stated_span_s=(0, 0.77))]
    f = write_fbx_ascii(tmp_path / "two.fbx", takes)
    listed = list_takes(f)
    assert [t.name for t in listed] == ["Idle", "Walk"]
    assert listed[1].start == pytest.approx(2.9) and listed[1].frames == 30
    assert expand_takes(f) == [Path(f"{f}#Idle"), Path(f"{f}#Walk")]
    walk = read_motion(f"{f}#Walk")
    assert walk.num_frames == 30 and str(walk.source) == f"{f}#Walk"
    want = positions_m(bandai, bandai.names)
    assert np.abs(positions_m(walk, bandai.names) - want).max() < TOL_M


@pytest.mark.parametrize("prefix", ["mixamorig:", "mixamorig_", "mixamorig7:", "Character1_"])
def test_mixamo_and_humanik_names_are_recognised(tmp_path, prefix):
    mixamo = reexpress(cmu_clip(), "mixamo", seed=1)
    named = replace(mixamo, names=tuple(n.replace("mixamorig:", prefix) for n in mixamo.names))
    f = write_fbx_ascii(tmp_path / "m.fbx", [FbxTake("mixamo.com", named)], length_scale=2.0)
    m = read_motion(f)
    assert detect_rig(m.names, None, f, m.parents).rig == "mixamo"
    c = canonical_motion(m)
    assert (c.positions["Head"][:, 2] > c.positions["Hips"][:, 2]).all()  # upright, Z up


def test_static_humanik_skeleton_is_one_line():
    """A real MotionBuilder-style rig (ufbx test data) with a take but no keys."""
    with pytest.raises(InputError, match="no animation") as err:
        read_motion(HUMANIK_STATIC)
    assert "\n" not in str(err.value)
    assert detect_format(HUMANIK_STATIC) == "fbx"


def test_malformed_files_are_one_line(tmp_path, bandai):
    good = write_fbx_ascii(tmp_path / "walk.fbx", [FbxTake("Take 001", bandai)])
    text = good.read_text()
    cases = {
        "cut.fbx": text[: len(text) // 3],
        "cycle.fbx": text.replace("Connections:  {\n", "Connections:  {\n" + _cycle(text), 1),
        "binary.fbx": "Kaydara FBX Binary  \x00\x1a\x00" + "\x00" * 10,
    }
    for name, body in cases.items():
        f = tmp_path / name
        f.write_text(body, encoding="latin-1")
        with pytest.raises(InputError) as err:
            canonical_motion(read_motion(f))
        assert "\n" not in str(err.value) and name in str(err.value), name
    notfbx = tmp_path / "x.fbx"
    notfbx.write_text("; FBX 7.4.0 project file\nnot really\n")
    assert detect_format(notfbx) == "fbx"  # the content decides (a BVH named .fbx is a BVH)
    notfbx.write_text("HIERARCHY\nROOT Hips\n")
    assert detect_format(notfbx) == "bvh"
    notfbx.write_text("just some text\n")
    with pytest.raises(InputError, match="not an FBX file"):
        detect_format(notfbx)


def _cycle(text: str) -> str:
    """Connections making the first two models each other's parent."""
    ids = [line.split(":")[1].split(",")[0].strip() for line in text.splitlines()
           if line.strip().startswith("Model:")][:2]  # fmt: skip
    return f'\tC: "OO",{ids[0]},{ids[1]}\n\tC: "OO",{ids[1]},{ids[0]}\n'


def test_frame_cap_is_checked_before_sampling(tmp_path, bandai):
    f = write_fbx_ascii(tmp_path / "walk.fbx", [FbxTake("Take 001", bandai)])
    limits.set_max_frames(10)
    try:
        with pytest.raises(InputError, match="more than the limit of 10"):
            read_motion(f)
    finally:
        limits.set_max_frames(None)


def test_missing_binding_names_the_extra(tmp_path, bandai, monkeypatch):
    import importlib.util

    f = write_fbx_ascii(tmp_path / "walk.fbx", [FbxTake("Take 001", bandai)])
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "ufbx" else real(n, *a)
    )
    with pytest.raises(InputError, match=r"pip install 'stmt\[formats\]'"):
        read_motion(f)


def test_the_binding_crash_stays_in_the_worker(tmp_path, bandai):
    """ufbx 0.0.5 crashes when an element is fetched twice and released; read_motion
    loads in a child process (stmt.io.ufbx_worker) and is unaffected."""
    f = write_fbx_ascii(tmp_path / "walk.fbx", [FbxTake("Take 001", bandai)])
    naive = (
        "import ufbx, sys\n"
        "s = ufbx.load_file(sys.argv[1])\n"
        "for _ in range(3):\n"
        "    names = [n.name for n in s.nodes]\n"
    )
    done = subprocess.run([sys.executable, "-c", naive, str(f)], capture_output=True, check=False)
    assert done.returncode != 0  # the binding's bug, as shipped (a signal or an error)
    m = read_motion(f)
    assert m.num_frames == 30


def test_bvh_fbx_and_gltf_pose_the_same_body(tmp_path, bandai):
    """One BVH clip written as ASCII FBX and as GLB poses anny to the same vertices
    (within 1 mm: float32 storage and ufbx's Euler curves)."""
    from stmt.reading import read_sequence
    from tests.helpers.scene_writers import write_gltf

    fbx = write_fbx_ascii(tmp_path / "walk.fbx", [FbxTake("Take 001", bandai)])
    glb = write_gltf(tmp_path / "walk.glb", [("walk", bandai)], unit=0.01)
    ids = np.arange(0, 13000, 50)
    frames = np.array([0, 10, 29])
    seqs = [read_sequence(p, vertex_ids=ids, frames=frames) for p in (BANDAI_CLIP, fbx, glb)]
    base = seqs[0].vertices[frames]
    assert np.ptp(base, axis=(0, 1))[2] > 1.0  # a standing body, Z up
    for seq in seqs[1:]:
        assert seq.num_frames == 30 and seq.body == "anny"
        assert np.abs(seq.vertices[frames] - base).max() < 1e-3
