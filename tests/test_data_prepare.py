"""``stmt synth`` -> ``stmt prepare`` -> STMTDataModule, end to end; failures,
resuming, and the loader's sampling, normalisation and subsets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stmt import clip
from stmt.cli import main as cli
from stmt.data import prepare as prep
from stmt.data.cache import load_index, open_arrays
from stmt.data.datamodule import CacheClips, STMTDataModule
from stmt.data.synth import generate
from tests.helpers.smpl_model import write_smplh_model

CLASSES = ["walk", "stand", "sit", "stand up", "jump"]


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("prep")
    generate(root / "syn", per_class=3, seed=1, subjects=4, classes=CLASSES, progress=False)
    models = write_smplh_model(root / "models", genders=("male", "female", "neutral"))
    return root, models


def _prepare(synth_data, out, **kw):
    root, models = synth_data
    args = {
        "num_points": 48,
        "body": "smplh",
        "body_models": models,
        "template_cache": root / "templates",
        "progress": False,
        "log": lambda m: None,
    }
    args.update(kw)
    return prep.prepare("synthetic", root / "syn", out, **args)


def test_synth_prepare_batch_end_to_end_on_anny(tmp_path, monkeypatch, capsys):
    """The default path a user takes: no SMPL files, so AMASS files are posed on anny."""
    monkeypatch.delenv("STMT_BODY_MODELS", raising=False)
    monkeypatch.setenv("STMT_CACHE_DIR", str(tmp_path / "stmt-cache"))
    syn, cache = tmp_path / "syn", tmp_path / "cache"
    assert (
        cli(
            [
                "synth",
                "--out",
                str(syn),
                "--per-class",
                "1",
                "--subjects",
                "3",
                "--classes",
                "sit,stand up,walk",
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        cli(
            [
                "prepare",
                "--dataset",
                "synthetic",
                "--data",
                str(syn),
                "--out",
                str(cache),
                "--num-points",
                "32",
                "--quiet",
                "--json",
            ]
        )
        == 0
    )
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["sequences"] == 3 and info["failed"] == 0
    assert (tmp_path / "stmt-cache" / "templates").is_dir()
    idx = load_index(cache)
    assert idx.meta["body"] == "anny" and idx.num_points == 32
    dm = STMTDataModule(str(cache), num_frames=8, batch_size=3, num_workers=0, val_split="train")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    v = batch["vertices"]
    assert v.shape == (len(dm.dataset("fit")), 8, 32, 3) and v.dtype == torch.float32
    assert batch["label"].dtype == torch.int64
    assert torch.isfinite(v).all()
    # posed bodies are human-sized: about 1.5-2 m tall before normalisation
    verts, centres, _ = open_arrays(cache)
    h = np.ptp(verts[0, :, 2].astype(np.float32) + centres[0, 2])
    assert 1.3 < h < 2.1


def test_prepare_cache_contents_and_batch(synth_data, tmp_path):
    r = _prepare(synth_data, tmp_path / "c")
    assert r.exit_status == 0 and r.sequences == 15 and r.samples == 15
    idx = load_index(tmp_path / "c")
    verts, centres, _bounds = open_arrays(tmp_path / "c")
    assert verts.shape == (r.frames, 48, 3) and centres.shape == (r.frames, 3)
    assert not (tmp_path / "c" / "shards").exists()
    subj = idx.sample_subject()
    by_split = {s: {subj[i] for i in idx.split_indices(s)} for s in ("train", "val", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert idx.window_s <= 5.0
    dm = STMTDataModule(str(tmp_path / "c"), num_frames=24, batch_size=4, num_workers=2)
    assert dm.num_classes == 15 and dm.num_points == 48 and dm.fps == 30.0  # before setup
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))  # two worker processes
    assert batch["vertices"].shape == (4, 24, 48, 3)
    assert set(batch["label"].tolist()) <= {dm.class_names.index(c) for c in CLASSES}
    val = [b["label"] for b in dm.val_dataloader()]
    assert sum(len(x) for x in val) == len(idx.split_indices("val"))


def test_corrupt_file_is_skipped_reported_and_strict_stops(synth_data, tmp_path, capsys):
    root, models = synth_data
    data = tmp_path / "syn"
    import shutil

    shutil.copytree(root / "syn", data)
    victim = sorted(data.rglob("*.npz"))[3]
    victim.write_bytes(b"this is not a zip file")
    args = [
        "prepare",
        "--dataset",
        "synthetic",
        "--data",
        str(data),
        "--num-points",
        "48",
        "--body",
        "smplh",
        "--body-models",
        str(models),
        "--quiet",
        "--json",
    ]
    assert cli(args + ["--out", str(tmp_path / "c")]) == 1
    out, err = capsys.readouterr()
    assert str(victim) in err and "skipped" in err and "1 files failed" in err
    assert json.loads(out)["sequences"] == 14
    idx = load_index(tmp_path / "c")
    assert [f["path"] for f in idx.meta["failed"]] == [str(victim)]
    assert len(idx.sample_label) == 14
    assert cli(args + ["--out", str(tmp_path / "s"), "--strict"]) == 2
    assert str(victim) in capsys.readouterr().err
    assert not (tmp_path / "s" / "index.json").exists()


def test_odd_input_is_cached_with_a_warning_naming_the_file(synth_data, tmp_path, capsys):
    """A file whose root travels 1000x too far (a path in millimetres) is posed and cached,
    with one warning line naming it, as ``stmt classify`` warns; the others say nothing."""
    import shutil

    root, models = synth_data
    data = tmp_path / "syn"
    shutil.copytree(root / "syn", data)
    victim = sorted(data.rglob("*.npz"))[2]
    with np.load(victim) as z:
        motion = dict(z)
    motion["trans"] = motion["trans"] * 1000 + np.linspace(0, 1000, len(motion["trans"]))[:, None]
    np.savez(victim, **motion)
    args = ["prepare", "--dataset", "synthetic", "--data", str(data), "--num-points", "48",
            "--body", "smplh", "--body-models", str(models), "--quiet", "--out", str(tmp_path / "c")]  # fmt: skip
    assert cli(args) == 0
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("stmt prepare: warning: ") and ".npz" in x]
    assert len(lines) == 1 and str(victim) in lines[0] and "faster than anyone runs" in lines[0]
    assert "1 files were cached with a warning" in err
    assert len(load_index(tmp_path / "c").sample_label) == 15  # still cached


def test_killed_prepare_resumes_without_redoing_finished_files(synth_data, tmp_path, monkeypatch):
    import stmt.reading

    real = stmt.reading.read_sequence
    calls = []

    def counting(path, **kw):
        calls.append(path)
        if len(calls) == 6 and not killed_once:
            raise KeyboardInterrupt  # the run is killed mid-way
        return real(path, **kw)

    monkeypatch.setattr(stmt.reading, "read_sequence", counting)
    killed_once = False
    with pytest.raises(KeyboardInterrupt):
        _prepare(synth_data, tmp_path / "c")
    shards = sorted((tmp_path / "c" / "shards").glob("*.npz"))
    assert len(shards) == 5 and not (tmp_path / "c" / "index.json").exists()
    mtimes = {p: p.stat().st_mtime_ns for p in shards}
    killed_once, calls[:] = True, []
    r = _prepare(synth_data, tmp_path / "c")
    assert len(calls) == 10 and r.posed == 10  # only the 10 files not yet done
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items() if p.exists())
    calls[:] = []
    r2 = _prepare(synth_data, tmp_path / "c")  # a finished cache: nothing to pose
    assert calls == [] and r2.frames == r.frames
    full = _prepare(synth_data, tmp_path / "full")  # the same as an uninterrupted run
    a, b = open_arrays(tmp_path / "c"), open_arrays(tmp_path / "full")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert (
        load_index(tmp_path / "c").meta["samples"] == load_index(tmp_path / "full").meta["samples"]
    )
    assert full.exit_status == 0


def test_resample_linear():
    v = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)  # (5, 2, 3)
    out = clip.resample(v, 60.0, 30.0)
    np.testing.assert_allclose(out[:, 0, 0], [0, 2, 4])
    out = clip.resample(v, 30.0, 60.0)
    np.testing.assert_allclose(out[:, 0, 0], np.arange(9) / 2)
    assert clip.resample(v, 30.0, 30.0) is v


def test_train_fraction_is_stratified_and_deterministic(synth_data, tmp_path):
    _prepare(synth_data, tmp_path / "c")
    dms = [
        STMTDataModule(str(tmp_path / "c"), num_workers=0, train_fraction=f, seed=seed)
        for f, seed in ((1.0, 0), (0.1, 3), (0.1, 3), (0.1, 4))
    ]
    labels = np.repeat(np.arange(4), [50, 30, 10, 3])  # imbalanced classes
    for dm in dms:
        dm.index.sample_label = labels
    ids = np.arange(len(labels))
    full, a, b, c = (dm.samples.labelled_subset(ids) for dm in dms)
    np.testing.assert_array_equal(full, ids)
    np.testing.assert_array_equal(a, b)  # same seed, same subset
    assert not np.array_equal(a, c)
    assert np.bincount(labels[a]).tolist() == [5, 3, 1, 1]  # ceil(10 %), at least one
    real = dms[1].dataset("fit")  # on the cache itself: every class keeps a sample
    assert set(real.label) == set(dms[0].dataset("fit").label)


def test_eval_clips_are_deterministic_and_augmentation_switches(synth_data, tmp_path):
    _prepare(synth_data, tmp_path / "c")
    dm = STMTDataModule(str(tmp_path / "c"), num_frames=8, num_workers=0)
    ev = dm.dataset("validate")
    x1, _ = ev.clips([0, 1])
    x2, _ = ev.clips([0, 1])
    np.testing.assert_array_equal(x1, x2)
    # (that these are the clips inference makes of the same frames: tests/test_clip.py)
    plain = STMTDataModule(str(tmp_path / "c"), num_frames=8, num_workers=0, augment=False)
    assert plain.augment_args == {}
    only_rot = STMTDataModule(
        str(tmp_path / "c"), num_frames=8, num_workers=0, tilt=False, scale=False, jitter=False
    )
    assert only_rot.augment_args == {"rotate_range": 0.7}
    tr = only_rot.dataset("fit")
    tr_plain = plain.dataset("fit")
    tr._open(), tr_plain._open()
    tr._rng = np.random.default_rng(0)
    tr_plain._rng = np.random.default_rng(0)
    a, _ = tr.clips([0])
    b, _ = tr_plain.clips([0])
    # a rotation about the vertical axis keeps heights and horizontal norms
    np.testing.assert_allclose(a[..., 2], b[..., 2], atol=1e-5)
    np.testing.assert_allclose(
        np.linalg.norm(a[..., :2], axis=-1), np.linalg.norm(b[..., :2], axis=-1), atol=1e-5
    )
    assert not np.allclose(a, b)
    jit = STMTDataModule(
        str(tmp_path / "c"), num_frames=8, num_workers=0, rotate=False, tilt=False, scale=False
    ).dataset("fit")
    jit._open()
    jit._rng = np.random.default_rng(0)
    c, _ = jit.clips([0])
    noise = (c - b).numpy()
    assert noise.std() == pytest.approx(0.007, rel=0.1) and np.abs(noise).max() <= 0.04 + 1e-6


def test_class_balance_draws_small_classes_as_often_as_large_ones(synth_data, tmp_path):
    _prepare(synth_data, tmp_path / "c")
    labels = np.repeat(np.arange(3), [90, 9, 1])  # 90 : 9 : 1
    ds = CacheClips(tmp_path / "c", np.arange(100), np.zeros(100), np.ones(100), labels, 4, True)
    counts = {}
    for b in (0.0, 1.0):
        dm = STMTDataModule(str(tmp_path / "c"), num_workers=0, class_balance=b)
        sampler = dm.samples.balanced_sampler(ds.label, ds.sample_ids) if b > 0 else None
        if sampler is None:
            assert dm._loader("fit", shuffle=True).sampler.__class__.__name__ == "RandomSampler"
            continue
        drawn = np.concatenate([labels[list(sampler)] for _ in range(40)])  # 4,000 draws
        counts[b] = np.bincount(drawn, minlength=3) / len(drawn)
        assert len(list(sampler)) == 100  # an epoch is as long as the data
    np.testing.assert_allclose(counts[1.0], [1 / 3] * 3, atol=0.04)
    with pytest.raises(ValueError, match="class_balance"):
        STMTDataModule(str(tmp_path / "c"), num_workers=0, class_balance=2.0)
