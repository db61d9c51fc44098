"""Joint-position CSV files (Kinect): columns, time stamps, posing, errors.

The fixture is a real clip (the HDM05 excerpt) given as what a Kinect writes: the
positions of its 20 joints under Kinect v1 names, metres in a Y-up camera space, time
stamps in milliseconds that arrive unevenly (one repeated)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stmt.errors import InputError
from stmt.io import detect_format, read_motion
from stmt.io.joints_csv import read_joint_csv
from stmt.motion import JointPositions
from stmt.reading import read_sequence
from tests.helpers import rigs

# Kinect v1 joint -> the CMU joint of the fixture whose position it takes
KINECT_V1 = {
    "HipCenter": "Hips", "Spine": "Spine", "ShoulderCenter": "Neck", "Head": "Head",
    "ShoulderLeft": "LeftArm", "ElbowLeft": "LeftForeArm", "WristLeft": "LeftHand",
    "HandLeft": "LeftFingerBase", "ShoulderRight": "RightArm", "ElbowRight": "RightForeArm",
    "WristRight": "RightHand", "HandRight": "RightFingerBase", "HipLeft": "LeftUpLeg",
    "KneeLeft": "LeftLeg", "AnkleLeft": "LeftFoot", "FootLeft": "LeftToeBase",
    "HipRight": "RightUpLeg", "KneeRight": "RightLeg", "AnkleRight": "RightFoot",
    "FootRight": "RightToeBase",
}  # fmt: skip


def kinect_csv(path: Path, seed: int = 0, sep: str = "") -> tuple[Path, np.ndarray, float]:
    """The fixture clip as a Kinect CSV; returns (path, (T, 20, 3) metres, fps)."""
    clip = rigs.cmu_clip()
    pos, _ = clip.forward_kinematics()  # (T, J, 3), 1/0.45 inch, Y up
    pos = pos * (0.0254 / 0.45)
    idx = [clip.names.index(KINECT_V1[k]) for k in KINECT_V1]
    joints = pos[:, idx]  # (T, 20, 3)
    rng = np.random.default_rng(seed)
    t = 1000.0 * np.arange(len(joints)) / clip.fps + rng.uniform(-1.5, 1.5, len(joints))
    t[5] = t[4]  # a repeated time stamp, as real Kinect files have
    header = ["Timestamp"] + [f"{k}{sep}{a}" for k in KINECT_V1 for a in "XYZ"] + ["Action"]
    lines = [",".join(header)]
    for ti, frame in zip(t, joints):
        lines.append(",".join([f"{ti:.4f}", *(f"{v:.6f}" for v in frame.reshape(-1)), "kick"]))
    path.write_text("\n".join(lines) + "\n")
    return path, joints, clip.fps


def test_columns_time_and_rate(tmp_path):
    path, joints, fps = kinect_csv(tmp_path / "take.csv")
    assert detect_format(path) == "joint-csv"
    m = read_motion(path)
    assert isinstance(m, JointPositions) and m.names == tuple(KINECT_V1)
    assert m.fps == fps  # the mean step, rounded to whole frames per second
    assert m.positions.shape[1:] == (20, 3)
    assert abs(m.num_frames - len(joints)) <= 1
    # resampled on the time stamps: within the 1.5 ms jitter of the source frames
    step = np.abs(np.diff(joints, axis=0)).max()
    assert np.abs(m.positions[10:40] - joints[10:40]).max() < step


@pytest.mark.parametrize("sep", ["_", "."])
def test_column_name_separators(tmp_path, sep):
    path, _, _ = kinect_csv(tmp_path / "take.csv", sep=sep)
    assert read_joint_csv(path).names == tuple(KINECT_V1)


def test_poses_like_the_skeleton_it_came_from(tmp_path):
    """Posed from positions alone, the limbs point where the source skeleton's do."""
    path, _, _ = kinect_csv(tmp_path / "take.csv")
    seq = read_sequence(path)
    assert seq.format == "joint-csv" and seq.rig.startswith("kinect")
    ref = read_sequence(rigs.to_bvh(rigs.cmu_clip(), tmp_path / "ref.bvh"))
    n = min(seq.num_frames, ref.num_frames)
    names = seq.joint_names
    for a, b in [("LeftForeArm", "LeftHand"), ("RightArm", "RightForeArm"),
                 ("LeftUpLeg", "LeftLeg"), ("RightLeg", "RightFoot")]:  # fmt: skip
        ia, ib = names.index(a), names.index(b)

        def direction(s, ia=ia, ib=ib):
            d = s.joints[:n, ib] - s.joints[:n, ia]
            return d / np.linalg.norm(d, axis=-1, keepdims=True)

        cos = np.einsum("ti,ti->t", direction(seq), direction(ref))
        assert cos.min() > 0.95, (a, b, cos.min())
    height = np.ptp(seq.vertices[0, :, 2])
    assert 1.4 < height < 2.1


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("a,b,c\n1,2,3\n", "found 0 joints"),
        ("Frame," + ",".join(f"{k}{a}" for k in KINECT_V1 for a in "XYZ") + "\n1" + ",0" * 60,
         "no time column"),
        ("Timestamp," + ",".join(f"{k}{a}" for k in KINECT_V1 for a in "XYZ") + "\n0" + ",0" * 60
         + "\n33" + ",x" * 60, "line 3: non-numeric value 'x'"),
        ("Timestamp," + ",".join(f"{k}{a}" for k in KINECT_V1 for a in "XYZ") + "\n0" + ",0" * 60
         + "\n33,1,2\n", "line 3: 3 fields"),
        ("Timestamp," + ",".join(f"{k}{a}" for k in KINECT_V1 for a in "XYZ") + "\n50" + ",0" * 60
         + "\n10" + ",0" * 60, "line 3: the time goes back"),
        ("Timestamp," + ",".join(f"{k}{a}" for k in KINECT_V1 for a in "XYZ") + "\n0" + ",0" * 60,
         "1 frame"),
        ("Timestamp," + ",".join(f"{k}{a}" for k in KINECT_V1 for a in "XYZ") + "\n0" + ",nan" * 60
         + "\n33" + ",0" * 60, "NaN or Inf"),
    ],
    ids=["empty", "no-joints", "no-time", "text-value", "short-row", "time-back", "one-frame",
         "nan"],
)  # fmt: skip
def test_bad_files_are_one_line(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as err:
        read_joint_csv(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_csv_that_is_not_joints_is_not_taken_for_one(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("name,score\nwalk,1\n")
    with pytest.raises(InputError, match="not a joint-position file"):
        detect_format(path)


def test_exporters_encodings_and_the_number_grammar(tmp_path):
    """A byte-order mark or UTF-16 reads the same; Python-only numbers (1_0) are refused."""
    path, _, _ = kinect_csv(tmp_path / "take.csv")
    text = path.read_text()
    want = read_joint_csv(path).positions
    for name, data in (("bom.csv", b"\xef\xbb\xbf" + text.encode()),
                       ("utf16.csv", text.encode("utf-16"))):  # fmt: skip
        (tmp_path / name).write_bytes(data)
        np.testing.assert_array_equal(read_joint_csv(tmp_path / name).positions, want)
        assert detect_format(tmp_path / name) == "joint-csv"
    lines = text.splitlines()
    fields = lines[3].split(",")
    fields[2] = "1_0"
    lines[3] = ",".join(fields)
    (tmp_path / "py.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="line 4: non-numeric value '1_0'"):
        read_joint_csv(tmp_path / "py.csv")


def test_tracking_errors_are_a_warning_not_a_refusal(tmp_path):
    """A tracker that loses a leg for most of a take gives a skeleton no human has; the
    file is still a person: posed with a warning (a BVH skeleton like it is refused)."""
    path, _, _ = kinect_csv(tmp_path / "take.csv")
    text = path.read_text().splitlines()
    header = text[0].split(",")
    ank = [header.index(f"AnkleLeft{a}") for a in "XYZ"]
    knee = [header.index(f"KneeLeft{a}") for a in "XYZ"]
    rows = []
    for line in text[1:]:
        f = line.split(",")
        for a, k in zip(ank, knee):  # the ankle stuck 1 cm below the knee: a shin of ~0
            f[a] = f"{float(f[k]) - (0.01 if a == ank[1] else 0.0):.6f}"
        rows.append(",".join(f))
    path.write_text("\n".join([text[0], *rows]) + "\n")
    seq = read_sequence(path)
    assert any("tracking errors?" in w for w in seq.warnings)
