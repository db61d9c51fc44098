"""BVH reader: CMU-skeleton files written by tests.helpers.cmu, posed on anny."""

from __future__ import annotations

import numpy as np
import pytest

from stmt.errors import InputError
from stmt.io.bvh import euler_matrices, parse_bvh
from stmt.reading import read_sequence
from tests.helpers import cmu


@pytest.fixture(scope="module")
def labels():
    from stmt.body.anny import bone_labels, rest_mesh

    rest_mesh()  # builds the anny model once for the module
    return list(bone_labels())


def test_euler_matrices_compose_in_listed_order():
    from scipy.spatial.transform import Rotation

    angles = np.array([[30.0, -50.0, 75.0], [5.0, 170.0, -20.0]])
    for axes in ("ZXY", "ZYX", "XYZ", "YZX"):
        expected = Rotation.from_euler(axes, angles, degrees=True).as_matrix()  # intrinsic
        np.testing.assert_allclose(euler_matrices(angles, axes), expected, atol=1e-12)


def test_standing_cmu_bvh_is_an_upright_anny_body(tmp_path, labels):
    path = cmu.write_bvh(tmp_path / "stand.bvh", frames=3, fps=120.0)
    seq = read_sequence(path)
    assert (seq.format, seq.body, seq.num_frames, seq.fps) == ("bvh", "anny", 3, 120.0)
    assert seq.vertices.dtype == np.float32 and seq.vertices.shape[1] == len(seq.rest_vertices)
    assert seq.faces is not None and seq.joints.shape == (3, len(labels), 3)
    assert seq.joint_names == labels and seq.source == path
    v = seq.vertices[0]
    assert 1.45 < np.ptp(v[:, 2]) < 1.9, "Z up, human height in metres"
    assert -0.1 < v[:, 2].min() < 0.15, "the CMU floor (y = 0) becomes z = 0"
    head, hips = seq.joints[0, labels.index("Head")], seq.joints[0, labels.index("Hips")]
    assert head[2] > hips[2] + 0.4
    toe, ankle = seq.joints[0, labels.index("LeftToeBase")], seq.joints[0, labels.index("LeftFoot")]
    assert toe[1] < ankle[1] - 0.05, "CMU's +Z facing becomes -Y"
    assert seq.joints[0, labels.index("LeftHand")][0] > 0.4, "left is +X, arms out (T-pose)"


def test_knee_bend_moves_the_foot_behind(tmp_path, labels):
    dofs, root = cmu.standing_motion(2)
    dofs["ltibia"][1, 0] = 90.0  # knee flexion
    seq = read_sequence(cmu.write_bvh(tmp_path / "knee.bvh", dofs, root))
    foot = seq.joints[:, labels.index("LeftFoot")]
    knee = seq.joints[:, labels.index("LeftLeg")]
    assert foot[1, 1] > knee[1, 1] + 0.3 and foot[0, 1] < knee[0, 1] + 0.05
    assert foot[1, 2] > foot[0, 2] + 0.3, "the foot rises"
    right = seq.joints[:, labels.index("RightFoot")]
    np.testing.assert_allclose(right[1], right[0], atol=1e-5)


def _walk(frames: int = 3) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(0)
    dofs, root = cmu.standing_motion(frames)
    for name in dofs:
        dofs[name] += rng.normal(scale=15.0, size=dofs[name].shape)
    root[:, 0] += np.arange(frames) * 2.0
    root[:, 3:] += rng.normal(scale=10.0, size=(frames, 3))
    return dofs, root


def test_units_and_channel_order_do_not_change_the_result(tmp_path):
    dofs, root = _walk()
    ref = read_sequence(cmu.write_bvh(tmp_path / "cmu.bvh", dofs, root)).vertices
    cm = cmu.write_bvh(tmp_path / "cm.bvh", dofs, root, unit_scale=cmu.METRES_PER_UNIT * 100)
    np.testing.assert_allclose(read_sequence(cm).vertices, ref, atol=2e-3)
    zxy = cmu.write_bvh(tmp_path / "zxy.bvh", dofs, root, channel_order="ZXY")
    np.testing.assert_allclose(read_sequence(zxy).vertices, ref, atol=2e-3)
    assert np.ptp(ref[:, :, 0].mean(1)) > 0.1, "the root translation moves the body"


def test_vertex_subset_equals_full_rows(tmp_path):
    path = cmu.write_bvh(tmp_path / "w.bvh", *_walk(2))
    full = read_sequence(path)
    ids = np.random.default_rng(1).choice(full.num_vertices, 300, replace=False)
    sub = read_sequence(path, vertex_ids=ids)
    assert sub.num_vertices == 300 and sub.num_full_vertices == full.num_vertices
    np.testing.assert_array_equal(sub.vertex_ids, ids)
    np.testing.assert_allclose(sub.vertices, full.vertices[:, ids], atol=1e-5)


def test_read_sequence_detects_bvh(tmp_path):
    from stmt.reading import read_sequence

    seq = read_sequence(cmu.write_bvh(tmp_path / "a.bvh"))
    assert seq.format == "bvh" and seq.body == "anny"


# -------------------------------------------------------------------------------- bad input


def _lines(path):
    return path.read_text().splitlines()


def _motion_line(lines: list[str]) -> int:
    return lines.index("MOTION")


def test_missing_joints_are_named(tmp_path):
    path = cmu.write_bvh(tmp_path / "noarm.bvh", drop=("lhumerus",))
    with pytest.raises(InputError, match="LeftArm, LeftForeArm, LeftHand") as err:
        read_sequence(path)
    assert "noarm.bvh" in str(err.value)


def test_not_a_bvh(tmp_path):
    path = tmp_path / "x.bvh"
    path.write_text("hello\nworld\n")
    with pytest.raises(InputError, match="x.bvh.*MOTION"):
        read_sequence(path)
    path.write_text("SKELETON\nMOTION\nFrames: 0\nFrame Time: 0.1\n")
    with pytest.raises(InputError, match="line 1: expected 'HIERARCHY'"):
        read_sequence(path)


def test_bad_hierarchy_names_the_line(tmp_path):
    path = cmu.write_bvh(tmp_path / "h.bvh")
    lines = _lines(path)
    n = next(i for i, s in enumerate(lines) if "OFFSET" in s and i > 5)
    lines[n] = lines[n].replace("OFFSET", "OFFSET abc")
    path.write_text("\n".join(lines))
    with pytest.raises(InputError, match=f"h.bvh: line {n + 1}: expected a number"):
        read_sequence(path)


def test_wrong_number_of_channel_values(tmp_path):
    path = cmu.write_bvh(tmp_path / "c.bvh", frames=2)
    lines = _lines(path)
    lines[-1] = " ".join(lines[-1].split()[:-1])
    path.write_text("\n".join(lines))
    with pytest.raises(InputError, match=rf"c.bvh: line {len(lines)}: expected \d+ channel values"):
        read_sequence(path)


def test_non_numeric_and_nan_values(tmp_path):
    path = cmu.write_bvh(tmp_path / "n.bvh", frames=2)
    lines = _lines(path)
    good = lines[-1]
    lines[-1] = good.replace(good.split()[4], "x1", 1)
    path.write_text("\n".join(lines))
    with pytest.raises(InputError, match=f"line {len(lines)}: non-numeric value 'x1'"):
        read_sequence(path)
    lines[-1] = good.replace(good.split()[4], "nan", 1)
    path.write_text("\n".join(lines))
    with pytest.raises(InputError, match=f"line {len(lines)}: NaN"):
        read_sequence(path)


def test_frame_count_and_frame_time(tmp_path):
    path = cmu.write_bvh(tmp_path / "f.bvh", frames=2)
    lines = _lines(path)
    m = _motion_line(lines)
    bad = lines[:]
    bad[m + 1] = "Frames: 5"
    path.write_text("\n".join(bad))
    with pytest.raises(InputError, match="'Frames: 5' but 2 frame lines"):
        read_sequence(path)
    bad = lines[: m + 1] + ["Frames: 0", "Frame Time: 0.01"]
    path.write_text("\n".join(bad))
    with pytest.raises(InputError, match="zero frames"):
        read_sequence(path)
    bad = lines[:]
    bad[m + 2] = "Frame Time: 0"
    path.write_text("\n".join(bad))
    with pytest.raises(InputError, match="positive Frame Time"):
        read_sequence(path)


def test_parse_keeps_file_units_and_channels(tmp_path):
    path = cmu.write_bvh(tmp_path / "p.bvh", frames=4, fps=60.0)
    bvh = parse_bvh(path)
    assert bvh.names[0] == "Hips" and bvh.parents[0] == -1
    assert bvh.motion.shape == (4, sum(len(c) for c in bvh.channels))
    assert bvh.channels[0][:3] == ["Xposition", "Yposition", "Zposition"]
    np.testing.assert_allclose(bvh.root_positions()[:, 1], cmu.STANDING_ROOT[1], atol=1e-6)
    np.testing.assert_allclose(1.0 / bvh.frame_time, 60.0, rtol=1e-6)


def test_named_end_sites_and_odd_channel_case_parse(tmp_path):
    """Seen in exported files: ``End Site LeftToe`` and ``ZPosition``."""
    text = (
        "HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 6 Xposition Yposition ZPosition "
        "Zrotation Xrotation Yrotation\n JOINT LeftHip\n {\n  OFFSET 1 0 0\n  CHANNELS 3 "
        "Zrotation Xrotation Yrotation\n  End Site LeftToe\n  {\n   OFFSET 0 -2 0\n  }\n }\n}\n"
        "MOTION\nFrames: 1\nFrame Time: 0.033333\n0 1 0 0 0 0 0 0 0\n"
    )
    path = tmp_path / "named_end.bvh"
    path.write_text(text)
    bvh = parse_bvh(path)
    assert list(bvh.names) == ["Hips", "LeftHip"]
    np.testing.assert_allclose(bvh.end_offsets[1], [0, -2, 0])
