"""Format detection from extension and content."""

from __future__ import annotations

import numpy as np
import pytest

from stmt.errors import InputError
from stmt.io import detect_format
from tests.helpers.smpl_model import write_amass_npz


def test_npz_content_decides(tmp_path):
    assert detect_format(write_amass_npz(tmp_path / "h.npz", T=2)) == "amass-smplh"
    assert detect_format(write_amass_npz(tmp_path / "x.npz", T=2, kind="smplx")) == "amass-smplx"
    parts = write_amass_npz(tmp_path / "p.npz", T=2, kind="smplx", drop=("poses",))
    assert detect_format(parts) == "amass-smplx"
    np.savez(tmp_path / "m.npz", vertices=np.zeros((2, 3, 3)))
    assert detect_format(tmp_path / "m.npz") == "mesh-npz"


def test_extensions_and_folders(tmp_path):
    for name, fmt in [
        ("a.bvh", "bvh"),
        ("a.BVH", "bvh"),
        ("a.amc", "asf-amc"),
        ("a.asf", "asf-amc"),
    ]:
        (tmp_path / name).write_text("x")
        assert detect_format(tmp_path / name) == fmt
    (tmp_path / "frames").mkdir()
    assert detect_format(tmp_path / "frames") == "mesh-folder"


def test_content_without_a_known_extension(tmp_path):
    (tmp_path / "motion.txt").write_text("HIERARCHY\nROOT Hips\n{\n}\n")
    assert detect_format(tmp_path / "motion.txt") == "bvh"
    (tmp_path / "motion.dat").write_text("#!OML:ASF skel.asf\n:FULLY-SPECIFIED\n:DEGREES\n1\n")
    assert detect_format(tmp_path / "motion.dat") == "asf-amc"
    amass = write_amass_npz(tmp_path / "clip.bin", T=2)  # an AMASS zip under another name
    assert detect_format(amass) == "amass-smplh"


def _write(path, save, *args, **arrays):
    with open(path, "wb") as f:  # keep the name exactly (np.save/savez would add a suffix)
        save(f, *args, **arrays)


@pytest.mark.parametrize(
    ("setup", "expect"),
    [
        (lambda p: p.write_text("not a zip"), "not a zip archive"),
        (lambda p: _write(p, np.save, np.zeros(3)), "a .npy array"),
        (lambda p: _write(p, np.savez, something=np.zeros(3)), "expected 'poses' .* or 'vertices'"),
        (
            lambda p: _write(p, np.savez, poses=np.zeros((4, 100))),
            r"\(4, 100\); expected \(T, 156\)",
        ),
    ],
    ids=["text", "npy", "unknown-keys", "poses-width"],
)
def test_npz_that_is_not_what_it_claims(tmp_path, setup, expect):
    path = tmp_path / "f.npz"
    setup(path)
    with pytest.raises(InputError, match=expect) as err:
        detect_format(path)
    assert err.value.path == path


def test_unrecognised_and_missing(tmp_path):
    (tmp_path / "a.xyz").write_text("1 2 3\n")
    with pytest.raises(InputError, match="unrecognised file format"):
        detect_format(tmp_path / "a.xyz")
    (tmp_path / "one.obj").write_text("v 0 0 0\n")
    with pytest.raises(InputError, match="put the per-frame meshes in a folder"):
        detect_format(tmp_path / "one.obj")
    with pytest.raises(InputError, match="no such file"):
        detect_format(tmp_path / "missing.npz")
