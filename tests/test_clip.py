"""The one clip pipeline (:mod:`stmt.clip`): training and inference make the same clips."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stmt import clip
from stmt.clip import ClipSettings
from stmt.data import prepare as prep
from stmt.data.datamodule import CacheClips, STMTDataModule
from stmt.data.synth import generate
from stmt.inference import Classifier
from stmt.reading import read_sequence
from tests.helpers.smpl_model import write_smplh_model


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A small synthetic cache (fake SMPL+H files) at 24 fps (the files are 30 fps: clips
    interpolate between their frames), its data folder and model folder."""
    root = tmp_path_factory.mktemp("clip")
    generate(
        root / "syn", per_class=2, seed=3, subjects=3, classes=["walk", "jump"], progress=False
    )
    models = write_smplh_model(root / "models", genders=("male", "female", "neutral"))
    prep.prepare(
        "synthetic", root / "syn", root / "cache", num_points=48, fps=24.0, body="smplh",
        body_models=models, template_cache=root / "templates", progress=False, log=lambda m: None,
    )  # fmt: skip
    return root / "cache", root / "syn", models


def _source_file(data: Path, key: str) -> Path:
    path = data / key
    return path if path.is_file() else next(data.rglob(Path(key).name))


def _eval_clips(cache: Path):
    """The DataModule and an evaluation-mode dataset of every sample of the cache."""
    dm = STMTDataModule(str(cache), num_frames=8, num_workers=0)
    ids = np.arange(len(dm.index.sample_label))
    ds = CacheClips(
        cache, ids, dm.index.sample_frame_start(), dm.index.sample_length,
        dm.index.sample_label, 8, train=False, augment=dm.augment_args,
    )  # fmt: skip
    return dm, ds


def test_training_sample_and_inference_window_are_bit_identical(prepared):
    """Every evaluation clip the DataModule makes equals, bit for bit, the clip the
    inference path makes of the same frames of the file, read afresh."""
    cache, data, models = prepared
    dm, ds = _eval_clips(cache)
    x, _ = ds.clips(np.arange(len(ds)))  # (B, 8, 48, 3)
    sources = dm.index.meta["sequences"]["source"]
    checked = 0
    for i, sid in enumerate(ds.sample_ids):
        s = int(dm.index.sample_seq[sid])
        seq = read_sequence(
            _source_file(data, sources[s]), body="smplh", body_models=models,
            vertex_ids=dm.template.vertex_ids,
        )  # fmt: skip
        start, length = int(dm.index.sample_start[sid]), int(dm.index.sample_length[sid])
        win = clip.Windows(np.array([start]), np.array([length]), dm.fps, seq.duration)
        y = clip.clip_inputs(seq.vertices, seq.fps, dm.fps, win.grid_frames(8))
        assert y.dtype == np.float32 and y.shape == (1, 8, 48, 3)
        np.testing.assert_array_equal(x[i].numpy(), y[0])
        checked += 1
    assert checked >= 2
    # and not trivially: another sample's clip differs
    assert not np.array_equal(x[0].numpy(), x[1].numpy())


def test_classifier_takes_a_file_as_one_whole_clip_like_training(prepared):
    """A Classifier whose clip_s covers the file makes the training clip of a sample
    that spans a whole file; with clip_s None it cuts windows instead."""
    import torch

    from stmt.model.stmt import build_model

    cache, data, models = prepared
    dm, ds = _eval_clips(cache)
    x, _ = ds.clips(np.arange(len(ds)))
    sources = dm.index.meta["sequences"]["source"]
    args = {"num_classes": 2, "num_frames": 8, "num_points": 48, "centers1": 16, "centers2": 8}
    model = build_model("stmt_tiny", **args)
    for i, sid in enumerate(ds.sample_ids):
        s = int(dm.index.sample_seq[sid])
        whole = dm.index.sample_start[sid] == 0 and (
            dm.index.sample_length[sid] == dm.index.seq_length[s]
        )
        if not whole:
            continue
        settings = ClipSettings(["walk", "jump"], 8, 48, dm.fps, window_s=0.5, clip_s=dm.clip_s)
        clf = Classifier(model, settings)
        path = _source_file(data, sources[s])
        item = clf.read(path, body="smplh", body_models=models)
        assert len(item.windows) == 1 and item.spans == [(0.0, item.duration_s)]
        np.testing.assert_array_equal(item.clips[0], x[i].numpy())
        windowed = Classifier(model, ClipSettings(["walk", "jump"], 8, 48, dm.fps, window_s=0.5))
        assert (
            len(windowed.preprocess(read_sequence(path, body="smplh", body_models=models)).windows)
            > 1
        )
        assert torch.is_tensor(torch.as_tensor(item.clips))
        return
    pytest.fail("no sample spans a whole file")


def test_fixed_windows_training_and_inference_make_the_same_clips(prepared):
    """With fixed windows (every clip covers window_s seconds) the evaluation clip of a
    sample shorter than a window (centred, its ends held) and of a longer one (its centre
    window) equal, bit for bit, the clips the inference path makes of those frames; a
    Classifier of a fixed-window checkpoint cuts a short file into that one padded clip."""
    from stmt.model.stmt import build_model

    cache, data, models = prepared
    dm = STMTDataModule(str(cache), num_frames=8, num_workers=0, window=True)
    assert dm.fixed_window and dm.clip_s is None
    W = round(dm.window_s * dm.fps)
    ids = np.arange(len(dm.index.sample_label))
    ds = CacheClips(
        cache, ids, dm.index.sample_frame_start(), dm.index.sample_length,
        dm.index.sample_label, 8, train=False, augment=dm.augment_args, window=W,
    )  # fmt: skip
    x, _ = ds.clips(ids)
    args = {"num_classes": 2, "num_frames": 8, "num_points": 48, "centers1": 16, "centers2": 8}
    clf = Classifier(
        build_model("stmt_tiny", **args),
        ClipSettings(["walk", "jump"], 8, 48, dm.fps, window_s=dm.window_s, fixed_window=True),
    )
    sources = dm.index.meta["sequences"]["source"]
    kinds = set()
    for i, sid in enumerate(ids):
        s = int(dm.index.sample_seq[sid])
        path = _source_file(data, sources[s])
        seq = read_sequence(
            path, body="smplh", body_models=models, vertex_ids=dm.template.vertex_ids
        )
        start, length = int(dm.index.sample_start[sid]), int(dm.index.sample_length[sid])
        if length <= W:
            win = clip.Windows(np.array([start]), np.array([length]), dm.fps, seq.duration, span=W)
            kinds.add("short")
            if start == 0 and length == dm.index.seq_length[s]:  # the whole file
                item = clf.preprocess(read_sequence(path, body="smplh", body_models=models))
                assert len(item.windows) == 1
                np.testing.assert_array_equal(item.clips[0], x[i].numpy())
                kinds.add("file")
        else:
            centre = start + (length - W + 1) // 2
            win = clip.Windows(np.array([centre]), np.array([W]), dm.fps, seq.duration, span=W)
            kinds.add("long")
        y = clip.clip_inputs(seq.vertices, seq.fps, dm.fps, win.grid_frames(8))
        np.testing.assert_array_equal(x[i].numpy(), y[0])
    assert kinds == {"short", "long", "file"}, kinds


def test_fixed_window_frames():
    """Fixed windows of 10 frames, T = 5: a 4-frame span sits in the middle, its ends held;
    a 30-frame span gives its centre window (evaluation) or one inside it (training); a
    10-frame span gives what plain bins give."""
    np.testing.assert_array_equal(clip.bin_frames([4], 5, window=10), [[0, 0, 2, 3, 3]])
    np.testing.assert_array_equal(clip.bin_frames([30], 5, window=10), [[11, 13, 15, 17, 19]])
    np.testing.assert_array_equal(clip.bin_frames([10], 5, window=10), clip.bin_frames([10], 5))
    rng = np.random.default_rng(0)
    f = clip.bin_frames(np.full(500, 30), 5, rng, window=10)
    assert f.min() >= 0 and f.max() <= 29 and np.all(f[:, -1] - f[:, 0] < 10)
    assert len(np.unique(f[:, 0])) > 15, "windows are placed anywhere in the span"
    short = clip.bin_frames(np.full(200, 4), 5, rng, window=10)
    assert short.min() == 0 and short.max() == 3


# --------------------------------------------------------------------------- windows
@settings(max_examples=200, deadline=None)
@given(
    frames=st.integers(1, 2000),
    window=st.floats(0.1, 10.0),
    stride_frac=st.floats(0.05, 1.0),
)
def test_windows_cover_the_whole_sequence(frames, window, stride_frac):
    fps = 30.0
    stride = window * stride_frac
    w = clip.plan_windows(frames, fps, fps, clip_s=None, window=window, stride=stride)
    spans = w.spans
    assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(frames / fps)
    reach = 0.0
    for s, e in spans:
        assert s <= reach + 1e-9, f"gap between {reach} and {s}"
        reach = max(reach, e)
    length, step = clip.window_lengths(fps, window, stride)
    if frames <= length:
        assert len(w) == 1 and w.length[0] == frames
    else:
        assert (w.length == length).all()
        assert len(w) == clip.count_windows(frames, length, step)
        assert all(0 < b - a <= step for a, b in itertools.pairwise(w.start))
    grid = w.grid_frames(24)
    assert grid.min() >= 0 and grid.max() < frames


def test_window_examples():
    spans = clip.plan_windows(300, 30.0, 30.0, clip_s=None, window=2.0, stride=1.0).spans
    assert spans[:2] == [(0.0, 2.0), (1.0, 3.0)] and spans[-1] == (8.0, 10.0) and len(spans) == 9
    two = clip.plan_windows(75, 30.0, 30.0, clip_s=None, window=2.0, stride=1.0).spans
    assert two == [(0.0, 2.0), (0.5, 2.5)]
    assert clip.plan_windows(45, 30.0, 30.0, clip_s=None, window=2.0, stride=1.0).spans == [
        (0.0, 1.5)
    ]
    # whole clips up to clip_s, windows beyond it
    assert len(clip.plan_windows(480, 30.0, 30.0, clip_s=16.0, window=2.0, stride=1.0)) == 1
    assert len(clip.plan_windows(481, 30.0, 30.0, clip_s=16.0, window=2.0, stride=1.0)) == 16
    # a 120 fps file is cut on the 30 fps grid: 121 frames -> 31 grid frames
    w = clip.plan_windows(121, 120.0, 30.0, clip_s=16.0, window=2.0, stride=1.0)
    assert w.length.tolist() == [31] and w.spans == [(0.0, 121 / 120)]


def test_bin_frames():
    assert clip.bin_frames(np.array([30]), 3).tolist() == [[5, 15, 25]]  # bin centres
    # a span shorter than T repeats its frames, never runs past the end
    assert clip.bin_frames(np.array([4]), 8).tolist() == [[0, 0, 1, 1, 2, 2, 3, 3]]
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = clip.bin_frames(np.array([240]), 24, rng)[0]
        assert np.all((r >= np.arange(24) * 10) & (r < np.arange(24) * 10 + 10))


def test_grid_interpolates_between_source_frames():
    v = np.arange(9, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)  # (9, 2, 3)
    assert clip.grid_length(9, 120.0, 30.0) == 3
    np.testing.assert_array_equal(clip.resample(v, 120.0, 30.0)[:, 0, 0], [0, 4, 8])
    np.testing.assert_array_equal(clip.frames_at(v, np.array([1]), 30.0, 60.0)[:, 0, 0], [0.5])
    assert clip.source_frames(np.array([1]), 30.0, 60.0, 9).tolist() == [0, 1]
    assert clip.resample(v, 30.0, 30.0) is v


def test_normalise_puts_the_clip_on_the_floor_scaled_by_height():
    rng = np.random.default_rng(0)
    frames = (rng.normal(size=(10, 40, 3)) * [0.3, 0.3, 0.5] + [7, -3, 0.9]).astype(np.float32)
    c = clip.clip_inputs(frames, 30.0, 30.0, np.arange(10)[None])[0]  # (10, 40, 3)
    assert c[..., 2].min() == pytest.approx(0, abs=1e-3)  # on the floor
    lo, hi = c[..., :2].min(axis=(0, 1)), c[..., :2].max(axis=(0, 1))
    np.testing.assert_allclose(lo + hi, 0, atol=1e-3)  # centred in x, y
    ext = c[..., 2].max(axis=1) - c[..., 2].min(axis=1)  # per-frame height
    assert ext.max() == pytest.approx(1.0, rel=1e-3)


def test_nearest_window():
    spans = [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]  # centres 1, 2, 3
    idx = clip.nearest_window(np.array([0.1, 1.49, 1.5, 1.51, 2.6, 3.9]), spans)
    assert idx.tolist() == [0, 0, 0, 1, 2, 2]
    cuts = clip.window_cuts(spans, 4.0)
    np.testing.assert_allclose(cuts, [0.0, 1.5, 2.5, 4.0])
