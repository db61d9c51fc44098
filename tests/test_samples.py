"""The sample files of ``stmt synth --samples``: readable, faithful, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from stmt.data.samples import MESH_FPS, sample_motion, write_samples
from stmt.io.bvh import parse_bvh
from stmt.reading import read_sequence

EXPECTED = {  # file -> (format, body, fps)
    "walk.npz": ("amass-smplh", "anny", 30.0),
    "jump.bvh": ("bvh", "anny", 30.0),
    "wave_mesh.npz": ("mesh-npz", "mesh", MESH_FPS),
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    return out, write_samples(out)


def test_every_sample_reads_in_its_format(samples):
    out, paths = samples
    assert sorted(p.name for p in paths) == sorted([*EXPECTED, "README.md"])
    assert sum(p.stat().st_size for p in paths) < 5e6
    readme = (out / "README.md").read_text()
    assert "stmt synth --samples --out datasets/samples" in readme
    for name, (fmt, body, fps) in EXPECTED.items():
        seq = read_sequence(out / name)
        assert (seq.format, seq.body, seq.fps) == (fmt, body, fps), name
        assert 2.5 <= seq.num_frames / seq.fps <= 5.0, name
        height = np.ptp(seq.vertices[0, :, 2])
        assert 1.4 < height < 2.0, f"{name}: upright human, Z up, metres ({height:.2f})"
        assert seq.vertices[:, :, 2].min() > -0.05, f"{name}: above the floor"
        assert f"| `{name}` | {name.split('.')[0].split('_')[0]} |" in readme


def test_bvh_has_cmu_skeleton_in_cmu_units(samples):
    out, _ = samples
    bvh = parse_bvh(out / "jump.bvh")
    for joint in ("Hips", "LHipJoint", "LeftUpLeg", "LowerBack", "Neck1", "Head", "RightHand"):
        assert joint in bvh.names
    head = bvh.names.index("Head")
    assert bvh.channels[0][:3] == ["Xposition", "Yposition", "Zposition"]
    # CMU unit (1/0.45 inch): a ~1.6 m skeleton spans ~28 units, Y up.
    hips_y = bvh.root_positions()[0, 1]
    assert 14 < hips_y < 20 and bvh.offsets[head, 1] > 0


def test_bvh_poses_anny_like_the_amass_file_of_the_same_motion(samples, tmp_path):
    out, _ = samples
    poses, trans, subject = sample_motion("jump")
    amass = tmp_path / "jump_amass.npz"
    np.savez(
        amass, poses=poses, trans=trans, betas=subject.betas, gender=np.array(subject.gender),
        mocap_framerate=np.array(30.0),
    )  # fmt: skip
    a, b = read_sequence(amass), read_sequence(out / "jump.bvh")
    assert a.vertices.shape == b.vertices.shape
    dist = np.linalg.norm(a.vertices - b.vertices, axis=-1)  # (T, V)
    assert dist.mean() < 0.005 and dist.max() < 0.02, (dist.mean(), dist.max())
    # the motion is a real jump, not a still body: the feet leave the floor
    lowest = b.vertices[:, :, 2].min(axis=1)  # (T,)
    assert lowest.max() - lowest.min() > 0.15


def test_mesh_sample_is_anny_posed_with_the_wave(samples):
    from stmt.body.anny import pose_from_smpl, rest_mesh

    out, _ = samples
    with np.load(out / "wave_mesh.npz") as npz:
        assert npz["vertices"].dtype == np.float16 and npz["faces"].dtype == np.int32
        stored = npz["vertices"].astype(np.float32)
        np.testing.assert_array_equal(npz["faces"], rest_mesh()[1])
    poses, trans, _ = sample_motion("wave")
    step = round(30.0 / MESH_FPS)
    expected, _ = pose_from_smpl(poses[::step], trans[::step])
    assert stored.shape == expected.shape
    assert np.abs(stored - expected).max() < 2e-3  # float16 steps near 1 m: 0.5 mm
    assert (out / "wave_mesh.npz").stat().st_size < 3.2e6


def test_same_seed_same_samples(samples, tmp_path):
    from stmt.cli import main

    out, _ = samples
    assert main(["synth", "--samples", "--out", str(tmp_path)]) == 0
    for name in ("jump.bvh", "README.md"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name
    for name in ("walk.npz", "wave_mesh.npz"):
        with np.load(out / name) as first, np.load(tmp_path / name) as second:
            assert sorted(first.files) == sorted(second.files)
            for key in first.files:
                np.testing.assert_array_equal(first[key], second[key], err_msg=f"{name}:{key}")
