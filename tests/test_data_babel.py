"""BABEL/KIT label sets, annotation parsing, sample chunking, and prepare on
BABEL-format fixtures (JSON + AMASS npz written here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stmt.data.babel import (
    BABEL_CATEGORIES,
    KIT_SPLIT,
    kit_split,
    load_annotations,
    resolve_feat_p,
    segments_of,
    sequence_jobs,
    subject_of,
)  # fmt: skip
from stmt.data.registry import label_set
from tests.helpers.smpl_model import write_amass_npz, write_smplh_model

REPO = Path(__file__).resolve().parents[1]


def test_label_sets_and_dataset_folders_agree():
    assert len(BABEL_CATEGORIES) == len(set(BABEL_CATEGORIES)) == 120
    assert BABEL_CATEGORIES[:10] == [
        "walk", "stand", "hand movements", "turn", "interact with/use object",
        "arm movements", "t pose", "step", "backwards movement", "raising body part",
    ]  # fmt: skip
    assert label_set("babel60") == BABEL_CATEGORIES[:60]
    kit = label_set("kit")
    assert len(kit) == 57 and not {"sideways movement", "dance", "stumble"} & set(kit)
    for name in ("synthetic", "babel60", "babel120", "kit"):
        assert json.loads((REPO / "datasets" / name / "labels.json").read_text()) == label_set(name)
        assert (REPO / "datasets" / name / "README.md").is_file()


def _seq(feat_p, dur, labels, frame=True):
    ann = {"labels": labels, "mul_act": len(labels) > 1}
    return {
        "feat_p": feat_p,
        "dur": dur,
        "seq_ann": ann if not frame else {"labels": labels[:1]},
        "frame_ann": ann if frame else None,
    }


def test_segments_chunk_5s_one_sample_per_category():
    idx = {c: i for i, c in enumerate(label_set("babel60"))}
    seq = _seq(
        "CMU/CMU/01/01_01_poses.npz",
        14.0,
        [
            {"act_cat": ["walk", "turn"], "start_t": 0.0, "end_t": 12.0, "proc_label": "walk turn"},
            {"act_cat": ["jumping jacks"], "start_t": 12.0, "end_t": 13.0},  # not in BABEL-60
            {"act_cat": ["stand"], "start_t": 13.0, "end_t": 13.1},  # shorter than MIN_CHUNK_S
            {"act_cat": ["sit"], "start_t": 13.5, "end_t": 20.0},  # clipped to dur
        ],
    )
    segs = segments_of(seq, idx)
    got = [(s.label, s.start_t, s.end_t) for s in segs]
    walk, turn, sit = idx["walk"], idx["turn"], idx["sit"]
    assert got == [
        (walk, 0, 5),
        (turn, 0, 5),
        (walk, 5, 10),
        (turn, 5, 10),
        (walk, 10, 12),
        (turn, 10, 12),
        (sit, 13.5, 14.0),
    ]
    whole = _seq(
        "KIT/3/a_poses.npz", 3.0, [{"act_cat": ["kick"], "start_t": 0, "end_t": 0}], frame=False
    )
    assert [(s.label, s.start_t, s.end_t) for s in segments_of(whole, idx)] == [(idx["kick"], 0, 3)]


def test_feat_p_resolution_subjects_and_kit_split(tmp_path):
    (tmp_path / "CMU" / "01").mkdir(parents=True)
    f = tmp_path / "CMU" / "01" / "01_01_poses.npz"
    f.write_bytes(b"x")
    assert resolve_feat_p("CMU/CMU/01/01_01_poses.npz", tmp_path) == f
    assert resolve_feat_p("CMU/01/01_01_poses.npz", tmp_path) == f
    assert resolve_feat_p("AMASS/CMU/CMU/01/01_01_poses.npz", tmp_path) == f
    assert subject_of("CMU/CMU/01/01_01_poses.npz") == "CMU/01"
    assert subject_of("KIT/KIT/3/walk_poses.npz") == "KIT/3"
    paths = [f"KIT/KIT/{i % 50}/motion_{i}_poses.npz" for i in range(3000)]
    splits = [kit_split(p) for p in paths]
    assert splits == [kit_split(p) for p in paths]  # deterministic
    assert kit_split("KIT/KIT/3/a_poses.npz") == kit_split("KIT/3/a_poses.npz")
    for name, frac in zip(("train", "val", "test"), KIT_SPLIT):
        assert splits.count(name) / len(splits) == pytest.approx(frac, abs=0.03)


def test_load_annotations_errors(tmp_path):
    from stmt.errors import InputError

    with pytest.raises(InputError, match="train.json"):
        load_annotations(tmp_path)
    (tmp_path / "train.json").write_text("{broken")
    with pytest.raises(InputError, match="not valid JSON"):
        load_annotations(tmp_path)


@pytest.fixture(scope="module")
def babel_fixture(tmp_path_factory):
    """A tiny AMASS tree (CMU and KIT subsets) and BABEL train/val JSON."""
    root = tmp_path_factory.mktemp("babel")
    amass, ann_dir = root / "amass", root / "babel"
    models = write_smplh_model(root / "models", genders=("male", "female", "neutral"))
    train, val = {}, {}
    files = [
        ("CMU/CMU/01/01_01_poses.npz", train, 60.0, 40),
        ("CMU/CMU/02/02_01_poses.npz", val, 120.0, 90),
        ("KIT/KIT/3/walk_01_poses.npz", train, 100.0, 70),
        ("KIT/KIT/4/kick_00_poses.npz", val, 100.0, 50),
    ]
    for i, (feat_p, target, fps, T) in enumerate(files):
        write_amass_npz(amass / feat_p.split("/", 1)[1], T=T, fps=fps, seed=i)
        dur = T / fps
        target[str(i)] = _seq(
            feat_p,
            dur,
            [
                {"act_cat": ["walk"], "start_t": 0.0, "end_t": dur / 2},
                {"act_cat": ["kick", "dance"], "start_t": dur / 2, "end_t": dur},
            ],
        )
    # an annotated file that is not on disk (users rarely hold all of AMASS)
    train["9"] = _seq(
        "BMLrub/BMLrub/x/y_poses.npz", 2.0, [{"act_cat": ["walk"], "start_t": 0, "end_t": 2}]
    )
    ann_dir.mkdir()
    (ann_dir / "train.json").write_text(json.dumps(train))
    (ann_dir / "val.json").write_text(json.dumps(val))
    return amass, ann_dir, models


def test_sequence_jobs_babel_and_kit(babel_fixture):
    amass, ann_dir, _ = babel_fixture
    ann = load_annotations(ann_dir)
    jobs = sequence_jobs(label_set("babel60"), ann, amass)
    assert [j.split for j in jobs] == ["train", "train", "val", "train", "val"]  # sorted by feat_p
    assert [len(j.segments) for j in jobs] == [1, 3, 3, 3, 3]  # walk; kick + dance
    kit = sequence_jobs(label_set("kit"), ann, amass, kit=True)
    assert [j.key for j in kit] == ["KIT/KIT/3/walk_01_poses.npz", "KIT/KIT/4/kick_00_poses.npz"]
    assert all(len(j.segments) == 2 for j in kit)  # dance is not a KIT class
    assert [j.split for j in kit] == [kit_split(j.key) for j in kit] == ["train", "val"]


@pytest.mark.parametrize("dataset", ["babel60", "kit"])
def test_prepare_babel_fixture_to_batch(babel_fixture, tmp_path, dataset):
    from stmt.data.cache import load_index, open_arrays
    from stmt.data.datamodule import STMTDataModule
    from stmt.data.prepare import prepare

    amass, ann_dir, models = babel_fixture
    logs = []
    r = prepare(
        dataset,
        amass,
        tmp_path / "cache",
        annotations=ann_dir,
        num_points=64,
        body="smplh",
        body_models=models,
        template_cache=tmp_path / "t",
        progress=False,
        log=logs.append,
    )
    assert r.failed == [] and r.exit_status == 0
    if dataset == "babel60":
        assert r.missing == ["BMLrub/BMLrub/x/y_poses.npz"] and "left out" in logs[0]
        # 60, 120, 100, 100 fps resampled to 30: floor((T - 1) * 30 / fps) + 1 frames
        assert r.frames == 20 + 23 + 21 + 15
    idx = load_index(tmp_path / "cache")
    assert idx.class_names == label_set(dataset) and idx.fps == 30.0
    verts, _, _ = open_arrays(tmp_path / "cache")
    assert verts.dtype == np.float16 and verts.shape == (r.frames, 64, 3)
    assert np.all(idx.sample_frame_start() + idx.sample_length <= r.frames)
    dm = STMTDataModule(str(tmp_path / "cache"), num_frames=6, batch_size=2, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert (
        batch["vertices"].shape == (2, 6, 64, 3) and batch["label"].dtype.is_floating_point is False
    )
    assert dm.geodesic.shape == (64, 64) and dm.num_classes == len(label_set(dataset))
