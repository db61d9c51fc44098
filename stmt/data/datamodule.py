"""``STMTDataModule``: training clips from a prepared cache (``stmt prepare``).

A clip is T frames of one sample (a labelled span of a sequence), made by
:mod:`stmt.clip`, the pipeline ``stmt classify`` uses too:

- training: the sample's frames are split into T equal bins and one frame is
  drawn uniformly at random in each bin (a sample shorter than T frames repeats
  frames); with fixed windows, optionally only a random part of the sample
  (``crop``) at a random playback speed (``speed_min``, ``speed_max``), see
  :func:`stmt.clip.draw_spans`;
- evaluation (val/test/predict): the frame at the centre of each bin.

Every clip is normalised by :func:`stmt.clip.normalise`, then, for training with
``augment=True``, each enabled augmentation is applied in this order: rotation about the vertical axis by U(-rotate_range, rotate_range) rad,
a tilt of U(-tilt_deg, tilt_deg) degrees about a random horizontal axis, a
uniform scale in [scale_min, scale_max], and per-point gaussian jitter
(``jitter_std``, clipped at ``jitter_clip``, normalised units).

Batches are dicts ``{"vertices": (B, T, N, 3) float32, "label": (B,) int64}``.
Samples without a label (label ``UNLABELLED`` = -1, e.g. realmix's clips beyond
its per-label cap) are left out of every stage unless ``with_unlabelled``
(for :class:`~stmt.engine.pretrainer.STMTPretrainer`, which ignores labels).
Samples of actions outside the classes (``OTHER_ACTION`` = -2) are kept with
``with_other`` (the classifier learns and measures "unknown" on them) or
``with_unlabelled``.
The template's geodesic matrix is an attribute (``.geodesic``), handed to the
model once, not per sample.

The cache's index and template are read in ``__init__`` (small files), so the clip
settings (``clip_settings``: class names, frames and points per clip, fps, window,
``clip_s``) and ``geodesic`` are available before ``setup`` (LightningCLI links the
clip settings into the model at instantiation). The big arrays are memory-mapped lazily, once per
DataLoader worker.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from stmt.clip import ClipSettings, bin_frames, draw_spans, normalise
from stmt.data.cache import load_index, open_arrays
from stmt.data.cache import OTHER_ACTION
from stmt.template import Template
from stmt.data.transforms import augment_matrices
from stmt.errors import InputError


class CacheClips(Dataset):
    """Clips of some samples of a cache; batched fetch through ``__getitems__``.

    The normalisation (:func:`stmt.clip.normalise`) and the augmentation's rotation,
    tilt and scale are one affine map per clip, applied with a single matmul; the
    clip's bounding box and height come from the cache's per-frame bounds, so no
    reduction over the points is needed. Jitter is read from a per-process bank of 2**21
    clipped gaussian values at a random offset per clip (drawing T*N*3 fresh
    normals per clip would cost more than everything else together).
    """

    JITTER_BANK = 1 << 21

    def __init__(
        self,
        cache: str | Path,
        sample_ids: np.ndarray,
        frame_start: np.ndarray,
        length: np.ndarray,
        label: np.ndarray,
        num_frames: int,
        train: bool,
        augment: dict | None = None,
        seed: int = 0,
        window: int = 0,
        draw: dict | None = None,
    ):
        self.cache = str(cache)
        self.sample_ids = np.asarray(sample_ids, dtype=np.int64)
        self.frame_start = np.asarray(frame_start, dtype=np.int64)
        self.length = np.asarray(length, dtype=np.int64)
        self.label = np.asarray(label, dtype=np.int64)
        self.num_frames = num_frames
        self.train = train
        self.augment = augment or {}
        self.seed = seed
        self.window = int(window)  # > 0: fixed windows of this many frames (stmt.clip)
        self.draw = draw or {}  # crop / speed of training clips (stmt.clip.draw_spans)
        self._arrays = None  # opened lazily, once per process (DataLoader worker)
        self._rng = None
        self._bank = None

    def __len__(self) -> int:
        return len(self.sample_ids)

    def _open(self):
        if self._arrays is None:
            self._arrays = open_arrays(self.cache)
            info = torch.utils.data.get_worker_info()
            wid = 0 if info is None else info.id
            base = torch.initial_seed() if self.train else self.seed
            self._rng = np.random.default_rng([base % 2**63, wid])
        return self._arrays

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = state["_rng"] = state["_bank"] = None  # per worker
        return state

    def _jitter(self, B: int, size: int) -> torch.Tensor:
        std, clip = self.augment["jitter_std"], self.augment.get("jitter_clip", 0.0)
        if self._bank is None:
            bank = self._rng.standard_normal(self.JITTER_BANK, dtype=np.float32) * std
            if clip > 0:
                np.clip(bank, -clip, clip, out=bank)
            self._bank = torch.from_numpy(bank)
        starts = self._rng.integers(0, self.JITTER_BANK - size, B)
        return torch.stack([self._bank[s : s + size] for s in starts])  # (B, size)

    def clips(self, items) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, N, 3) float32 normalised (and augmented) clips and (B,) int64 labels."""
        verts, centres, bounds = self._open()
        items = np.asarray(items, dtype=np.int64)
        B, T = len(items), self.num_frames
        rng = self.rng_for_training()
        start, length, cover = self.frame_start[items], self.length[items], self.window
        if rng is not None and self.window > 0 and self.draw:
            offset, length, cover = draw_spans(length, self.window, rng, **self.draw)
            start = start + offset
        frames = bin_frames(length, T, rng, cover)
        frames += start[:, None]
        flat = frames.reshape(-1)  # (B*T,)
        off = torch.from_numpy(verts[flat])  # (B*T, N, 3) float16
        rot = None
        if self.train and self.augment:
            shape_args = {
                k: v for k, v in self.augment.items() if k not in ("jitter_std", "jitter_clip")
            }
            rot = augment_matrices(B, self._rng, **shape_args)  # (B, 3, 3)
        out = normalise(
            off.reshape(B, T, *off.shape[1:]),
            centres[flat].reshape(B, T, 3),
            bounds[flat].reshape(B, T, 2, 3),
            rot,
        )
        if self.train and self.augment.get("jitter_std", 0) > 0:
            out.add_(self._jitter(B, out[0].numel()).reshape(out.shape))
        return out, torch.from_numpy(self.label[items])

    def rng_for_training(self) -> np.random.Generator | None:
        return self._rng if self.train else None

    def __getitems__(self, items: list[int]) -> dict:
        clip, label = self.clips(items)
        return {"vertices": clip, "label": label}

    def __getitem__(self, i: int) -> dict:
        clip, label = self.clips([i])
        return {"vertices": clip[0], "label": label[0]}


def _identity_collate(batch):
    return batch


class STMTDataModule(pl.LightningDataModule):
    """Clips of a prepared cache for training, evaluation and prediction.

    Args:
        cache: folder written by ``stmt prepare``.
        num_frames: T, frames per clip.
        batch_size: clips per batch.
        num_workers: DataLoader worker processes (0: load in the main process).
        augment: master switch for training augmentation.
        rotate: rotate about the vertical axis by U(-rotate_range, rotate_range) rad.
        rotate_range: radians (the original STMT code: 0.7).
        tilt: tilt about a random horizontal axis by U(-tilt_deg, tilt_deg).
        tilt_deg: degrees (original: 10).
        scale: scale by U(scale_min, scale_max).
        scale_min, scale_max: scale range.
        jitter: add gaussian noise to every point.
        jitter_std, jitter_clip: noise sigma and clip, in normalised units
            (original: 0.007 and 0.04).
        train_split, val_split, test_split, predict_split: split names in the
            cache used by each stage. A stage whose split has no sample falls back
            to ``val_split`` (BABEL publishes no test labels).
        train_fraction: keep this fraction of the training samples, stratified by
            class (at least one per class), the same subset for a given ``seed``
            (e.g. 0.1 for fine-tuning with 10 % labels).
        seed: seed of the labelled subset and of evaluation-time randomness.
        with_unlabelled: keep the samples without a label (labels -1 and -2) in every
            stage; only for self-supervised pretraining (the classifier's loss and
            metrics need labels). Off, they are left out.
        with_other: keep the samples of actions outside the classes (label -2) in every
            stage: the classifier learns to spread its probability over them
            (``STMTClassifier(other_weight=...)``) and ``stmt calibrate`` fits its
            "unknown" rule on them.
        train_sources, val_sources, test_sources: keep only samples of these sources
            (a sample's source is its subject up to the first "/": realmix's "bandai",
            "hdm05", "synthetic"); None: every source. Predict uses ``test_sources``.
            With splits such as "train+test" this trains on one source and tests on
            another (``benchmarks/eval_cross_source.py``).
        class_balance: training draws each sample with weight ``count(class)**-b``
            (with replacement, as many draws per epoch as samples): 0 keeps the plain
            shuffle, 1 sees every class equally often. For mixed sets whose classes
            differ in size by 10x or more (realmix).
        class_balance_min: a class of fewer samples is weighted as if it had this many
            (``max(count, min)**-b``): a class of one clip is not drawn as often as one of
            hundreds, which makes it the answer for whatever the model has not seen.
        pin_memory: pin batches for faster host-to-GPU copies.
        max_samples: keep at most this many samples of each split, taken from the
            classes in turn (a class-balanced subset fixed by ``seed``; after
            ``train_fraction``). For a quick check that training runs
            (``datasets/synthetic/smoke.yaml``): a count of samples, unlike
            Lightning's ``limit_*_batches`` whose meaning changes between 1 and 1.0.
            None: every sample.
        window: fixed windows (:mod:`stmt.clip`): every clip covers the cache's
            ``window_s`` seconds, whatever its sample's length (a random window of a
            longer sample in training, its centre window in evaluation; a shorter
            sample held at its ends), so motion is seen at one time scale; recorded
            in the checkpoint (``fixed_window``) for inference. False: a clip spans
            its whole sample.
        mirror: mirror half of the training clips left-right (augmentation; for
            label sets without left/right classes).
        crop: with fixed windows, the probability that a training clip shows only a
            random part of its sample, U(crop_min, 1) of min(sample, window) long and
            padded in the window as a short file is at inference (:func:`stmt.clip.draw_spans`).
        crop_min: the shortest part, as a fraction.
        speed_min, speed_max: with fixed windows, training clips play their sample at a
            speed drawn log-uniformly in this range (1, 1: off).
        source_balance: with ``class_balance``, each source of a class is drawn as often
            as the others (a class's weight is shared equally by its sources).
        window_seconds: seconds a fixed window covers (the ``window_s`` the checkpoint
            records for inference); None: the cache's ``window_s`` (the median sample
            length, which moves when sources are added: set it to keep a model's time
            scale).
    """

    def __init__(
        self,
        cache: str,
        num_frames: int = 24,
        batch_size: int = 32,
        num_workers: int = 2,
        augment: bool = True,
        rotate: bool = True,
        rotate_range: float = 0.7,
        tilt: bool = True,
        tilt_deg: float = 10.0,
        scale: bool = True,
        scale_min: float = 0.9,
        scale_max: float = 1.1,
        jitter: bool = True,
        jitter_std: float = 0.007,
        jitter_clip: float = 0.04,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        predict_split: str = "test",
        train_fraction: float = 1.0,
        seed: int = 0,
        with_unlabelled: bool = False,
        class_balance: float = 0.0,
        pin_memory: bool = False,
        max_samples: int | None = None,
        window: bool = False,
        mirror: bool = False,
        with_other: bool = False,
        train_sources: list[str] | None = None,
        val_sources: list[str] | None = None,
        test_sources: list[str] | None = None,
        crop: float = 0.0,
        crop_min: float = 0.5,
        speed_min: float = 1.0,
        speed_max: float = 1.0,
        source_balance: bool = False,
        window_seconds: float | None = None,
        class_balance_min: int = 1,
    ):
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if not 0.0 < train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"max_samples must be >= 1 or null, got {max_samples}")
        if not 0.0 <= class_balance <= 1.0:
            raise ValueError(f"class_balance must be in [0, 1], got {class_balance}")
        if not 1 <= class_balance_min <= 10**9:
            raise ValueError(f"class_balance_min must be >= 1, got {class_balance_min}")
        if not (0.0 <= crop <= 1.0 and 0.0 < crop_min <= 1.0):
            raise ValueError(f"need crop in [0, 1] and crop_min in (0, 1], got {crop}, {crop_min}")
        if window_seconds is not None and not 0.0 < window_seconds <= 3600.0:
            raise ValueError(f"window_seconds must be in (0, 3600], got {window_seconds}")
        if not 0.0 < speed_min <= speed_max:
            raise ValueError(f"need 0 < speed_min <= speed_max, got {speed_min}, {speed_max}")
        self.save_hyperparameters()
        self.cache = Path(cache)
        self.index = load_index(self.cache)
        self.template = Template.load(self.cache / "template.npz")
        self.num_frames = int(num_frames)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_fraction = train_fraction
        self.seed = seed
        self.with_unlabelled = with_unlabelled
        self.with_other = with_other
        self.sources = {"fit": train_sources, "validate": val_sources, "test": test_sources,
                        "predict": test_sources}  # fmt: skip
        self.source_balance = source_balance
        self._window_s = None if window_seconds is None else float(window_seconds)
        self.class_balance = float(class_balance)
        self.class_balance_min = int(class_balance_min)
        self.pin_memory = pin_memory
        self.max_samples = max_samples
        self.splits = {
            "fit": train_split,
            "validate": val_split,
            "test": test_split,
            "predict": predict_split,
        }
        self.augment_args = {}
        if augment:
            if rotate:
                self.augment_args["rotate_range"] = rotate_range
            if tilt:
                self.augment_args["tilt_deg"] = tilt_deg
            if scale:
                self.augment_args.update(scale_min=scale_min, scale_max=scale_max)
            if jitter:
                self.augment_args.update(jitter_std=jitter_std, jitter_clip=jitter_clip)
            if mirror:
                self.augment_args["mirror"] = True
        # every clip covers window_s (stmt.clip); the CLI links it into the model as is
        self.fixed_window = bool(window)
        self.draw = {}
        if augment and window and (crop > 0 or speed_max > speed_min or speed_min != 1.0):
            self.draw = {"crop": crop, "crop_min": crop_min, "speed": (speed_min, speed_max)}
        self._datasets: dict[str, CacheClips] = {}

    # ---- what the model needs to know (available right after __init__)
    @property
    def clip_settings(self) -> ClipSettings:
        """How this module's clips are made (:class:`stmt.clip.ClipSettings`): what
        ``stmt fit`` links into the model, once, and the checkpoint keeps."""
        return ClipSettings(
            tuple(self.class_names), self.num_frames, self.num_points, self.fps,
            self.window_s, self.clip_s, self.fixed_window,
        )  # fmt: skip

    @property
    def class_names(self) -> list[str]:
        return self.index.class_names

    @property
    def num_classes(self) -> int:
        return len(self.index.class_names)

    @property
    def num_points(self) -> int:
        return self.index.num_points

    @property
    def fps(self) -> float:
        return self.index.fps

    @property
    def window_s(self) -> float:
        return self.index.window_s if self._window_s is None else self._window_s

    @property
    def clip_s(self) -> float | None:
        """Seconds of the longest labelled training sample: ``stmt classify`` takes a
        file no longer than this as one whole clip, as training did (None with fixed
        windows: every clip is a window)."""
        if self.fixed_window:
            return None
        ids = self.index.split_indices(self.splits["fit"])
        ids = ids[self.index.sample_label[ids] >= 0]
        if len(ids) == 0:
            return self.window_s
        return float(np.max(self.index.sample_length[ids])) / self.fps

    @property
    def geodesic(self) -> torch.Tensor:
        """(N, N) float32 geodesic distances between the template vertices (metres)."""
        return torch.from_numpy(self.template.geodesic)

    # ---- samples
    def _split_indices(self, split: str, sources: list[str] | None = None) -> np.ndarray:
        ids = self.index.split_indices(split)
        label = self.index.sample_label[ids]
        if not self.with_unlabelled:
            ids = ids[(label >= 0) | ((label == OTHER_ACTION) & self.with_other)]
        if sources is not None:
            ids = ids[np.isin(self.index.sample_source()[ids], list(sources))]
        return ids

    def split_samples(self, split: str, sources: list[str] | None = None) -> np.ndarray:
        """Sample indices of ``split`` (labelled ones unless ``with_unlabelled``; of
        ``sources`` only when given), falling back to val when it is empty."""
        ids = self._split_indices(split, sources)
        if len(ids) == 0 and split != self.splits["validate"]:
            print(
                f"stmt: warning: the cache has no '{split}' samples; using "
                f"'{self.splits['validate']}'",
                file=sys.stderr,
            )
            ids = self._split_indices(self.splits["validate"], self.sources["validate"])
        if len(ids) == 0:
            raise InputError(self.cache, f"the cache has no '{split}' samples")
        return ids

    def labelled_subset(self, ids: np.ndarray) -> np.ndarray:
        """``train_fraction`` of ``ids``, stratified by class, deterministic in ``seed``."""
        if self.train_fraction >= 1.0:
            return ids
        rng = np.random.default_rng(self.seed)
        labels = self.index.sample_label[ids]
        keep = []
        for c in np.unique(labels):
            members = ids[labels == c]
            n = max(1, math.ceil(self.train_fraction * len(members)))
            keep.append(np.sort(rng.permutation(members)[:n]))
        return np.sort(np.concatenate(keep))

    def capped(self, ids: np.ndarray) -> np.ndarray:
        """At most ``max_samples`` of ``ids``, one class after another in turn (classes in
        label order, each class's samples in a ``seed``-fixed order); sorted."""
        if self.max_samples is None or len(ids) <= self.max_samples:
            return ids
        rng = np.random.default_rng(self.seed)
        labels = self.index.sample_label[ids]
        queues = [rng.permutation(ids[labels == c]) for c in np.unique(labels)]
        turns = np.concatenate([np.arange(len(q)) for q in queues])  # (len(ids),) rank in class
        order = np.argsort(turns, kind="stable")  # every class's first, then second, ...
        return np.sort(np.concatenate(queues)[order][: self.max_samples])

    def dataset(self, stage: str) -> CacheClips:
        if stage not in self._datasets:
            ids = self.split_samples(self.splits[stage], self.sources[stage])
            if stage == "fit":
                ids = self.labelled_subset(ids)
            ids = self.capped(ids)
            self._datasets[stage] = CacheClips(
                self.cache,
                ids,
                self.index.sample_frame_start()[ids],
                self.index.sample_length[ids],
                self.index.sample_label[ids],
                self.num_frames,
                train=stage == "fit",
                augment=self.augment_args,
                seed=self.seed,
                window=round(self.window_s * self.fps) if self.fixed_window else 0,
                draw=self.draw,
            )
        return self._datasets[stage]

    def setup(self, stage: str | None = None) -> None:
        stages = ["fit", "validate"] if stage in (None, "fit") else [stage]
        for s in stages:
            self.dataset(s)

    def _balanced_sampler(self, ds: CacheClips) -> torch.utils.data.Sampler:
        """Draws with weight count(class)**-class_balance, shared equally by the class's
        sources with ``source_balance`` (see the class docstring)."""
        _, inverse, counts = np.unique(ds.label, return_inverse=True, return_counts=True)
        per_class = np.maximum(counts[inverse], self.class_balance_min).astype(np.float64)
        weights = per_class**-self.class_balance
        if self.source_balance:
            source = self.index.sample_source()[ds.sample_ids]
            pairs = np.stack([ds.label.astype(str), source], axis=1)  # (S, 2) class, source
            uniq, g_inv, g_counts = np.unique(
                pairs, axis=0, return_inverse=True, return_counts=True
            )
            _, n_src = np.unique(uniq[:, 0], return_counts=True)  # sources per class
            per_class = dict(zip(np.unique(uniq[:, 0]), n_src))
            n = np.array([per_class[str(c)] for c in ds.label])
            weights *= counts[inverse] / (n * g_counts[g_inv.reshape(-1)])
        gen = torch.Generator().manual_seed(self.seed)
        return torch.utils.data.WeightedRandomSampler(
            torch.from_numpy(weights), num_samples=len(ds), replacement=True, generator=gen
        )

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        ds = self.dataset(stage)
        sampler = None
        if shuffle and (self.class_balance > 0 or self.source_balance):
            sampler, shuffle = self._balanced_sampler(ds), False
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=(shuffle or sampler is not None) and len(ds) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            collate_fn=_identity_collate,  # __getitems__ already returns the batch
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("fit", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validate", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)
