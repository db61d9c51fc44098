"""After training: a softmax temperature and an "unknown" rule, fitted on held-out clips.

``stmt calibrate CKPT --cache CACHE --out NEW.ckpt`` (:func:`calibrate`) runs a trained
classifier on a cache's clips cut exactly as ``stmt classify`` cuts a file (fixed
windows every half window, the probabilities of a sample's windows averaged), then

1. **temperature**: the T > 0 that minimises the negative log-likelihood of the
   validation clips' labels under ``softmax(logits / T)`` (Guo et al., ICML 2017),
   so that a probability of 0.8 is right about 80 % of the time;
2. **unknown rule**: a sample is "unknown" when its calibrated top-1 probability is
   below a threshold: the largest that flags at most ``max_known_rate`` (default 10 %)
   of the known clips (:func:`choose_threshold`) of **each source** with at least
   :data:`MIN_SOURCE_CLIPS` of them (:func:`choose_threshold_per_source`), which is the
   one that flags the most clips of actions the model was not trained on (label -2,
   ``OTHER_ACTION``) that this allows. A model is less sure on people and sensors
   unlike most of its data, and a rule fitted on all clips together, most of them
   from the source it knows best, calls a third or more of a new source's known clips
   unknown. One threshold per **input kind** (:func:`choose_threshold_by_kind`): motion
   capture, and joint positions a sensor tracked (a Kinect's CSV or MAT files,
   :func:`stmt.io.detect.input_kind`), which the model is least sure on; one threshold
   for both, set by the Kinect sources, let most motion-capture clips of other actions
   pass. A cache without other-action clips (BABEL's) gets the same rule; only its
   AUROC cannot be measured;
3. **report** on the test split: expected calibration error before and after,
   the rule's AUROC (other actions vs known clips, where there are any), and the
   share flagged of each.

The result goes into the checkpoint's ``hyper_parameters["calibration"]`` (plain
data), which :class:`stmt.inference.Classifier` reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stmt.clip import scale_mix
from stmt.data.cache import OTHER_ACTION
from stmt.data.datamodule import CacheClips, STMTDataModule
from stmt.errors import InputError
from stmt.inference import Classifier

#: Score of the "unknown" rule: the calibrated top-1 probability of a sample.
SCORE = "max_prob"
#: A source with fewer known clips in the split does not set the threshold on its own.
MIN_SOURCE_CLIPS = 20


# --------------------------------------------------------------------------- the maths
def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (float64)."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / T)``."""
    p = softmax(logits, temperature)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(p, 1e-300))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, 20] minimising :func:`nll` (a log-spaced grid, then a
    golden-section search around its best point; the NLL is convex in 1/T)."""
    if len(labels) == 0:
        return 1.0
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 61))
    losses = [nll(logits, labels, t) for t in grid]
    i = int(np.argmin(losses))
    lo, hi = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(40):
        if nll(logits, labels, math.exp(a)) < nll(logits, labels, math.exp(b)):
            hi = b
        else:
            lo = a
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    return float(math.exp((lo + hi) / 2))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between top-1 probability and accuracy over
    ``bins`` equal-width confidence bins (Guo et al. 2017)."""
    if len(labels) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    hit = (probs.argmax(axis=1) == labels).astype(np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(hit[sel].mean() - conf[sel].mean())
    return float(total)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of telling ``positive`` scores from ``negative`` ones
    (higher = more positive): the Mann-Whitney probability, ties counted half."""
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    both = np.concatenate([pos, neg])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for value in np.unique(both):  # average ranks of ties
        tie = both == value
        ranks[tie] = ranks[tie].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def choose_threshold(known: np.ndarray, other: np.ndarray, max_known_rate: float = 0.05) -> float:
    """The "unknown" threshold on the top-1 probability (a sample scoring below it is
    unknown): the largest one that flags at most ``max_known_rate`` of ``known`` scores,
    so as many ``other`` scores as that allows fall below it. With no known scores: 0."""
    known = np.sort(np.asarray(known, np.float64))
    if len(known) == 0:
        return 0.0
    allowed = math.floor(max_known_rate * len(known))  # known samples we may flag
    # flag exactly the `allowed` lowest known scores: the threshold sits just above them
    if allowed >= len(known):
        return float(known[-1])
    return float(known[allowed])


def choose_threshold_per_source(
    known: np.ndarray, sources: np.ndarray, max_known_rate: float = 0.10,
    min_clips: int = MIN_SOURCE_CLIPS,
) -> float:  # fmt: skip
    """The largest threshold that flags at most ``max_known_rate`` of the ``known``
    scores of every source with at least ``min_clips`` of them (the lowest of their
    :func:`choose_threshold`); of all of them together when no source has that many."""
    known, sources = np.asarray(known, np.float64), np.asarray(sources)
    each = [
        choose_threshold(known[sources == s], np.zeros(0), max_known_rate)
        for s in np.unique(sources)
        if (sources == s).sum() >= min_clips
    ]
    return min(each) if each else choose_threshold(known, np.zeros(0), max_known_rate)


def choose_threshold_by_kind(
    known: np.ndarray, sources: np.ndarray, kinds: np.ndarray, max_known_rate: float = 0.10,
    pooled: bool = False,
) -> tuple[float, dict[str, float]]:  # fmt: skip
    """The "unknown" threshold of each input kind ("mocap", "tracked") of the ``known``
    scores, each by :func:`choose_threshold_per_source` over that kind's sources (all its
    clips together when ``pooled``), and the threshold of all of them together (for a
    kind with no clips here). A model is less sure on joints a Kinect tracked than on
    motion capture: one threshold for both, set by the tracked sources, lets most clips of
    other actions in motion capture pass as known."""
    known, sources, kinds = np.asarray(known, np.float64), np.asarray(sources), np.asarray(kinds)

    def rule(keep: np.ndarray) -> float:
        if pooled:
            return choose_threshold(known[keep], np.zeros(0), max_known_rate)
        return choose_threshold_per_source(known[keep], sources[keep], max_known_rate)

    by_kind = {str(k): rule(kinds == k) for k in np.unique(kinds)}
    return rule(np.ones(len(known), bool)), by_kind


# --------------------------------------------------------------------------- the clips
@dataclass
class Scored:
    """Per-sample results of a split: the mean window logits' softmax is not the mean
    softmax, so each sample keeps its windows' logits."""

    labels: np.ndarray  # (S,) class index, or OTHER_ACTION
    window_logits: list[np.ndarray]  # per sample (W_i, C)
    sources: np.ndarray | None = None  # (S,) str: each sample's source (None: one source)
    kinds: np.ndarray | None = None  # (S,) str: "mocap" or "tracked" (None: all mocap)

    def __post_init__(self) -> None:
        if self.sources is None:
            self.sources = np.full(len(self.labels), "", dtype=object)
        if self.kinds is None:
            self.kinds = np.full(len(self.labels), "mocap", dtype=object)

    def probs(self, temperature: float) -> np.ndarray:
        """(S, C): each sample's mean window probability at ``temperature`` (as classify)."""
        return np.stack([softmax(w, temperature).mean(axis=0) for w in self.window_logits])

    def subset(self, keep: np.ndarray) -> Scored:
        kept = [w for w, k in zip(self.window_logits, keep) if k]
        return Scored(self.labels[keep], kept, self.sources[keep], self.kinds[keep])

    def thresholds(self, threshold: float | None, by_kind: dict[str, float] | None) -> np.ndarray:
        """(S,) the "unknown" threshold of each sample: its input kind's, else ``threshold``."""
        by_kind = by_kind or {}
        return np.array([by_kind.get(str(k), threshold) for k in self.kinds], np.float64)


def score_split(clf, dm, split: str, sources: list[str] | None, batch_size: int = 64) -> Scored:
    """Run ``clf`` on every sample of ``split`` (labelled and other actions), each cut into
    the windows ``stmt classify`` would cut a file of its length into (at each of the
    checkpoint's window lengths, mixed as classify mixes them)."""
    ids = dm._split_indices(split, sources)
    if not ids.size:
        return Scored(np.zeros(0, np.int64), [])
    index = dm.index
    cuts = [(clf.clip, clf.model), *clf.scales]
    plans = [[c.windows(int(index.sample_length[i]), index.fps) for i in ids] for c, _ in cuts]
    logits = [
        _window_logits(clf, dm, ids, plan, c, m, batch_size) for plan, (c, m) in zip(plans, cuts)
    ]
    per_sample = [logits[0][n] for n in range(len(ids))]
    if len(cuts) > 1:
        per_sample = [
            scale_mix(plans[0][n].spans, [p[n].spans for p in plans[1:]])
            @ np.concatenate([lg[n] for lg in logits])
            for n in range(len(ids))
        ]  # fmt: skip
    return Scored(
        index.sample_label[ids].astype(np.int64), per_sample, index.sample_source()[ids],
        index.sample_input_kind()[ids],
    )  # fmt: skip


def _window_logits(clf, dm, ids, plan, settings, model, batch_size: int) -> list[np.ndarray]:
    """(W, C) logits of each sample's windows ``plan`` (one :class:`stmt.clip.Windows` per
    sample of ``ids``), clips made with ``settings``, through ``model``."""
    first = dm.index.sample_frame_start()
    owner = np.repeat(np.arange(len(ids)), [len(w) for w in plan])
    ds = CacheClips(
        dm.cache,
        np.repeat(ids, [len(w) for w in plan]),
        np.concatenate([first[i] + w.start for i, w in zip(ids, plan)]),
        np.concatenate([w.length for w in plan]),
        np.zeros(len(owner), np.int64),
        settings.num_frames,
        train=False,
        window=round(settings.window_s * settings.fps) if settings.fixed_window else 0,
    )
    geodesic = dm.geodesic.to(clf.device)
    logits = []
    with torch.inference_mode():
        for at in range(0, len(ds), batch_size):
            x, _ = ds.clips(np.arange(at, min(at + batch_size, len(ds))))
            logits.append(model(x.to(clf.device), geodesic).float().cpu().numpy())
    all_logits = np.concatenate(logits)
    return [all_logits[owner == n] for n in range(len(ids))]


# --------------------------------------------------------------------------- the command
def summary_of(
    scored: Scored, temperature: float, threshold: float | None, per_source: bool = True,
    by_kind: dict[str, float] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Numbers of one split at a temperature and threshold (``by_kind``: the threshold of
    each input kind; see the module docstring), and of each source's samples in it
    (``per_source``)."""
    known = scored.labels >= 0
    other = scored.labels == OTHER_ACTION
    probs = scored.probs(temperature)
    raw = scored.probs(1.0)
    score = probs.max(axis=1)
    out: dict[str, Any] = {
        "known_clips": int(known.sum()),
        "other_clips": int(other.sum()),
        "top1": float((probs[known].argmax(1) == scored.labels[known]).mean())
        if known.any()
        else float("nan"),
        "ece_before": expected_calibration_error(raw[known], scored.labels[known]),
        "ece": expected_calibration_error(probs[known], scored.labels[known]),
        # AUROC of "unknown" (other actions) from a low score
        "auroc": auroc(-score[other], -score[known]),
    }
    if threshold is not None:
        flag = score < scored.thresholds(threshold, by_kind)
        out["unknown_known"] = float(flag[known].mean()) if known.any() else None
        out["unknown_other"] = float(flag[other].mean()) if other.any() else None
    if per_source:
        out["per_source"] = {
            str(s): summary_of(
                scored.subset(scored.sources == s), temperature, threshold, False, by_kind
            )
            for s in np.unique(scored.sources)
        }
    return out


def calibrate(
    ckpt: str | Path,
    cache: str | Path,
    val_split: str = "val",
    unknown_split: str | None = None,
    test_split: str = "test",
    sources: list[str] | None = None,
    max_known_rate: float = 0.10,
    device: str = "cpu",
    pooled: bool = False,
    keep_temperature: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit the temperature on ``val_split``'s labelled clips and the threshold on
    ``unknown_split``'s (default: ``val_split``) known and other-action clips, per source
    (:func:`choose_threshold_per_source`) unless ``pooled``; report on ``test_split``.
    ``keep_temperature``: the checkpoint's own temperature (1 without one) is kept and
    only the rule fitted (its probabilities stay exactly as they were).
    Returns ``(calibration for the checkpoint, report)``."""
    clf = Classifier.from_checkpoint(ckpt, device=device)
    dm = STMTDataModule(
        str(cache), num_frames=clf.num_frames, num_workers=0, with_other=True,
        window=clf.fixed_window,
    )  # fmt: skip
    if (dm.class_names, dm.num_points, dm.fps) != (clf.class_names, clf.num_points, clf.fps):
        raise InputError(
            cache, "the cache's classes, points or frame rate differ from the checkpoint's; "
            "calibrate on the cache the checkpoint was trained from",
        )  # fmt: skip
    val = score_split(clf, dm, val_split, sources)
    val_known = val.subset(val.labels >= 0)
    if len(val_known.labels) == 0:
        raise InputError(cache, f"the '{val_split}' split has no labelled clip to calibrate on")
    logits = np.concatenate([w.mean(axis=0, keepdims=True) for w in val_known.window_logits])
    temperature = clf.temperature if keep_temperature else fit_temperature(logits, val_known.labels)
    pool = (
        val if unknown_split in (None, val_split) else score_split(clf, dm, unknown_split, sources)
    )
    score = pool.probs(temperature).max(axis=1)
    known = pool.labels >= 0
    threshold, by_kind = choose_threshold_by_kind(
        score[known], pool.sources[known], pool.kinds[known], max_known_rate, pooled
    )
    report = {
        "val": summary_of(val, temperature, threshold, by_kind=by_kind),
        "unknown_pool": summary_of(pool, temperature, threshold, by_kind=by_kind),
        "test": summary_of(
            score_split(clf, dm, test_split, sources), temperature, threshold, by_kind=by_kind
        ),
    }
    calibration = {
        "temperature": round(temperature, 6),
        "unknown_threshold": threshold,  # (not rounded: rounded up, it flags one clip more)
        "unknown_thresholds": by_kind,
        "score": SCORE,
        "fitted_on": {
            "cache": str(cache),
            "val_split": val_split,
            "unknown_split": unknown_split or val_split,
            "test_split": test_split,
            "max_known_rate": max_known_rate,
            # 0 (a BABEL cache): the same threshold, its AUROC not measured
            "other_clips": int((pool.labels == OTHER_ACTION).sum()),
            "threshold_over": ("all known clips" if pooled else "each source's known clips")
            + " of each input kind (mocap; tracked joint positions)",
        },
        "report": report,
    }
    return calibration, report
