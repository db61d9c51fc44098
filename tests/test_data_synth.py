"""The synthetic action dataset: format, determinism, splits, and that the
motions are what their labels say."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from stmt.data import synth
from stmt.data.synth import SYNTH_CLASSES, forward_kinematics, generate


def _joints(npz_path):
    """(T, 22, 3) world joints of an AMASS file, by the generator's own FK."""
    z = np.load(npz_path)
    poses, trans = z["poses"].astype(np.float64), z["trans"].astype(np.float64)
    T = len(poses)
    rv = np.zeros((T, 22, 3))
    rv[:, 1:] = poses[:, 3:66].reshape(T, 21, 3)
    return forward_kinematics(Rotation.from_rotvec(poses[:, :3]).as_matrix(), rv, trans)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = generate(out, per_class=6, seed=3, subjects=7, progress=False)
    return out, summary


def test_classes_are_babel60_categories_with_sit_and_stand_up():
    from stmt.data.babel import BABEL_CATEGORIES

    assert len(SYNTH_CLASSES) >= 12 and len(set(SYNTH_CLASSES)) == len(SYNTH_CLASSES)
    assert {"sit", "stand up"} <= set(SYNTH_CLASSES)
    assert all(c in BABEL_CATEGORIES[:60] for c in SYNTH_CLASSES)
    order = [BABEL_CATEGORIES.index(c) for c in SYNTH_CLASSES]
    assert order == sorted(order)  # kept in BABEL's ordering
    assert set(synth.GENERATORS) | {"stand up"} == set(SYNTH_CLASSES)


def test_files_are_amass_smplh_and_annotations_babel_format(dataset):
    out, summary = dataset
    assert summary["clips"] == 6 * len(SYNTH_CLASSES)
    assert json.loads((out / "labels.json").read_text()) == SYNTH_CLASSES
    n = 0
    for split in ("train", "val", "test"):
        ann = json.loads((out / f"{split}.json").read_text())
        for seq in ann.values():
            n += 1
            lab = seq["frame_ann"]["labels"][0]
            assert lab["act_cat"][0] in SYNTH_CLASSES and lab["proc_label"] == lab["act_cat"][0]
            assert lab["start_t"] == 0 and lab["end_t"] == pytest.approx(seq["dur"])
            assert seq["dur"] <= 5.0 + 1e-6  # one 5 s sample per clip
            path = out / seq["feat_p"].split("/", 1)[1]
            z = np.load(path)
            T = z["poses"].shape[0]
            assert z["poses"].shape == (T, 156) and z["trans"].shape == (T, 3)
            assert z["betas"].shape == (16,) and float(z["mocap_framerate"]) == 30.0
            assert str(z["gender"]) in ("male", "female")
            assert T / 30.0 == pytest.approx(seq["dur"], abs=1e-3)
    assert n == summary["clips"]


def test_splits_share_no_subject(dataset):
    out, _ = dataset
    subjects = {}
    for split in ("train", "val", "test"):
        ann = json.loads((out / f"{split}.json").read_text())
        assert ann, f"empty {split} split"
        subjects[split] = {s["subject"] for s in ann.values()}
        # the file's subject folder is the annotated subject
        assert all(s["feat_p"].split("/")[2] == s["subject"] for s in ann.values())
    assert not subjects["train"] & subjects["val"]
    assert not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]
    people = json.loads((out / "subjects.json").read_text())
    betas = {k: tuple(v["betas"]) for k, v in people.items()}
    assert len(set(betas.values())) == len(betas)  # every subject has its own shape


def test_deterministic_by_seed(tmp_path):
    a = generate(
        tmp_path / "a", per_class=1, seed=5, subjects=3, classes=["walk", "kick"], progress=False
    )
    generate(
        tmp_path / "b", per_class=1, seed=5, subjects=3, classes=["walk", "kick"], progress=False
    )
    generate(
        tmp_path / "c", per_class=1, seed=6, subjects=3, classes=["walk", "kick"], progress=False
    )
    assert a["clips"] == 2
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.npz"))
    for rel in files:
        za, zb = np.load(tmp_path / "a" / rel), np.load(tmp_path / "b" / rel)
        np.testing.assert_array_equal(za["poses"], zb["poses"])
        np.testing.assert_array_equal(za["trans"], zb["trans"])
    assert (tmp_path / "a" / "train.json").read_text() == (
        tmp_path / "b" / "train.json"
    ).read_text()
    pa = np.concatenate(
        [np.load(p)["poses"].ravel() for p in sorted((tmp_path / "a").rglob("*.npz"))]
    )
    pc = np.concatenate(
        [np.load(p)["poses"].ravel() for p in sorted((tmp_path / "c").rglob("*.npz"))]
    )
    assert pa.shape != pc.shape or not np.allclose(pa, pc)


def _clips(out, label):
    res = []
    for split in ("train", "val", "test"):
        for seq in json.loads((out / f"{split}.json").read_text()).values():
            if seq["frame_ann"]["labels"][0]["act_cat"][0] == label:
                res.append(out / seq["feat_p"].split("/", 1)[1])
    return res


def _pelvis_curve(path, n=50):
    """Pelvis height relative to standing, over normalised time (n samples)."""
    j = _joints(path)
    h = j[:, 0, 2] - j[:, 0, 2].max()
    return np.interp(np.linspace(0, len(h) - 1, n), np.arange(len(h)), h)


def test_reversed_sit_resembles_stand_up_not_sit(dataset):
    """A sit clip played backwards looks like a stand-up clip: pelvis starts low and
    rises. Compared across different generated clips (different subjects, speeds,
    idle lengths), so it tests the generator, not the reversal function."""
    out, _ = dataset
    sits = [_pelvis_curve(p) for p in _clips(out, "sit")]
    ups = [_pelvis_curve(p) for p in _clips(out, "stand up")]
    for s in sits:
        assert s[0] > -0.05 and s[-1] < -0.2  # starts standing, ends seated (>20 cm lower)
    for u in ups:
        assert u[0] < -0.2 and u[-1] > -0.05
    dist = lambda a, b: float(np.mean(np.abs(a - b)))
    for s in sits:
        for u in ups:
            assert dist(s[::-1], u) < 0.5 * dist(s, u)


def test_kinematics_match_the_labels(dataset):
    """Spot checks in world coordinates (Z up, floor at 0): people stand on the floor,
    walkers and runners travel, jumpers leave the floor, wavers raise a hand above
    the head, kickers lift a foot, benders lower the head."""
    out, _ = dataset

    def stat(label, fn):
        return [fn(_joints(p)) for p in _clips(out, label)]

    for label in SYNTH_CLASSES:
        for j in (_joints(p) for p in _clips(out, label)[:2]):
            feet = j[:, synth.FOOT_JOINTS, 2].min(axis=1)
            assert feet.min() == pytest.approx(synth.FOOT_CLEARANCE, abs=1e-3)
            assert np.all(j[:, 15, 2] > j[:, 0, 2])  # head above pelvis: upright
    travel = lambda j: np.linalg.norm(j[-1, 0, :2] - j[0, 0, :2])
    assert min(stat("walk", travel)) > 1.5 and max(stat("stand", travel)) < 0.3
    assert min(stat("run", travel)) > min(stat("walk", travel))
    lift = lambda j: (j[:, synth.FOOT_JOINTS, 2].min(axis=1) - synth.FOOT_CLEARANCE).max()
    assert min(stat("jump", lift)) > 0.15 and max(stat("squat", lift)) < 1e-3
    hand_over_head = lambda j: (j[:, [20, 21], 2].max(axis=1) - j[:, 15, 2]).max()
    assert min(stat("wave", hand_over_head)) > 0.1 and max(stat("punch", hand_over_head)) < 0.1
    foot_up = lambda j: j[:, [7, 8], 2].max() - j[0, [7, 8], 2].min()
    assert min(stat("kick", foot_up)) > 0.4
    head_drop = lambda j: j[0, 15, 2] - j[:, 15, 2].min()
    assert min(stat("bend", head_drop)) > 0.3 and max(stat("t pose", head_drop)) < 0.1


def test_synth_command(tmp_path, capsys):
    from stmt.cli import main

    rc = main(
        [
            "synth",
            "--out",
            str(tmp_path / "s"),
            "--per-class",
            "1",
            "--subjects",
            "3",
            "--classes",
            "sit,stand up",
            "--quiet",
            "--json",
        ]
    )
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["clips"] == 2 and info["classes"] == 2
    assert main(["synth", "--out", str(tmp_path / "x"), "--classes", "fly"]) == 2
