"""Bad input through the CLI: one line naming the file and what was expected, exit status 2.

Covers the issue's list for AMASS and mesh files (BVH/AMC bad input is tested
with those readers): truncated or non-npz files, missing keys, wrong widths,
trans/poses length mismatch, NaN/Inf, zero frames, missing body-model files,
face indices out of range, mesh folders that disagree in vertex count, empty
folders.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import trimesh

from stmt.cli import main
from tests.helpers.smpl_model import body_like_mesh, write_amass_npz, write_smplh_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """SMPL+H neutral only (smplx layout)."""
    return write_smplh_model(tmp_path_factory.mktemp("models"))


def _amass(**kw):
    return lambda d: write_amass_npz(d / "clip.npz", T=10, **kw)


def _truncated(d):
    path = write_amass_npz(d / "clip.npz", T=10)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _text(d):
    path = d / "clip.npz"
    path.write_text("poses,trans\n0,0\n")
    return path


def _mesh_npz(**arrays):
    def make(d):
        path = d / "mesh.npz"
        np.savez(path, **arrays)
        return path

    return make


def _checkpoint(d):
    import torch

    torch.save({"state_dict": {"model.w": torch.zeros(3)}}, d / "tiny.ckpt")
    return d / "tiny.ckpt"


def _folder(counts):
    def make(d):
        folder = d / "frames"
        folder.mkdir()
        for t, n in enumerate(counts):
            v, f = body_like_mesh(n, segments=4)
            trimesh.Trimesh(v, f, process=False).export(folder / f"frame_{t:03d}.obj")
        return folder

    return make


def _garbage_obj(d):
    folder = _folder([14, 14])(d)
    (folder / "frame_001.obj").write_text("this is not an obj\n")
    return folder


def _empty_folder(d):
    (d / "empty").mkdir()
    return d / "empty"


def _pkl_models(d):
    (d / "pkl" / "smplh").mkdir(parents=True)
    (d / "pkl" / "smplh" / "SMPLH_NEUTRAL.pkl").write_bytes(b"\x80\x02}q\x00.")
    return d / "pkl"


def _broken_models(d):
    (d / "broken" / "smplh").mkdir(parents=True)
    (d / "broken" / "smplh" / "SMPLH_NEUTRAL.npz").write_text("not a model")
    return d / "broken"


V, F = body_like_mesh(20, segments=6)
GOOD = np.stack([V, V + 0.1]).astype(np.float32)

# id: (make input in tmp dir, models folder: None | "fixture" | make, culprit, expected text)
CASES = {
    "truncated-npz": (_truncated, "fixture", "clip.npz", "truncated or corrupt"),
    "not-an-npz": (_text, "fixture", "clip.npz", "not a valid .npz file (not a zip archive)"),
    "missing-trans": (_amass(drop=("trans",)), "fixture", "clip.npz", "missing key 'trans'"),
    "missing-fps": (
        _amass(drop=("mocap_framerate",)),
        "fixture",
        "clip.npz",
        "missing key 'mocap_framerate'",
    ),
    "missing-gender": (_amass(drop=("gender",)), "fixture", "clip.npz", "missing key 'gender'"),
    "poses-100-columns": (
        _amass(overrides={"poses": np.zeros((10, 100))}),
        "fixture",
        "clip.npz",
        "poses has shape (10, 100); expected (T, 156)",
    ),
    "trans-length": (
        _amass(overrides={"trans": np.zeros((9, 3))}),
        "fixture",
        "clip.npz",
        "trans has 9 frames but poses has 10",
    ),
    "trans-width": (
        _amass(overrides={"trans": np.zeros((10, 2))}),
        "fixture",
        "clip.npz",
        "expected (T, 3)",
    ),
    "nan-poses": (
        _amass(overrides={"poses": np.where(np.arange(156) == 7, np.nan, np.zeros((10, 156)))}),
        "fixture",
        "clip.npz",
        "'poses' contains NaN or Inf (first at frame 0)",
    ),
    "inf-trans": (
        _amass(overrides={"trans": np.full((10, 3), np.inf)}),
        "fixture",
        "clip.npz",
        "'trans' contains NaN or Inf",
    ),
    "zero-frames": (
        _amass(
            overrides={
                "poses": np.zeros((0, 156)),
                "trans": np.zeros((0, 3)),
                "dmpls": np.zeros((0, 8)),
            }
        ),
        "fixture",
        "clip.npz",
        "zero frames",
    ),
    "betas-per-frame": (
        _amass(overrides={"betas": np.random.default_rng(0).normal(size=(10, 16))}),
        "fixture",
        "clip.npz",
        "betas has shape (10, 16); expected one body shape (B,)",
    ),
    "bad-gender": (
        _amass(overrides={"gender": np.array("robot")}),
        "fixture",
        "clip.npz",
        "gender is 'robot'",
    ),
    "missing-model-file": (
        _amass(gender="female"),
        "fixture",
        "models",
        "no smplh female model file; looked at",
    ),
    "no-model-folder": (
        _amass(),
        lambda d: d / "nowhere",
        "nowhere",
        "body-model folder does not exist",
    ),
    "chumpy-pkl-model": (_amass(), _pkl_models, "SMPLH_NEUTRAL.pkl", "convert it to .npz"),
    "corrupt-model-file": (
        _amass(),
        _broken_models,
        "SMPLH_NEUTRAL.npz",
        "not a valid .npz file (not a zip archive); expected a smplh model .npz",
    ),
    "faces-out-of-range": (
        _mesh_npz(vertices=GOOD, faces=np.array([[0, 1, 20]])),
        None,
        "mesh.npz",
        "face indices must lie in [0, 20)",
    ),
    "mesh-nan": (
        _mesh_npz(vertices=np.where(GOOD > 0.5, np.nan, GOOD)),
        None,
        "mesh.npz",
        "NaN or Inf",
    ),
    "mesh-zero-frames": (_mesh_npz(vertices=np.zeros((0, 20, 3))), None, "mesh.npz", "zero frames"),
    "mesh-2d-vertices": (
        _mesh_npz(vertices=np.zeros((2, 20, 2))),
        None,
        "mesh.npz",
        "expected (T, V, 3)",
    ),
    "folder-vertex-counts": (
        _folder([14, 14, 18]),
        None,
        "frame_002.obj",
        "has 18 vertices but frame_000.obj has 14",
    ),
    "folder-unreadable-frame": (_garbage_obj, None, "frame_001.obj", "holds no vertices"),
    "empty-folder": (_empty_folder, None, "empty", "no .obj or .ply files"),
    # an archive of many arrays: the line lists a dozen and counts the rest
    "npz-many-keys": (
        _mesh_npz(**{f"frame_{i:04d}": np.zeros(3) for i in range(500)}),
        None,
        "mesh.npz",
        ", ".join(f"keys found: frame_{i:04d}" if i == 0 else f"frame_{i:04d}" for i in range(12))
        + ", ... (488 more)",
    ),
    "checkpoint-as-input": (_checkpoint, None, "tiny.ckpt", "a PyTorch checkpoint, not a MoCap"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_status_2(case, models, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("STMT_BODY_MODELS", raising=False)
    make, model_dir, culprit, expect = CASES[case]
    path = make(tmp_path)
    argv = ["inspect", str(path)]
    if model_dir == "fixture":
        argv += ["--body-models", str(models)]
    elif model_dir is not None:
        argv += ["--body-models", str(model_dir(tmp_path))]
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("stmt: error: ")
    assert culprit in lines[0] and expect in lines[0], lines[0]
    assert "Traceback" not in err


def test_real_process_exit_status_and_no_traceback(tmp_path):
    path = write_amass_npz(tmp_path / "wide.npz", T=4, overrides={"poses": np.zeros((4, 100))})
    proc = subprocess.run(
        [sys.executable, "-m", "stmt", "inspect", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.count("\n") == 1
        and "wide.npz" in proc.stderr
        and "Traceback" not in proc.stderr
    )
