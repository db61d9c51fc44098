"""The anny wrapper: rest mesh, SMPL retargeting (upright, knee, shoulder), subset posing."""

from __future__ import annotations

import numpy as np
import pytest

from stmt.errors import InputError
from stmt.motion import axis_angle_to_matrix

anny = pytest.importorskip("stmt.body.anny")

STAND = np.pi / 2  # AMASS files turn SMPL's Y-up body Z-up with +90 deg about X


@pytest.fixture(scope="module")
def labels():
    anny.rest_mesh()  # builds the model once (cached on disk by anny)
    return list(anny.bone_labels())


def smpl_pose(frames: int = 1, **joints) -> tuple[np.ndarray, np.ndarray]:
    """Standing AMASS-style poses (T, 66) with ``joint=(rx, ry, rz)`` set, and trans (T, 3)."""
    poses = np.zeros((frames, 66))
    poses[:, 0] = STAND
    for name, rotvec in joints.items():
        j = anny.SMPL_JOINT_NAMES.index(name)
        poses[:, 3 * j : 3 * j + 3] = rotvec
    trans = np.tile([0.0, 0.0, 0.95], (frames, 1))
    return poses, trans


def joint(joints: np.ndarray, labels: list[str], name: str) -> np.ndarray:
    return joints[0, labels.index(name)]


def test_rest_mesh_is_a_canonical_triangle_mesh(labels):
    rest, faces = anny.rest_mesh()
    assert rest.dtype == np.float32 and rest.ndim == 2 and rest.shape[1] == 3
    assert faces.dtype == np.int64 and faces.shape[1] == 3
    assert faces.min() >= 0 and faces.max() == len(rest) - 1
    extent = rest.max(0) - rest.min(0)
    assert 1.4 < extent[2] < 1.9, "Z is up and the body is about 1.6 m tall"
    assert extent[2] == extent.max()
    again, _ = anny.rest_mesh()
    np.testing.assert_array_equal(rest, again)  # canonical: the same every call
    assert {"Hips", "LeftUpLeg", "Head", "RightHand", "LeftToeBase"} <= set(labels)


def test_zero_smpl_pose_stands_upright_in_a_t_pose_facing_minus_y(labels):
    poses, trans = smpl_pose()
    verts, joints = anny.pose_from_smpl(poses, trans)
    assert verts.dtype == np.float32 and joints.dtype == np.float32
    v = verts[0]
    height = v[:, 2].max() - v[:, 2].min()
    assert 1.45 < height < 1.85
    assert abs(v[:, 2].min()) < 0.15, "feet near the floor for an AMASS standing height"
    head, hips = joint(joints, labels, "Head"), joint(joints, labels, "Hips")
    lfoot, rfoot = joint(joints, labels, "LeftFoot"), joint(joints, labels, "RightFoot")
    assert head[2] > hips[2] + 0.4 and hips[2] > lfoot[2] + 0.6 and hips[2] > rfoot[2] + 0.6
    top = v[v[:, 2] > v[:, 2].max() - 0.05]  # the crown of the head
    assert np.abs(top[:, :2].mean(0) - head[:2]).max() < 0.1
    # Facing -Y: the toes are in front (smaller y) of the ankles; left side is +X.
    assert joint(joints, labels, "LeftToeBase")[1] < lfoot[1] - 0.05
    assert joint(joints, labels, "LeftUpLeg")[0] > 0 > joint(joints, labels, "RightUpLeg")[0]
    # SMPL's rest is a T-pose: arms horizontal, hands far out at shoulder height.
    for side, sign in (("Left", 1), ("Right", -1)):
        hand, arm = joint(joints, labels, f"{side}Hand"), joint(joints, labels, f"{side}Arm")
        assert sign * hand[0] > sign * arm[0] + 0.4
        assert abs(hand[2] - arm[2]) < 0.06


def test_left_knee_flexion_bends_backwards(labels):
    poses, trans = smpl_pose(2)
    poses[1, 3 * anny.SMPL_JOINT_NAMES.index("left_knee")] = np.pi / 2
    _, joints = anny.pose_from_smpl(poses, trans)
    straight, bent = joints[:1], joints[1:]
    knee = joint(bent, labels, "LeftLeg")
    foot = joint(bent, labels, "LeftFoot")
    assert foot[1] > knee[1] + 0.3, "the foot goes behind the knee (+Y, the body faces -Y)"
    assert abs(foot[2] - knee[2]) < 0.1, "a 90 deg flexion brings the shin horizontal"
    np.testing.assert_allclose(
        joint(bent, labels, "LeftLeg"), joint(straight, labels, "LeftLeg"), atol=1e-6
    )
    np.testing.assert_allclose(
        joint(bent, labels, "RightFoot"), joint(straight, labels, "RightFoot"), atol=1e-6
    )


def test_right_shoulder_rotation_moves_only_the_right_arm(labels):
    poses, trans = smpl_pose(2)
    j = anny.SMPL_JOINT_NAMES.index("right_shoulder")
    poses[1, 3 * j : 3 * j + 3] = (0.0, 0.0, np.pi / 2)  # about SMPL's forward axis: arm down
    _, joints = anny.pose_from_smpl(poses, trans)
    rest, moved = joints[:1], joints[1:]
    shoulder, hand = joint(moved, labels, "RightArm"), joint(moved, labels, "RightHand")
    assert hand[2] < shoulder[2] - 0.4 and abs(hand[0] - shoulder[0]) < 0.1
    np.testing.assert_allclose(
        joint(moved, labels, "LeftHand"), joint(rest, labels, "LeftHand"), atol=1e-6
    )


def test_root_orientation_and_translation_move_the_whole_body(labels):
    poses, trans = smpl_pose(3)
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # +90 deg about Z
    stand = axis_angle_to_matrix(np.array([STAND, 0.0, 0.0]))
    from scipy.spatial.transform import Rotation

    poses[1, :3] = Rotation.from_matrix(turn @ stand).as_rotvec()
    trans[2] += (1.0, -2.0, 0.5)
    verts, joints = anny.pose_from_smpl(poses, trans)
    # Turned: facing -Y becomes facing +X (toes ahead of the ankles along +X).
    toe, ankle = joints[1, labels.index("LeftToeBase")], joints[1, labels.index("LeftFoot")]
    assert toe[0] > ankle[0] + 0.05
    # Translated: a rigid shift along trans's direction, about as long (leg-length scale).
    shift = verts[2] - verts[0]
    assert np.ptp(shift, axis=0).max() < 1e-4
    direction = np.array([1.0, -2.0, 0.5])
    cos = shift[0] @ direction / np.linalg.norm(shift[0]) / np.linalg.norm(direction)
    assert cos > 0.9999
    assert 0.9 < np.linalg.norm(shift[0]) / np.linalg.norm(direction) < 1.1


def test_vertex_subset_equals_full_rows():
    rng = np.random.default_rng(0)
    poses = rng.normal(scale=0.3, size=(3, 156))  # SMPL+H width: extra columns ignored
    trans = rng.normal(size=(3, 3))
    full, joints = anny.pose_from_smpl(poses, trans)
    ids = rng.choice(full.shape[1], 512, replace=False)
    sub, sub_joints = anny.pose_from_smpl(poses, trans, betas=np.ones(16), vertex_ids=ids)
    assert sub.shape == (3, 512, 3) and sub.dtype == np.float32
    np.testing.assert_allclose(sub, full[:, ids], atol=1e-5)
    np.testing.assert_allclose(sub_joints, joints, atol=1e-6)


def test_skinning_matches_anny_forward():
    """Our GEMM skinning equals anny's own forward for the same bone orientations."""
    import torch

    rng = np.random.default_rng(1)
    rot = axis_angle_to_matrix(rng.normal(scale=0.4, size=(2, 31, 3))).astype(np.float32)
    verts, heads = anny._skin(rot, rng.normal(size=(2, 3)).astype(np.float32), None)
    model = anny.get_model()
    with torch.inference_mode():
        rest_rot = model()["rest_bone_poses"][0, :, :3, :3].float()
        delta = torch.eye(4).repeat(2, 31, 1, 1)
        delta[:, :, :3, :3] = torch.from_numpy(rot) @ rest_rot
        delta[:, 0, :3, 3] = torch.from_numpy(heads[:, 0])
        out = model(pose_parameters=delta, pose_parameterization="world-orient")
    np.testing.assert_allclose(out["vertices"].numpy(), verts, atol=1e-5)
    np.testing.assert_allclose(out["bone_poses"][:, :, :3, 3].numpy(), heads, atol=1e-5)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="66"):
        anny.pose_from_smpl(np.zeros((2, 60)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="trans"):
        anny.pose_from_smpl(np.zeros((2, 66)), np.zeros((3, 3)))


def test_skeleton_without_legs_names_the_needed_joints(tmp_path):
    """Three joints can be no body whatever their names: the line names the joints a body
    needs, and does not ask for a --joint-map that could not help."""
    from stmt.motion import SkeletonMotion

    offsets = np.array([[0, 1.0, 0], [0, 0.3, 0], [0, 0.4, 0]])
    motion = SkeletonMotion(
        names=("Hips", "Spine", "Head"), parents=(-1, 0, 1), offsets=offsets,
        end_offsets=np.zeros((3, 3)), rotations=np.tile(np.eye(3), (1, 3, 1, 1)),
        translations=offsets[None].copy(), fps=30.0, source=tmp_path / "x.bvh",
    )  # fmt: skip
    with pytest.raises(InputError, match="LeftUpLeg.*RightHand") as err:
        anny.pose_skeleton(motion)
    assert "x.bvh" in str(err.value) and "only 3 joints" in str(err.value)
    assert "--joint-map" not in str(err.value)


# ------------------------------------------------------------------------ rig disk cache
_FRESH_PROCESS = """
import sys
import numpy as np
from stmt.body.anny import pose_from_smpl, rest_mesh
from stmt.reading import read_sequence

work = sys.argv[1]
z = np.load(work + "/in.npz")
verts, joints = pose_from_smpl(z["poses"], z["trans"], vertex_ids=z["ids"])
bvh = read_sequence(work + "/walk.bvh", vertex_ids=z["ids"])
rest, faces = rest_mesh()
np.savez(work + "/out.npz", verts=verts, joints=joints, bvh=bvh.vertices, rest=rest, faces=faces)
print(" ".join(m for m in ("anny", "roma", "warp", "torch._dynamo") if m in sys.modules))
"""


def test_rig_cache_poses_without_importing_anny(tmp_path, monkeypatch):
    """Once the rig cache exists, a fresh process poses AMASS and BVH clips without
    importing anny (nor roma, warp, torch._dynamo), with the anny-built rig's numbers."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from stmt.reading import read_sequence
    from tests.helpers import cmu

    monkeypatch.setenv("STMT_CACHE_DIR", str(tmp_path / "cache"))
    anny._rig.cache_clear()
    try:
        assert not anny.rig_cache_file().exists()
        rng = np.random.default_rng(3)
        poses, trans = smpl_pose(6)
        poses[:, 3:] += rng.normal(scale=0.3, size=(6, 63))
        ids = rng.choice(13718, 300, replace=False)
        # the anny-built rig (this process builds it from the anny model and writes the cache)
        verts, joints = anny.pose_from_smpl(poses, trans, vertex_ids=ids)
        rest, faces = anny.rest_mesh()
        assert anny.rig_cache_file().is_file()
        dofs, root = cmu.standing_motion(5)
        dofs["lfemur"][:, 0] = np.linspace(0.0, -60.0, 5)
        clip = cmu.write_bvh(tmp_path / "walk.bvh", dofs, root, fps=120.0)
        bvh = read_sequence(clip, vertex_ids=ids)
        np.savez(tmp_path / "in.npz", poses=poses, trans=trans, ids=ids)

        repo = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": str(repo)}
        proc = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(tmp_path)], env=env,
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "", f"imported: {proc.stdout.strip()}"
        out = np.load(tmp_path / "out.npz")
        assert out["verts"].dtype == np.float32 and out["rest"].dtype == np.float32
        np.testing.assert_array_equal(out["rest"], rest)
        np.testing.assert_array_equal(out["faces"], faces)
        np.testing.assert_allclose(out["verts"], verts, atol=1e-6, rtol=0)
        np.testing.assert_allclose(out["joints"], joints, atol=1e-6, rtol=0)
        np.testing.assert_allclose(out["bvh"], bvh.vertices, atol=1e-6, rtol=0)
    finally:
        anny._rig.cache_clear()


def test_rig_cache_holds_the_anny_model_constants(tmp_path, monkeypatch):
    """The cached arrays are anny's own rest mesh and its faces (split as the package
    fixes them); a corrupt file is rebuilt."""
    import torch

    monkeypatch.setenv("STMT_CACHE_DIR", str(tmp_path))
    anny._rig.cache_clear()
    try:
        path = anny.rig_cache_file()
        path.parent.mkdir(parents=True)
        path.write_bytes(b"not an npz")
        rest, faces = anny.rest_mesh()  # rebuilt from anny, rewritten
        model = anny.get_model()
        with torch.inference_mode():
            expected = model()["rest_vertices"][0].float().numpy()
        np.testing.assert_array_equal(rest, expected)
        np.testing.assert_array_equal(
            faces, anny.fixed_triangulation(model.get_triangular_faces().numpy())
        )
        with np.load(path) as z:
            np.testing.assert_array_equal(z["vertices"], rest)
            assert list(z["labels"]) == list(model.bone_labels)
        assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary left over"
    finally:
        anny._rig.cache_clear()


def test_quads_split_the_same_way_on_every_cpu():
    """anny measures its quads' diagonals in float32, and an Intel Xeon split six quads
    of equal diagonals the other way from an AMD EPYC: the face list (and the
    probabilities of files posed on the body) depended on the machine. The split of
    every quad is fixed by the package; a list with some quads split the other way is
    put back, and one of another mesh is kept as it is, with a warning."""
    faces = anny.rest_mesh()[1]
    quads, split_ac = anny.quads_of(faces)
    assert len(quads) * 2 == len(faces)
    np.testing.assert_array_equal(anny.split_quads(quads, split_ac), faces)
    other_cpu = split_ac.copy()
    other_cpu[[13359, 13402, 13429, 100, 5000, 13000]] ^= True  # some quads the other way
    flipped = anny.split_quads(quads, other_cpu)
    assert not np.array_equal(flipped, faces)
    # quad 100 split along its other diagonal: the same four corners, other triangles
    assert set(flipped[200:202].ravel()) == set(faces[200:202].ravel())
    assert {frozenset(t) for t in flipped[200:202]}.isdisjoint(frozenset(t) for t in faces[200:202])
    np.testing.assert_array_equal(anny.fixed_triangulation(flipped), faces)
    fewer = faces[:-2]  # not the mesh the file describes: anny's own triangles stay
    with pytest.warns(UserWarning, match="its own triangulation is used"):
        np.testing.assert_array_equal(anny.fixed_triangulation(fewer), fewer)
    not_quads = faces[1:-1]
    with pytest.warns(UserWarning, match="its own triangulation is used"):
        np.testing.assert_array_equal(anny.fixed_triangulation(not_quads), not_quads)
