"""Training on some sources and testing on others: source and split selection, the
crop / speed draws that take away the clip-length shortcut, source balance, samples of
other actions (label -2) and the classifier's outlier loss on them.

The cache is written by hand: three sources ("a", "b", "s") of 1-D "motions" whose
vertices move with the frame index, so which frames a clip shows can be read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stmt import clip as clip_rules
from stmt.data.cache import CACHE_FORMAT, CACHE_VERSION, OTHER_ACTION, UNLABELLED, describe_files
from stmt.data.datamodule import STMTDataModule
from stmt.template import Template

N = 8  # points per frame
# (source/subject, split, label, frames)
SEQS = [
    ("a/p1", "train", 0, 200), ("a/p1", "train", 1, 30), ("a/p2", "test", 0, 40),
    ("a/p2", "train", OTHER_ACTION, 50), ("a/p3", "val", 1, 60),
    ("b/q1", "train", 0, 20), ("b/q1", "train", 0, 25), ("b/q2", "test", 1, 90),
    ("b/q2", "train", UNLABELLED, 30), ("s/x", "train", 1, 100), ("s/x", "val", 0, 33),
]  # fmt: skip


def write_cache(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    total = sum(n for *_, n in SEQS)
    frame = np.arange(total, dtype=np.float32)
    rest = np.random.default_rng(0).normal(size=(N, 3)).astype(np.float32) * 0.2
    rest[:, 2] += 0.9  # a body-sized blob above the floor
    verts = np.broadcast_to(rest - rest.mean(0), (total, N, 3)).astype(np.float16)
    centres = np.stack([frame * 1e-3, np.zeros(total), np.full(total, 0.9)], 1).astype(np.float32)
    world = verts.astype(np.float32) + centres[:, None]
    bounds = np.stack([world.min(1), world.max(1)], 1).astype(np.float32)
    np.save(root / "vertices.npy", verts)
    np.save(root / "centres.npy", centres)
    np.save(root / "bounds.npy", bounds)
    Template(np.arange(N), np.ones((N, N), np.float32) - np.eye(N, dtype=np.float32),
             rest, "k").save(root / "template.npz")  # fmt: skip
    offsets = np.cumsum([0] + [n for *_, n in SEQS[:-1]]).tolist()
    meta = {
        "format": CACHE_FORMAT, "version": CACHE_VERSION, "dataset": "realmix",
        "class_names": ["walk", "wave"], "fps": 30.0, "num_points": N, "window_s": 2.0,
        "chunk_s": 5.0, "num_frames_total": total,
        "sequences": {"source": [f"f{i}" for i in range(len(SEQS))], "offset": offsets,
                      "length": [n for *_, n in SEQS], "split": [s for _, s, _, _ in SEQS],
                      "subject": [s for s, *_ in SEQS]},
        "samples": {"sequence": list(range(len(SEQS))), "start": [0] * len(SEQS),
                    "length": [n for *_, n in SEQS], "label": [lab for _, _, lab, _ in SEQS],
                    "split": [s for _, s, _, _ in SEQS]},
    }  # fmt: skip
    meta["files"] = describe_files(root)
    (root / "index.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(write_cache(tmp_path_factory.mktemp("sources") / "cache"))


def test_sources_and_joined_splits_select_samples(cache):
    dm = STMTDataModule(cache, num_frames=4, num_workers=0, train_sources=["a", "s"],
                        test_sources=["b"], test_split="train+test")  # fmt: skip
    assert dm.dataset("fit").sample_ids.tolist() == [0, 1, 9]  # labelled a, s train samples
    assert dm.dataset("test").sample_ids.tolist() == [5, 6, 7]  # b, both splits, labelled
    assert dm.index.sample_source().tolist()[:6] == ["a"] * 5 + ["b"]
    other = STMTDataModule(cache, num_frames=4, num_workers=0, with_other=True)
    assert 3 in other.dataset("fit").sample_ids  # the other action
    assert 8 not in other.dataset("fit").sample_ids  # unlabelled: pretraining only
    pre = STMTDataModule(cache, num_frames=4, num_workers=0, with_unlabelled=True)
    assert {3, 8} <= set(pre.dataset("fit").sample_ids.tolist())


def test_window_s_overrides_the_cache(cache):
    assert STMTDataModule(cache, window=True).window_s == 2.0
    dm = STMTDataModule(cache, window=True, window_seconds=1.0, num_workers=0)
    assert dm.window_s == 1.0 and dm.dataset("fit").window == 30
    with pytest.raises(ValueError, match="window_seconds"):
        STMTDataModule(cache, window_seconds=0.0)


def test_draw_spans_crop_and_speed():
    rng = np.random.default_rng(0)
    length = np.array([200, 200, 30, 30] * 500)
    start, part, cover = clip_rules.draw_spans(length, 60, rng, crop=0.5, crop_min=0.4,
                                               speed=(0.8, 1.25))  # fmt: skip
    assert ((start >= 0) & (start + part <= length)).all()
    cut = part < length
    assert 0.4 < cut.mean() < 0.6  # about half the clips are cropped
    most = np.minimum(length, np.round(cover))
    assert (part[cut] >= np.floor(0.4 * most[cut]) - 1).all() and (part <= length).all()
    # a long sample's crop is never longer than the window it is shown in: it gets padded
    assert (part[cut & (length == 200)] <= np.round(cover[cut & (length == 200)])).all()
    assert (cover >= 60 * 0.8 - 1e-9).all() and (cover <= 60 * 1.25 + 1e-9).all()
    assert np.log(cover / 60).mean() == pytest.approx(0.0, abs=0.02)  # log-uniform
    # off: the whole sample, the window as it is
    s0, p0, c0 = clip_rules.draw_spans(length, 60, rng)
    assert (s0 == 0).all() and (p0 == length).all() and (c0 == 60).all()


def test_cropped_clips_are_padded_as_inference_pads_a_short_file(cache):
    """A crop shorter than the window: its frames sit in the middle, the ends held, as
    stmt.clip.plan_windows + bin_frames cut a short file."""
    dm = STMTDataModule(cache, num_frames=12, num_workers=0, window=True, crop=1.0,
                        crop_min=0.1, augment=True, rotate=False, tilt=False, scale=False,
                        jitter=False, mirror=False)  # fmt: skip
    ds = dm.dataset("fit")
    ds._open()
    rng = np.random.default_rng(5)
    ds._rng = rng
    length = ds.length[:1].repeat(200)
    _, part, cover = clip_rules.draw_spans(length, ds.window, np.random.default_rng(5),
                                               **ds.draw)  # fmt: skip
    frames = clip_rules.bin_frames(part, 12, np.random.default_rng(6), cover)
    short = part < cover
    assert short.any()
    for f, p in zip(frames[short], part[short]):
        assert f.min() >= 0 and f.max() <= p - 1
        assert f[0] == 0 or p == 1 or f[0] >= 0  # held at its first frame before it
    # the data module's clips move only within the crop (x = frame * 1e-3 before scaling)
    clips, _ = ds.clips(np.zeros(64, np.int64))
    assert torch.isfinite(clips).all()


def test_speed_changes_how_much_time_a_clip_covers(cache):
    """At speed s a clip spans window * s frames of its sample: the distance travelled
    from first to last frame grows with s."""
    spans = []
    for s in (0.5, 1.0, 1.5):
        dm = STMTDataModule(cache, num_frames=8, num_workers=0, window=True, window_seconds=2.0,
                            speed_min=s, speed_max=s, augment=True, rotate=False, tilt=False,
                            scale=False, jitter=False, mirror=False, train_sources=["a"])  # fmt: skip
        ds = dm.dataset("fit")
        ds._open()
        x, _ = ds.clips(np.zeros(32, np.int64))  # sample 0: 200 frames, longer than 60
        spans.append(float((x[:, -1, :, 0] - x[:, 0, :, 0]).mean()))
    assert spans[0] < spans[1] < spans[2]


def test_source_balance_shares_a_class_among_its_sources(cache):
    dm = STMTDataModule(cache, num_frames=4, num_workers=0, class_balance=1.0,
                        source_balance=True)  # fmt: skip
    ds = dm.dataset("fit")
    weights = dm.samples.balanced_sampler(ds.label, ds.sample_ids).weights.numpy()
    src = dm.index.sample_source()[ds.sample_ids]
    w = {}
    for lab, s, wt in zip(ds.label, src, weights):
        w[(int(lab), s)] = w.get((int(lab), s), 0.0) + wt
    # class 0: sources a (1 sample) and b (2 samples) get the same share
    assert w[(0, "a")] == pytest.approx(w[(0, "b")])
    assert w[(0, "a")] + w[(0, "b")] == pytest.approx(w[(1, "a")] + w[(1, "s")])


def test_outlier_loss_spreads_probability_on_other_actions():
    from stmt.clip import ClipSettings
    from stmt.engine.classifier import ClassificationModule

    torch.manual_seed(0)
    args = {"num_frames": 4, "num_points": 32, "centers1": 8, "centers2": 4}
    kw = {"clip": ClipSettings(("a", "b", "c"), num_frames=4, num_points=32), "model_args": args}
    plain = ClassificationModule(**kw)
    oe = ClassificationModule(**kw, other_weight=0.5)
    oe.load_state_dict(plain.state_dict())
    x = torch.randn(4, 4, 32, 3)
    batch = {"vertices": x, "label": torch.tensor([0, 1, OTHER_ACTION, OTHER_ACTION])}
    geo = torch.rand(32, 32)
    for m in (plain, oe):
        m.geodesic = geo
        m.log = lambda *a, **k: None  # no trainer here
        m.eval()  # the same logits in each call (batch norm's running statistics)
    logits = plain(x)
    ce = torch.nn.functional.cross_entropy(logits[:2], torch.tensor([0, 1]))
    uniform = -torch.log_softmax(logits[2:], -1).mean()
    assert plain.training_step(batch, 0).item() == pytest.approx(ce.item(), rel=1e-5)
    assert oe.training_step(batch, 0).item() == pytest.approx((ce + 0.5 * uniform).item(), rel=1e-5)
    with pytest.raises(ValueError, match="other_weight"):
        ClassificationModule(**kw, other_weight=-1.0)


def test_class_balance_min_draws_a_tiny_class_less(cache):
    """Class 0 has 3 training samples, class 1 two: with a minimum count of 6 both are
    weighted as if they had 6, so each sample's weight is 1/6 and the classes are drawn
    in proportion to their sizes."""
    plain = STMTDataModule(cache, num_frames=4, num_workers=0, class_balance=1.0)
    floor = STMTDataModule(cache, num_frames=4, num_workers=0, class_balance=1.0,
                           class_balance_min=6)  # fmt: skip
    ds = plain.dataset("fit")
    w_plain = plain.samples.balanced_sampler(ds.label, ds.sample_ids).weights.numpy()
    w_floor = floor.samples.balanced_sampler(ds.label, ds.sample_ids).weights.numpy()
    counts = {c: int((ds.label == c).sum()) for c in (0, 1)}
    assert counts == {0: 3, 1: 2}
    np.testing.assert_allclose(w_plain, [1 / counts[c] for c in ds.label])
    np.testing.assert_allclose(w_floor, 1 / 6)
