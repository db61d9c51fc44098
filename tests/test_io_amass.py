"""AMASS readers posed on SMPL+H / SMPL-X, checked against smplx itself, and on anny."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch

from stmt.body.smpl import load_model
from stmt.errors import InputError
from stmt.reading import body_topology, read_sequence
from tests.helpers.smpl_model import (
    amass_arrays,
    write_amass_npz,
    write_smplh_model,
    write_smplx_model,
)

T = 6


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Body-model folder, smplx layout: SMPL+H neutral + male, SMPL-X neutral."""
    root = tmp_path_factory.mktemp("models")
    write_smplh_model(root, genders=("neutral", "male"))
    write_smplx_model(root, genders=("neutral",))
    return root


def smplx_reference(model_file, kind: str, a: dict) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and joints from smplx's own forward, hands in full axis-angle, no hand mean."""
    import smplx

    n = len(a["poses"])
    P = torch.tensor(a["poses"], dtype=torch.float32)
    betas = torch.tensor(a["betas"], dtype=torch.float32)[None].expand(n, -1)
    common = {"ext": "npz", "use_pca": False, "flat_hand_mean": True, "batch_size": n}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "smplh":
            model = smplx.SMPLH(str(model_file), num_betas=16, **common)
            # smplx 0.1.28 keeps only 10 of a 16-component model's betas; give it all 16.
            model.shapedirs = torch.from_numpy(np.load(model_file)["shapedirs"]).float()
            model._num_betas = 16
            parts = {"left_hand_pose": P[:, 66:111], "right_hand_pose": P[:, 111:156]}
        else:
            model = smplx.SMPLX(str(model_file), num_betas=betas.shape[1], **common)
            parts = {
                "jaw_pose": P[:, 66:69],
                "leye_pose": P[:, 69:72],
                "reye_pose": P[:, 72:75],
                "left_hand_pose": P[:, 75:120],
                "right_hand_pose": P[:, 120:165],
            }
    with torch.no_grad():
        out = model(
            betas=betas,
            global_orient=P[:, :3],
            body_pose=P[:, 3:66],
            transl=torch.tensor(a["trans"], dtype=torch.float32),
            **parts,
        )
    J = {"smplh": 52, "smplx": 55}[kind]
    return out.vertices.numpy(), out.joints[:, :J].numpy()


def test_smplh_full_and_subset_equal_smplx(models, tmp_path):
    path = write_amass_npz(tmp_path / "walk.npz", T=T, gender="male", seed=1)
    ref_v, ref_j = smplx_reference(
        models / "smplh" / "SMPLH_MALE.npz", "smplh", amass_arrays(T, gender="male", seed=1)
    )

    full = read_sequence(path, body_models=models)
    assert full.format == "amass-smplh" and full.body == "smplh"
    assert full.vertices.dtype == np.float32 and full.vertices.shape == (T, 6890, 3)
    np.testing.assert_allclose(full.vertices, ref_v, atol=1e-5)
    np.testing.assert_allclose(full.joints, ref_j, atol=1e-5)
    assert full.fps == 60.0 and len(full.joint_names) == 52

    ids = np.random.default_rng(0).choice(6890, size=512, replace=False)
    sub = read_sequence(path, body_models=models, vertex_ids=ids)
    assert sub.vertices.shape == (T, 512, 3)
    np.testing.assert_allclose(sub.vertices, ref_v[:, ids], atol=1e-5)
    np.testing.assert_array_equal(sub.vertex_ids, ids)
    # faces and rest mesh describe the full, canonical (neutral, zero-shape) mesh
    assert sub.faces.shape == (13776, 3) and sub.rest_vertices.shape == (6890, 3)
    neutral = np.load(models / "smplh" / "SMPLH_NEUTRAL.npz")["v_template"]
    np.testing.assert_array_equal(sub.rest_vertices, neutral)


def test_all_16_betas_change_the_shape(models, tmp_path):
    a = write_amass_npz(tmp_path / "a.npz", T=2, overrides={"betas": np.zeros(16)})
    b = write_amass_npz(tmp_path / "b.npz", T=2, overrides={"betas": np.eye(16)[15] * 2.0})
    va = read_sequence(a, body_models=models).vertices
    vb = read_sequence(b, body_models=models).vertices
    assert np.abs(va - vb).max() > 1e-3  # beta 16 moves the surface (smplx alone would drop it)


def test_smplx_stageii_equals_smplx(models, tmp_path):
    a = amass_arrays(T, kind="smplx", num_betas=10, seed=2)
    path = write_amass_npz(tmp_path / "x_stageii.npz", T=T, kind="smplx", num_betas=10, seed=2)
    ref_v, ref_j = smplx_reference(models / "smplx" / "SMPLX_NEUTRAL.npz", "smplx", a)
    seq = read_sequence(path, body_models=models)
    assert seq.format == "amass-smplx" and seq.body == "smplx"
    np.testing.assert_allclose(seq.vertices, ref_v, atol=1e-5)
    np.testing.assert_allclose(seq.joints, ref_j, atol=1e-5)
    ids = np.arange(0, 10475, 37)
    sub = read_sequence(path, body_models=models, vertex_ids=ids)
    np.testing.assert_allclose(sub.vertices, ref_v[:, ids], atol=1e-5)

    # the same motion stored only as per-part keys reads the same
    parts = write_amass_npz(
        tmp_path / "parts.npz", T=T, kind="smplx", num_betas=10, seed=2, drop=("poses",)
    )
    np.testing.assert_array_equal(read_sequence(parts, body_models=models).vertices, seq.vertices)


def test_smplx_betas_beyond_the_model_warn(models, tmp_path):
    path = write_amass_npz(tmp_path / "x16.npz", T=2, kind="smplx", num_betas=16)
    with pytest.warns(UserWarning, match="10 shape components"):
        read_sequence(path, body_models=models)


def test_amass_layout_env_var_and_gender(tmp_path, monkeypatch):
    root = write_smplh_model(
        tmp_path / "amass_models", genders=("neutral", "female"), layout="amass"
    )
    assert (root / "smplh" / "female" / "model.npz").is_file()
    path = write_amass_npz(tmp_path / "f.npz", T=3, overrides={"gender": np.array(b"female")})
    monkeypatch.setenv("STMT_BODY_MODELS", str(root))
    seq = read_sequence(path)  # body auto + $STMT_BODY_MODELS -> smplh
    assert seq.body == "smplh"
    female = load_model(root / "smplh" / "female" / "model.npz", "smplh")
    a = amass_arrays(3)
    from stmt.body.smpl import pose

    expect, _ = pose(female, a["poses"], a["trans"], a["betas"])
    np.testing.assert_array_equal(seq.vertices, expect)
    neutral = np.load(root / "smplh" / "neutral" / "model.npz")["v_template"]
    np.testing.assert_array_equal(seq.rest_vertices, neutral)  # canonical, not the female body


def test_amass_world_is_z_up_metres(models, tmp_path):
    path = write_amass_npz(tmp_path / "z.npz", T=2)
    seq = read_sequence(path, body_models=models)
    extent = seq.vertices[0].max(0) - seq.vertices[0].min(0)
    assert 1.5 < extent[2] < 1.9  # a ~1.67 m body standing along z
    assert seq.joints[0, 15, 2] > seq.joints[0, 7, 2] + 1.0  # head well above the ankle


def test_body_topology_matches_read_sequence(models, tmp_path):
    rest, faces, name = body_topology("auto", models, "amass-smplh")
    seq = read_sequence(write_amass_npz(tmp_path / "m.npz", T=2, gender="male"), body_models=models)
    assert name == "smplh"
    np.testing.assert_array_equal(rest, seq.rest_vertices)
    np.testing.assert_array_equal(faces, seq.faces)
    rest_x, faces_x, name_x = body_topology("smplx", models, "amass-smplx")
    assert name_x == "smplx" and rest_x.shape == (10475, 3) and faces_x.max() < 10475


def test_body_choice_must_fit_the_file(models, tmp_path, monkeypatch):
    monkeypatch.delenv("STMT_BODY_MODELS", raising=False)
    path = write_amass_npz(tmp_path / "h.npz", T=2)
    with pytest.raises(InputError, match="cannot be posed on --body smplx"):
        read_sequence(path, body="smplx", body_models=models)
    with pytest.raises(InputError, match="needs the SMPL\\+H model files"):
        read_sequence(path, body="smplh")


def test_missing_model_names_the_paths(models, tmp_path):
    path = write_amass_npz(tmp_path / "fem.npz", T=2, gender="female")
    with pytest.raises(InputError) as err:
        read_sequence(path, body_models=models)
    msg = str(err.value)
    assert "SMPLH_FEMALE.npz" in msg and "female/model.npz" in msg


def test_chumpy_pkl_model_is_refused_clearly(tmp_path):
    root = tmp_path / "pkl_models"
    (root / "smplh").mkdir(parents=True)
    (root / "smplh" / "SMPLH_NEUTRAL.pkl").write_bytes(b"\x80\x02}q\x00.")
    path = write_amass_npz(tmp_path / "n.npz", T=2)
    with pytest.raises(InputError, match="convert it to .npz"):
        read_sequence(path, body_models=root)


@pytest.mark.skipif(
    importlib.util.find_spec("stmt.body.anny") is None, reason="stmt.body.anny not written yet"
)
def test_anny_body_without_model_files(tmp_path, monkeypatch):
    from stmt.body.anny import rest_mesh

    monkeypatch.delenv("STMT_BODY_MODELS", raising=False)
    path = write_amass_npz(tmp_path / "anny.npz", T=3)
    seq = read_sequence(path)  # auto, no model files -> anny
    rest, faces = rest_mesh()
    np.testing.assert_array_equal(seq.faces, faces)
    assert seq.body == "anny" and seq.format == "amass-smplh"
    assert seq.vertices.shape == (3, len(rest), 3) and seq.vertices.dtype == np.float32
    np.testing.assert_array_equal(seq.rest_vertices, rest)
    ids = np.arange(0, len(rest), 97)
    sub = read_sequence(path, body="anny", vertex_ids=ids)
    np.testing.assert_allclose(sub.vertices, seq.vertices[:, ids], atol=1e-5)
    topo_rest, topo_faces, name = body_topology("auto", None, "amass-smplx")
    assert name == "anny"
    np.testing.assert_array_equal(topo_rest, rest)
    np.testing.assert_array_equal(topo_faces, seq.faces)


def test_chunked_posing_equals_one_chunk(models):
    """Frames posed in chunks (with a short tail chunk) give the same result as one chunk."""
    from stmt.body.smpl import pose

    model = load_model(models / "smplh" / "SMPLH_NEUTRAL.npz", "smplh")
    a = amass_arrays(5, seed=4)
    ids = np.arange(0, 6890, 50)  # 138 vertices
    whole_v, whole_j = pose(model, a["poses"], a["trans"], a["betas"], ids)
    parts_v, parts_j = pose(
        model, a["poses"], a["trans"], a["betas"], ids, max_chunk_vertices=2 * 138
    )
    np.testing.assert_allclose(parts_v, whole_v, atol=1e-6)
    np.testing.assert_allclose(parts_j, whole_j, atol=1e-6)
