"""UTD-MHAD skeleton .mat files: layout, posing as a Kinect CSV is, errors.

The fixture is the real clip of the joint-position CSV tests (the HDM05 excerpt as a
Kinect's 20 joints, metres, Y up) written as UTD-MHAD writes a take: ``d_skel``,
20 x 3 x frames in the dataset's joint order, 30 frames per second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from stmt.errors import InputError
from stmt.io import detect_format, read_motion
from stmt.io.joints_mat import KINECT_V1_ORDER
from stmt.motion import JointPositions
from stmt.reading import read_sequence
from tests.test_io_joints_csv import KINECT_V1, kinect_csv


def utd_mat(path: Path, tmp: Path) -> tuple[Path, np.ndarray]:
    """The fixture clip as a UTD-MHAD take; returns (path, (T, 20, 3) in file order)."""
    _, joints, _ = kinect_csv(tmp / "source.csv")
    order = [list(KINECT_V1).index(name) for name in KINECT_V1_ORDER]
    ours = joints[:, order]  # (T, 20, 3) in UTD-MHAD's order
    savemat(path, {"d_skel": ours.transpose(1, 2, 0)})
    return path, ours


def test_layout_names_and_rate(tmp_path):
    path, joints = utd_mat(tmp_path / "a5_s1_t1_skeleton.mat", tmp_path)
    assert detect_format(path) == "joint-mat"
    m = read_motion(path)
    assert isinstance(m, JointPositions) and m.format == "joint-mat"
    assert m.names == KINECT_V1_ORDER and m.fps == 30.0
    np.testing.assert_allclose(m.positions, joints)  # frame t, joint j, xyz


def test_poses_as_the_same_take_from_a_kinect_csv(tmp_path):
    """The same joint positions from a .mat and from a CSV make the same body."""
    path, joints = utd_mat(tmp_path / "take.mat", tmp_path)
    header = ["Timestamp", *(f"{j}{a}" for j in KINECT_V1_ORDER for a in "XYZ")]
    rows = [",".join(header)] + [
        ",".join([f"{1000 * t / 30:.4f}", *(f"{v:.9f}" for v in frame.reshape(-1))])
        for t, frame in enumerate(joints)
    ]
    csv = tmp_path / "take.csv"
    csv.write_text("\n".join(rows) + "\n")
    a, b = read_sequence(path), read_sequence(csv)
    assert a.format == "joint-mat" and a.rig == b.rig and a.rig.startswith("kinect")
    assert a.num_frames == b.num_frames and a.fps == b.fps
    np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-4)


def test_content_decides_over_the_extension(tmp_path):
    path, _ = utd_mat(tmp_path / "take.mat", tmp_path)
    renamed = tmp_path / "take.dat"
    renamed.write_bytes(path.read_bytes())
    assert detect_format(renamed) == "joint-mat"


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            {"d_skel": np.zeros((15, 3, 40))},
            "'d_skel' has shape (15, 3, 40); expected (20, 3, frames)",
        ),
        ({"skeleton": np.zeros((20, 3, 40))}, "no 'd_skel' array in the file"),
        ({"d_skel": np.zeros((20, 3, 1))}, "1 frame(s); a motion needs at least 2"),
        ({"d_skel": np.full((20, 3, 40), np.nan)}, "NaN or Inf among the values"),
        ({"d_skel": np.array(["a", "b"])}, "'d_skel' has shape"),
    ],
)
def test_bad_content_is_one_line_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "bad.mat"
    savemat(path, content)
    with pytest.raises(InputError) as err:
        read_motion(path)
    assert str(path) in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize("data", [b"", b"not a MATLAB file at all\n", b"MATLAB 5.0 MAT-file\x00"])
def test_not_a_matlab_file(tmp_path, data):
    path = tmp_path / "take.mat"
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        read_motion(path)
    assert str(path) in str(err.value) and "UTD-MHAD skeleton .mat" in str(err.value)
