"""realmix: the label tables, finding the sources by name, splits, the Bandai cap,
the synthetic mix, unlabelled samples in the data module, and a small end-to-end
``stmt prepare --dataset realmix`` on real HDM05 and Bandai clips."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from stmt.cli import main as cli
from stmt.data import realmix as rm
from stmt.data.babel import BABEL_CATEGORIES
from stmt.data.cache import OTHER_ACTION, UNLABELLED, load_index, open_arrays
from stmt.data.prepare import prepare
from stmt.data.registry import label_set
from stmt.errors import InputError
from stmt.inference import Classifier

REPO = Path(__file__).resolve().parents[1]
HDM05 = Path("/work/data/hdm05")
BANDAI = Path("/work/data/bandai/dataset/Bandai-Namco-Research-Motiondataset-2/data")
BANDAI_CLIP = "dataset-2_wave-left-hand_active_011.bvh"  # 19 frames at 30 fps


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_class_list_is_the_mapped_babel60_categories_in_order():
    classes = rm.realmix_classes()
    assert classes == label_set("realmix")
    assert classes == json.loads((REPO / "datasets/realmix/labels.json").read_text())
    assert classes == [c for c in BABEL_CATEGORIES[:60] if c in set(classes)]  # BABEL order
    mapped = set(rm.BANDAI_LABELS.values()) | set(rm.HDM05_LABELS.values()) | set(rm.SYNTH_USED)
    mapped |= set(rm.KINDERGATOR_LABELS.values())
    assert set(classes) == mapped - {None, rm.OTHER}
    assert len(classes) == 17 and "dance" in classes
    assert "turn" not in classes and "hop" not in classes
    # spot checks of the tables as the README states them
    assert rm.BANDAI_LABELS["walk-turn-left"] == "walk"
    assert rm.HDM05_LABELS["hopBothLegs1hops"] == "jump"
    assert rm.BANDAI_LABELS["dash"] == "run" and rm.BANDAI_LABELS["bow"] == "bend"
    assert rm.BANDAI_LABELS["byebye"] == "wave" and rm.BANDAI_LABELS["guide"] == rm.OTHER
    assert rm.BANDAI_LABELS["dance-short"] == "dance"
    assert rm.HDM05_LABELS["rotateArmsBothBackward1Reps"] == "circular movement"
    assert rm.HDM05_LABELS["lieDownFloor"] == rm.OTHER
    assert rm.KINDERGATOR_LABELS["Wave-your-other-hand"] == "wave"
    assert rm.KINDERGATOR_LABELS["Swim"] == rm.OTHER
    readme = (REPO / "datasets/realmix/README.md").read_text()
    for table in (rm.BANDAI_LABELS, rm.HDM05_LABELS, rm.KINDERGATOR_LABELS):
        for content in table:
            assert f"`{content}`" in readme, content


def _fixture_tree(root: Path) -> None:
    """Empty files with the names of both clones (the listing reads names only)."""
    bd = root / "bandai/dataset/Bandai-Namco-Research-Motiondataset-2/data"
    for style in ("active", "normal", "youthful", "feminine"):
        _touch(bd / f"dataset-2_wave-left-hand_{style}_001.bvh")
        _touch(bd / f"dataset-2_wave-left-hand_{style}_001.json")  # ignored
    b1 = root / "bandai/dataset/Bandai-Namco-Research-Motiondataset-1/data"
    for style in ("proud", "sad", "happy"):
        _touch(b1 / f"dataset-1_walk-back_{style}_001.bvh")
    _touch(b1 / "dataset-1_guide_happy_001.bvh")  # another action
    _touch(b1 / "dataset-1_call_happy_001.bvh")  # another action, held out by content
    _touch(b1 / "dataset-1_somersault_happy_001.bvh")  # in no table: dropped
    hd = root / "hdm05"
    _touch(hd / "train/4/HDM_bd_hopBothLegs1hops_001_120.amc")
    _touch(hd / "train/4/HDM_bd_hopBothLegs1hops_001_120.amc.mat")  # ignored
    _touch(hd / "train/4/HDM_bd.asf")
    _touch(hd / "train/6/HDM_dg_lieDownFloor_002_120.amc")  # unlabelled
    _touch(hd / "test/4/HDM_tr_hopBothLegs1hops_030_120.amc")
    _touch(hd / "test/2/HDM_mm_cartwheelLHandStart1Reps_001_120.amc")  # dropped
    kg = root / "Kinder-Gator"
    _touch(kg / "Children/POSE-p103_03-Wave-your-hand-1455370172442.csv")  # test child
    _touch(kg / "Adults/POSE-p565_53-Throw-a-ball--1469183320067.csv")  # trailing '-'
    _touch(kg / "Adults/POSE-p934_20-Swim-1469183320067.csv")  # another action, val adult
    _touch(kg / "Adults/POSE-p934_21-Juggle-1469183320067.csv")  # in no table: dropped
    ut = root / "UTD-MHAD/Skeleton"
    _touch(ut / "a3_s6_t2_skeleton.mat")  # a wave of a test person: unlabelled
    _touch(ut / "a27_s8_t1_skeleton.mat")  # a squat of the other test person
    _touch(ut / "a24_s1_t1_skeleton.mat")  # sit to stand: stand up, train
    _touch(ut / "a20_s4_t1_skeleton.mat")  # a catch: another action, val
    _touch(ut / "a7_s2_t1_skeleton.mat")  # basketball shooting: unlabelled
    _touch(ut / "a28_s1_t1_skeleton.mat")  # no such action: dropped
    _touch(ut / "Skeleton_joint_order.txt")  # ignored
    ri = root / "ReActIdle"
    _touch(ri / "acted/011_acted.bvh")  # a test person
    _touch(ri / "genuine/003_genuine.bvh")
    _touch(ri / "genuine/003_acted.bvh")  # in the wrong folder: not ReActIdle's
    _touch(root / "elsewhere/README.md")
    _touch(root / "copy/dataset-1_guide_happy_001.bvh")  # a second copy: kept once


def test_listing_labels_splits_and_drops_by_file_name(tmp_path):
    _fixture_tree(tmp_path)
    listing = rm.list_realmix(tmp_path)
    clips = {c.key: c for c in listing.clips}
    assert len(clips) == 4 + 3 + 2 + 3 + 3 + 2 + 5
    utd = {
        k.split("/")[1]: (c.label, c.split, c.group) for k, c in clips.items() if "utdmhad/" in k
    }
    assert utd == {
        "a3_s6_t2_skeleton.mat": (None, "test", "s6"),
        "a27_s8_t1_skeleton.mat": ("squat", "test", "s8"),
        "a24_s1_t1_skeleton.mat": ("stand up", "train", "s1"),
        "a20_s4_t1_skeleton.mat": (rm.OTHER, "val", "s4"),
        "a7_s2_t1_skeleton.mat": (None, "train", "s2"),
    }
    assert clips["utdmhad/a20_s4_t1_skeleton.mat"].status == "other"
    assert clips["utdmhad/a7_s2_t1_skeleton.mat"].status == "unlabelled"
    assert clips["reactidle/acted/011_acted.bvh"].split == "test"
    assert (
        clips["reactidle/genuine/003_genuine.bvh"].label,
        clips["reactidle/genuine/003_genuine.bvh"].split,
    ) == ("stand", "train")
    split = {k: c.split for k, c in clips.items()}
    assert split["bandai/dataset-2_wave-left-hand_youthful_001.bvh"] == "test"
    assert split["bandai/dataset-2_wave-left-hand_feminine_001.bvh"] == "val"
    assert split["bandai/dataset-2_wave-left-hand_active_001.bvh"] == "train"
    assert split["bandai/dataset-1_walk-back_proud_001.bvh"] == "test"
    assert split["bandai/dataset-1_walk-back_sad_001.bvh"] == "val"
    assert split["bandai/dataset-1_walk-back_happy_001.bvh"] == "train"
    assert split["hdm05/train/4/HDM_bd_hopBothLegs1hops_001_120.amc"] == "train"
    assert split["hdm05/test/4/HDM_tr_hopBothLegs1hops_030_120.amc"] == "test"
    assert clips["bandai/dataset-1_guide_happy_001.bvh"].status == "other"
    assert split["bandai/dataset-1_call_happy_001.bvh"] == "test"  # by content (rm.OTHER_HELD_OUT)
    assert clips["hdm05/train/6/HDM_dg_lieDownFloor_002_120.amc"].status == "other"
    wave = clips["kindergator/Children/POSE-p103_03-Wave-your-hand-1455370172442.csv"]
    assert (wave.label, wave.split, wave.group) == ("wave", "test", "p103")
    throw = clips["kindergator/Adults/POSE-p565_53-Throw-a-ball--1469183320067.csv"]
    assert (throw.label, throw.split, throw.content) == ("throw", "train", "Throw-a-ball")
    swim = clips["kindergator/Adults/POSE-p934_20-Swim-1469183320067.csv"]
    assert (swim.status, swim.split) == ("other", "val")
    assert listing.dropped == Counter(
        {
            ("bandai", "somersault"): 1,
            ("hdm05", "cartwheelLHandStart1Reps"): 1,
            ("kindergator", "Juggle"): 1,
            ("utdmhad", "action 28"): 1,
            ("bandai", "duplicate file"): 1,
        }
    )
    # jobs: one whole-clip segment each, -1 for the unlabelled
    classes = listing.classes
    jobs = {j.key: j for j in listing.jobs()}
    hop = jobs["hdm05/train/4/HDM_bd_hopBothLegs1hops_001_120.amc"]
    assert [s.label for s in hop.segments] == [classes.index("jump")]
    assert hop.segments[0].start_t == 0 and hop.segments[0].end_t == float("inf")
    assert hop.subject == "hdm05/bd"
    assert jobs["bandai/dataset-1_guide_happy_001.bvh"].segments[0].label == OTHER_ACTION
    assert jobs["bandai/dataset-1_walk-back_sad_001.bvh"].subject == "bandai/dataset-1/sad"
    cnt = listing.counts()
    assert cnt["labelled"]["wave"] == {"train": 2, "val": 1, "test": 2}
    assert cnt["labelled"]["stand up"] == {"train": 1, "val": 0, "test": 0}
    assert cnt["sources"]["utdmhad"]["test"] == {
        "labelled": 1, "other": 0, "unlabelled": 1, "capped": 0
    }  # fmt: skip
    assert cnt["sources"]["hdm05"]["train"] == {
        "labelled": 1, "other": 1, "unlabelled": 0, "capped": 0
    }  # fmt: skip
    assert cnt["missing_sources"] == []  # every recorded source has a file in the tree
    # the same keys whether --data is the parent folder or a clone itself
    alone = rm.list_realmix(tmp_path / "hdm05")
    assert {c.key for c in alone.clips} == {k for k in clips if k.startswith("hdm05/")}
    assert alone.counts()["missing_sources"] == ["bandai", "kindergator", "utdmhad", "reactidle"]
    assert "bandai      not found" in alone.summary()


def test_no_source_under_data_is_a_clear_error(tmp_path):
    _touch(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="neither Bandai-Namco"):
        rm.list_realmix(tmp_path)


def test_bandai_train_cap_is_spread_over_styles_and_takes(tmp_path):
    d = tmp_path / "data"
    sizes = {"active": 120, "normal": 90, "elderly": 12, "masculine": 60}
    for style, n in sizes.items():
        for t in range(1, n + 1):
            _touch(d / f"dataset-2_raise-up-left-hand_{style}_{t:03d}.bvh")
    for t in range(1, 201):  # val and test styles: never capped
        _touch(d / f"dataset-2_raise-up-right-hand_feminine_{t:03d}.bvh")
        _touch(d / f"dataset-2_raise-up-right-hand_youthful_{t:03d}.bvh")
    for t in range(1, 41):  # below the cap: all kept
        _touch(d / f"dataset-2_kick_active_{t:03d}.bvh")
    listing = rm.list_realmix(d)
    raise_train = [
        c for c in listing.clips if c.label == "raising body part" and c.split == "train"
    ]
    kept = [c for c in raise_train if c.status == "labelled"]
    assert len(kept) == rm.BANDAI_TRAIN_CAP == 150
    assert sum(c.status == "capped" for c in raise_train) == sum(sizes.values()) - 150
    per_style = Counter(c.group.split("/")[1] for c in kept)
    assert per_style == {"elderly": 12, "active": 46, "masculine": 46, "normal": 46}
    takes = sorted(c.take for c in kept if c.group.endswith("active"))
    assert takes[0] <= 3 and takes[-1] >= 118  # spread over the takes, not the first 46
    assert np.ptp(np.diff(takes)) <= 1  # evenly spaced
    cnt = listing.counts()
    assert cnt["labelled"]["raising body part"] == {"train": 150, "val": 200, "test": 200}
    assert cnt["labelled"]["kick"]["train"] == 40
    assert cnt["sources"]["bandai"]["train"]["capped"] == sum(sizes.values()) - 150
    # capped clips stay in the cache, unlabelled
    labels = {j.key: j.segments[0].label for j in listing.jobs()}
    assert sorted(labels[c.key] for c in raise_train).count(UNLABELLED) == 132
    # deterministic
    again = rm.list_realmix(d)
    assert [c.status for c in again.clips] == [c.status for c in listing.clips]


def test_spread_pick_edge_cases():
    mk = lambda g, t: rm.Clip("bandai", f"{g}{t}", Path("x"), "c", g, t, "train", "wave")
    items = [mk("a", t) for t in range(10)] + [mk("b", t) for t in range(3)]
    assert rm.spread_pick(items, 20) == items  # under the cap: all
    picked = rm.spread_pick(items, 5)
    assert Counter(c.group for c in picked) == {"a": 3, "b": 2}
    assert [c.take for c in picked if c.group == "a"] == [1, 5, 8]


def test_synthetic_clips_of_the_missing_classes_keep_their_split(tmp_path):
    from stmt.data.synth import generate

    syn = tmp_path / "syn"
    generate(syn, per_class=2, seed=0, subjects=3, classes=["walk", "sit", "punch"], progress=False)
    _touch(tmp_path / "hdm05/train/1/HDM_bd_squat1Reps_001_120.amc")
    listing = rm.list_realmix(tmp_path / "hdm05", synthetic=syn)
    syn_clips = [c for c in listing.clips if c.source == "synthetic"]
    assert sorted(c.label for c in syn_clips) == ["punch", "punch", "sit", "sit"]
    assert listing.dropped == Counter({("synthetic", "walk"): 2})
    subjects = json.loads((syn / "subjects.json").read_text())
    split_of = {k: v["split"] for k, v in subjects.items()}
    for c in syn_clips:
        assert c.split == split_of[c.group] and c.status == "labelled"
        assert c.path.is_file() and c.key.startswith("synthetic/motions/")
    assert "synthetic" in listing.counts()["sources"]


def test_prepare_list_only_poses_nothing(tmp_path, capsys):
    _fixture_tree(tmp_path / "data")
    args = ["prepare", "--dataset", "realmix", "--data", str(tmp_path / "data")]
    assert cli(args + ["--out", str(tmp_path / "c"), "--list-only"]) == 0
    err = capsys.readouterr().err
    assert "labelled clips per class" in err and "dropped (content in no table" in err
    assert not (tmp_path / "c").exists()
    r = prepare("realmix", tmp_path / "data", tmp_path / "c", list_only=True, log=lambda m: None)
    assert (r.sequences, r.samples, r.posed) == (22, 22, 0)
    assert cli(args + ["--out", str(tmp_path / "c"), "--body", "smplh"]) == 2
    assert "anny only" in capsys.readouterr().err
    with pytest.raises(InputError, match="realmix only"):
        prepare("synthetic", tmp_path, tmp_path / "c", synthetic=tmp_path, list_only=True)


# ---- end to end on real HDM05 and Bandai clips (short ones: posing is ~1,000 frames/s)
CLIPS = {
    "train/4/HDM_bk_hopBothLegs1hops_020_120.amc": "train/4/HDM_bk_hopBothLegs1hops_020_120.amc",
    "train/8/HDM_bd_rotateArmsBothBackward1Reps_003_120.amc": (
        "train/8/HDM_bd_rotateArmsBothBackward1Reps_003_120.amc"
    ),
    "test/8/HDM_mm_rotateArmsBothBackward1Reps_013_120.amc": (
        "test/8/HDM_mm_rotateArmsBothBackward1Reps_013_120.amc"
    ),
    # a real hop clip under a lieDownFloor name: an unlabelled training sample
    "train/4/HDM_bd_hopBothLegs1hops_005_120.amc": "train/6/HDM_bd_lieDownFloor_005_120.amc",
}


@pytest.fixture(scope="module")
def realmix_cache(tmp_path_factory):
    if not HDM05.is_dir() or not (BANDAI / BANDAI_CLIP).is_file():
        pytest.skip(f"no HDM05 clone at {HDM05} or Bandai clone at {BANDAI}")
    root = tmp_path_factory.mktemp("realmix")
    clone = root / "data/JointLearning-HDM05"
    for src, dst in CLIPS.items():
        (clone / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(HDM05 / src, clone / dst)
        performer = Path(src).name.split("_")[1]
        shutil.copy(HDM05 / Path(src).parent / f"HDM_{performer}.asf", (clone / dst).parent)
    bandai = root / "data/Bandai-Namco-Research-Motiondataset/dataset/dataset-2/data"
    bandai.mkdir(parents=True)
    shutil.copy(BANDAI / BANDAI_CLIP, bandai)
    r = prepare(
        "realmix",
        root / "data",
        root / "cache",
        num_points=32,
        template_cache=root / "templates",
        progress=False,
        log=lambda m: None,
    )
    return root, r


def test_prepare_realmix_end_to_end_on_hdm05_clips(realmix_cache):
    root, r = realmix_cache
    assert r.exit_status == 0 and r.sequences == 5 and r.samples == 5
    idx = load_index(root / "cache")
    assert idx.meta["dataset"] == "realmix" and idx.meta["body"] == "anny"
    assert idx.class_names == rm.realmix_classes() and idx.fps == 30.0
    src = idx.meta["sequences"]["source"]
    by_src = {s: i for i, s in enumerate(src)}
    hop = by_src["hdm05/train/4/HDM_bk_hopBothLegs1hops_020_120.amc"]
    lie = by_src["hdm05/train/6/HDM_bd_lieDownFloor_005_120.amc"]
    rot = by_src["hdm05/test/8/HDM_mm_rotateArmsBothBackward1Reps_013_120.amc"]
    rot_train = by_src["hdm05/train/8/HDM_bd_rotateArmsBothBackward1Reps_003_120.amc"]
    wave = by_src[f"bandai/{BANDAI_CLIP}"]
    label = dict(zip(idx.sample_seq.tolist(), idx.sample_label.tolist()))
    split = dict(zip(idx.sample_seq.tolist(), idx.sample_split.tolist()))
    assert label == {
        hop: idx.class_names.index("jump"),
        rot: idx.class_names.index("circular movement"),
        rot_train: idx.class_names.index("circular movement"),
        lie: OTHER_ACTION,
        wave: idx.class_names.index("wave"),
    }
    assert split == {hop: "train", rot: "test", rot_train: "train", lie: "train", wave: "train"}
    # each file is one sample: the whole clip, resampled 120 -> 30 fps
    assert np.array_equal(idx.sample_start, [0] * 5)
    assert np.array_equal(idx.sample_length, idx.seq_length[idx.sample_seq])
    amc = (HDM05 / next(iter(CLIPS))).read_bytes().splitlines()
    n_src = sum(1 for ln in amc if ln.strip().isdigit())  # frame-number lines
    assert idx.seq_length[hop] == (n_src - 1) * 30 // 120 + 1
    assert idx.seq_length[wave] == 19  # Bandai is 30 fps already
    assert idx.seq_subject[hop] == "hdm05/bk"
    assert idx.seq_subject[wave] == "bandai/dataset-2/active"
    assert idx.meta["listing"]["missing_sources"] == ["kindergator", "utdmhad", "reactidle"]
    verts, centres, _ = open_arrays(root / "cache")
    h = np.ptp(verts[0, :, 2].astype(np.float32) + centres[0, 2])
    assert 1.3 < h < 2.1  # a posed, human-sized body


def test_datamodule_leaves_unlabelled_out_unless_pretraining(realmix_cache):
    from stmt.data.datamodule import STMTDataModule

    root, _ = realmix_cache
    cache = str(root / "cache")
    idx = load_index(cache)
    cls = STMTDataModule(cache, num_frames=8, num_workers=0, val_split="test")
    fit = cls.dataset("fit")
    assert len(fit) == 3 and (fit.label >= 0).all()  # hop, arm rotation, wave
    assert len(cls.dataset("test")) == 1
    pre = STMTDataModule(cache, num_frames=8, num_workers=0, val_split="test", with_unlabelled=True)
    fit_all = pre.dataset("fit")
    assert sorted(fit_all.sample_ids) == sorted(idx.split_indices("train"))
    assert OTHER_ACTION in fit_all.label.tolist()  # the lie-down clip: another action
    clips, labels = fit_all.clips(np.arange(len(fit_all)))
    assert clips.shape == (4, 8, 32, 3) and np.isfinite(clips.numpy()).all()
    assert OTHER_ACTION in labels.tolist() and len(set(labels.tolist())) == 4
    other = STMTDataModule(cache, num_frames=8, num_workers=0, val_split="test", with_other=True)
    assert min(other.dataset("fit").label.tolist()) == OTHER_ACTION
    # the 10 %-label subset draws from labelled samples only
    tenth = STMTDataModule(cache, num_frames=8, num_workers=0, train_fraction=0.1, val_split="test")
    assert (tenth.dataset("fit").label >= 0).all()


def test_realmix_configs_pretrain_then_fine_tune_on_10pct(realmix_cache, tmp_path, monkeypatch):
    """The shipped configs run on the tiny cache: pretrain (with the unlabelled clip),
    fine-tune from its checkpoint, and the from-scratch baseline."""
    root, _ = realmix_cache
    monkeypatch.chdir(tmp_path)  # the configs write runs/realmix/... relative to here
    small = [f"--data.cache={root / 'cache'}", "--data.val_split=test", "--data.num_workers=0",
             "--data.batch_size=4", "--trainer.enable_progress_bar=false"]  # fmt: skip
    configs = REPO / "datasets/realmix"
    steps = ["--trainer.max_steps=1", "--trainer.limit_val_batches=1"]
    assert cli(["fit", "--config", str(configs / "pretrain.yaml"), *small, *steps]) == 0
    assert (tmp_path / "runs/realmix/pretrain/checkpoints/last.ckpt").is_file()
    for name in (
        "fit-10pct.yaml",
        "scratch-10pct.yaml",
        "finetune.yaml",
        "fit.yaml",
        "fit-v1.yaml",
        "cross-source.yaml",
    ):
        argv = ["fit", "--config", str(configs / name), "--trainer.fast_dev_run=true", *small]
        assert cli(argv) == 0, name


def test_calibrate_writes_a_checkpoint_classify_uses(realmix_cache, tmp_path, monkeypatch, capsys):
    """`stmt calibrate` on a model the shipped recipe trained: a temperature and a
    threshold in the new checkpoint (how they were chosen recorded), a report per
    source, and `stmt classify` applying them; the checkpoint read is left as it was."""
    root, _ = realmix_cache
    monkeypatch.chdir(tmp_path)
    small = [f"--data.cache={root / 'cache'}", "--data.val_split=test", "--data.num_workers=0",
             "--data.batch_size=4", "--trainer.enable_progress_bar=false",
             "--trainer.max_steps=2", "--trainer.limit_val_batches=1"]  # fmt: skip
    assert cli(["fit", "--config", str(REPO / "datasets/realmix/fit.yaml"), *small]) == 0
    trained = tmp_path / "runs/realmix/fit/checkpoints/last.ckpt"
    before = trained.read_bytes()
    out = tmp_path / "calibrated.ckpt"
    # the tiny cache has no val split: fit on train (known clips and the lie-down clip)
    argv = ["calibrate", str(trained), "--cache", str(root / "cache"), "--val-split", "train",
            "--out", str(out)]  # fmt: skip
    capsys.readouterr()
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert "test hdm05" in printed and "unknown below a top-1 probability of" in printed
    assert trained.read_bytes() == before
    cal = torch.load(out, map_location="cpu", weights_only=False)["hyper_parameters"]["calibration"]
    assert cal["temperature"] > 0 and 0 <= cal["unknown_threshold"] <= 1
    assert cal["fitted_on"]["max_known_rate"] == 0.10
    assert cal["fitted_on"]["threshold_over"].startswith("each source's known clips of each input")
    # BVH and ASF/AMC only: motion capture's threshold, that of all together
    assert cal["unknown_thresholds"] == {"mocap": pytest.approx(cal["unknown_threshold"])}
    per_source = cal["report"]["test"]["per_source"]
    assert set(per_source) == {"hdm05"}  # the tiny cache's test clips: two HDM05 performers
    assert per_source["hdm05"]["known_clips"] == cal["report"]["test"]["known_clips"]
    clf = Classifier.from_checkpoint(out)
    assert clf.temperature == pytest.approx(cal["temperature"])
    assert clf.unknown_threshold == pytest.approx(cal["unknown_threshold"])
    assert clf.threshold_for("mocap") == pytest.approx(cal["unknown_thresholds"]["mocap"])
    same = ["calibrate", str(trained), "--cache", str(root / "cache"), "--out", str(trained)]
    assert cli(same) == 2 and trained.read_bytes() == before  # never onto the one it reads


def test_calibrate_several_checkpoints_writes_their_ensemble(
    realmix_cache, tmp_path, monkeypatch, capsys
):
    """`stmt calibrate A B`: one checkpoint whose logits are the mean of A's and B's
    (two seeds of the shipped recipe), calibrated as a whole, that classify and `stmt
    test` load; members that do not fit each other are refused with nothing written."""
    root, _ = realmix_cache
    small = [f"--data.cache={root / 'cache'}", "--data.val_split=test", "--data.num_workers=0",
             "--data.batch_size=4", "--trainer.enable_progress_bar=false",
             "--trainer.max_steps=2", "--trainer.limit_val_batches=1"]  # fmt: skip
    trained = []
    for seed in (0, 1):
        (tmp_path / f"s{seed}").mkdir()
        monkeypatch.chdir(tmp_path / f"s{seed}")
        fit = ["fit", "--config", str(REPO / "datasets/realmix/fit.yaml"), *small]
        assert cli([*fit, f"--seed_everything={seed}"]) == 0
        trained.append(tmp_path / f"s{seed}/runs/realmix/fit/checkpoints/last.ckpt")
    out = tmp_path / "ensemble.ckpt"
    argv = ["calibrate", *map(str, trained), "--cache", str(root / "cache"), "--val-split",
            "train", "--out", str(out)]  # fmt: skip
    capsys.readouterr()
    assert cli(argv) == 0
    assert "an ensemble of 2" in capsys.readouterr().out
    ens = Classifier.from_checkpoint(out)
    assert ens.temperature > 0 and ens.unknown_threshold is not None
    members = [Classifier.from_checkpoint(p) for p in trained]
    x = torch.randn(
        3, ens.num_frames, ens.num_points, 3, generator=torch.Generator().manual_seed(0)
    )
    geo = torch.rand(ens.num_points, ens.num_points)
    with torch.no_grad():
        mean = torch.stack([m.model(x, geo) for m in members]).mean(dim=0)
        assert not torch.allclose(members[0].model(x, geo), members[1].model(x, geo))
        assert torch.allclose(ens.model(x, geo), mean, atol=1e-5)
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert saved["ensemble_of"] == ["last.ckpt", "last.ckpt"]
    assert saved["hyper_parameters"]["model_args"]["members"] == 2
    monkeypatch.chdir(tmp_path)
    test = ["test", "--config", str(REPO / "datasets/realmix/fit.yaml"), *small,
            f"--ckpt_path={out}"]  # fmt: skip
    assert cli(test) == 0  # the model is built from the checkpoint's hyper-parameters
    # an ensemble may be a member (its members join); one of another class list does not fit
    three = tmp_path / "three.ckpt"
    assert cli(["calibrate", str(trained[0]), str(out), "--cache", str(root / "cache"),
                "--val-split", "train", "--out", str(three)]) == 0  # fmt: skip
    joined = torch.load(three, map_location="cpu", weights_only=True)
    assert joined["hyper_parameters"]["model_args"]["members"] == 3
    assert "scales" not in joined["hyper_parameters"]  # one window length
    for i, src in ((0, trained[0]), (1, trained[0]), (2, trained[1])):
        want = torch.load(src, map_location="cpu", weights_only=True)["state_dict"]
        w = next(k for k in want if k.startswith("model.") and want[k].is_floating_point())
        assert torch.equal(
            joined["state_dict"][w.replace("model.", f"model.members.{i}.")], want[w]
        )
    bad = tmp_path / "bad.ckpt"
    other = torch.load(trained[1], map_location="cpu", weights_only=False)
    other["hyper_parameters"]["clip"]["class_names"] = list(reversed(ens.class_names))
    torch.save(other, tmp_path / "reversed.ckpt")
    capsys.readouterr()
    argv = ["calibrate", str(trained[0]), str(tmp_path / "reversed.ckpt"), "--cache",
            str(root / "cache"), "--out", str(bad)]  # fmt: skip
    assert cli(argv) == 2
    assert "ensemble members need the same arch" in capsys.readouterr().err
    assert not bad.exists()
