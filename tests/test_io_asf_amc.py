"""ASF/AMC reader: CMU-layout files written by tests.helpers.cmu, posed on anny."""

from __future__ import annotations

import numpy as np
import pytest

from stmt.body import pose_motion
from stmt.errors import InputError
from stmt.io.asf_amc import CMU_FPS, amc_motion, parse_asf
from stmt.reading import read_sequence
from tests.helpers import cmu


def read_amc(path, asf_path=None):
    """An AMC motion (with its ASF, or ``asf_path``) parsed and posed on anny."""
    return pose_motion(amc_motion(path, asf_path))


@pytest.fixture(scope="module")
def labels():
    from stmt.body.anny import bone_labels, rest_mesh

    rest_mesh()  # builds the anny model once for the module
    return list(bone_labels())


def _subject(folder, dofs=None, root=None, frames=2):
    """A CMU subject folder: 07/07.asf and 07/07_03.amc."""
    folder.mkdir(exist_ok=True)
    if dofs is None:
        dofs, root = cmu.standing_motion(frames)
    cmu.write_asf(folder / "07.asf")
    return cmu.write_amc(folder / "07_03.amc", dofs, root)


def test_standing_amc_is_an_upright_anny_body(tmp_path, labels):
    seq = read_amc(_subject(tmp_path / "07", frames=3))
    assert (seq.format, seq.body, seq.num_frames, seq.fps) == ("asf-amc", "anny", 3, CMU_FPS)
    assert seq.vertices.dtype == np.float32 and seq.joint_names == labels
    v = seq.vertices[0]
    assert 1.45 < np.ptp(v[:, 2]) < 1.9 and -0.1 < v[:, 2].min() < 0.15
    head, hips = seq.joints[0, labels.index("Head")], seq.joints[0, labels.index("Hips")]
    assert head[2] > hips[2] + 0.4
    toe, ankle = seq.joints[0, labels.index("LeftToeBase")], seq.joints[0, labels.index("LeftFoot")]
    assert toe[1] < ankle[1] - 0.05, "faces -Y"


def test_knee_bend_moves_the_foot(tmp_path, labels):
    dofs, root = cmu.standing_motion(2)
    dofs["ltibia"][1, 0] = 90.0
    seq = read_amc(_subject(tmp_path / "07", dofs, root))
    foot = seq.joints[:, labels.index("LeftFoot")]
    knee = seq.joints[:, labels.index("LeftLeg")]
    assert foot[1, 1] > knee[1, 1] + 0.3, "behind the knee"
    assert foot[1, 2] > foot[0, 2] + 0.3, "and up"


def test_amc_and_bvh_of_one_motion_agree(tmp_path):
    rng = np.random.default_rng(3)
    dofs, root = cmu.standing_motion(3)
    for name in dofs:
        dofs[name] += rng.normal(scale=20.0, size=dofs[name].shape)
    root[:, 2] += np.arange(3) * 3.0
    root[:, 3:] += rng.normal(scale=15.0, size=(3, 3))
    amc = read_amc(_subject(tmp_path / "07", dofs, root))
    bvh = read_sequence(cmu.write_bvh(tmp_path / "same.bvh", dofs, root))
    np.testing.assert_allclose(amc.vertices, bvh.vertices, atol=2e-3)
    assert np.ptp(amc.vertices[:, :, 1].mean(1)) > 0.2, "root translation is applied"


def test_asf_units_and_order(tmp_path):
    asf = parse_asf(cmu.write_asf(tmp_path / "s.asf"))
    assert asf.length_unit == pytest.approx(0.0254 / 0.45)
    assert asf.degrees and asf.root_order == ["TX", "TY", "TZ", "RX", "RY", "RZ"]
    names = [b for b, _ in asf.order()]
    assert names[0] == "root" and len(names) == len(cmu.cmu_bones()) + 1
    assert names.index("lfemur") > names.index("lhipjoint")
    assert asf.bones["lfemur"].dof == ["rx", "ry", "rz"]


def test_asf_is_found_beside_the_amc(tmp_path):
    dofs, root = cmu.standing_motion(1)
    # A single .asf in the folder, whatever its name.
    one = tmp_path / "one"
    one.mkdir()
    cmu.write_asf(one / "skeleton_v2.asf")
    assert read_amc(cmu.write_amc(one / "walk.amc", dofs, root)).num_frames == 1
    # Two .asf files: the one named like the AMC's subject prefix wins; explicit path works.
    two = tmp_path / "two"
    amc = _subject(two, dofs, root)
    cmu.write_asf(two / "other.asf", drop=("lhumerus",))
    assert read_amc(amc).num_frames == 1
    with pytest.raises(InputError, match="'lhumerus' is not in the ASF"):
        read_amc(amc, asf_path=two / "other.asf")  # that skeleton is used


def test_amc_without_asf_names_what_was_tried(tmp_path):
    dofs, root = cmu.standing_motion(1)
    amc = cmu.write_amc(tmp_path / "12_01.amc", dofs, root)
    with pytest.raises(InputError) as err:
        read_amc(amc)
    message = str(err.value)
    assert message.startswith(str(amc)) and "no ASF skeleton" in message
    assert str(tmp_path / "12.asf") in message and str(tmp_path / "12_01.asf") in message


def test_missing_joints_are_named(tmp_path):
    folder = tmp_path / "07"
    amc = _subject(folder)
    cmu.write_asf(folder / "07.asf", drop=("rfemur",))
    with pytest.raises(InputError, match="bone 'rfemur' is not in the ASF"):
        read_amc(amc)  # the motion still animates the dropped bone
    dofs, root = cmu.standing_motion(1)
    dofs = {
        k: v for k, v in dofs.items() if not k.startswith(("rfemur", "rtibia", "rfoot", "rtoes"))
    }
    cmu.write_amc(amc, dofs, root)
    with pytest.raises(InputError, match="RightUpLeg, RightLeg, RightFoot"):
        read_amc(amc)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda v: v.replace("ltibia 0.000000", "ltibia nan"), "NaN or Inf in bone ltibia"),
        (lambda v: v.replace("ltibia 0.000000", "ltibia 1e999"), "NaN or Inf in bone ltibia"),
        (lambda v: v.replace("ltibia 0.000000", "ltibia abc"), "non-numeric value in bone ltibia"),
        (lambda v: v.replace("ltibia 0.000000", "ltibia 1_0"), "non-numeric value in bone ltibia"),
        (
            lambda v: v.replace("ltibia 0.000000", "ltibia 0 0"),
            "expected 1 numbers for bone ltibia",
        ),
        (lambda v: v.replace("\n2\n", "\n3\n"), "expected frame 2, found 3"),
        (lambda v: v.replace("ltibia 0.000000", "knee 0"), "bone 'knee' is not in the ASF"),
    ],
)
def test_malformed_amc(tmp_path, edit, expected):
    amc = _subject(tmp_path / "07", frames=2)
    amc.write_text(edit(amc.read_text()))
    with pytest.raises(InputError, match=expected) as err:
        read_amc(amc)
    assert "07_03.amc: line" in str(err.value)


def test_malformed_asf(tmp_path):
    amc = _subject(tmp_path / "07")
    asf = tmp_path / "07" / "07.asf"
    text = asf.read_text()
    asf.write_text(text.replace("length 7.180000", "length seven", 1))
    with pytest.raises(InputError, match=r"07.asf: line \d+: non-numeric value in length"):
        read_amc(amc)
    asf.write_text(text.replace("lfemur ltibia", "lfemur shin", 1))
    with pytest.raises(InputError, match="names bone 'shin'"):
        read_amc(amc)


def test_read_sequence_detects_amc(tmp_path):
    from stmt.reading import read_sequence

    seq = read_sequence(_subject(tmp_path / "07"))
    assert seq.format == "asf-amc" and seq.fps == CMU_FPS
