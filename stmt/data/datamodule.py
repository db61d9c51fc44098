"""``STMTDataModule``: training clips from a prepared cache (``stmt prepare``).

A clip is T frames of one sample (a labelled span of a sequence), made by
:mod:`stmt.clip`, the pipeline ``stmt classify`` uses too:

- training: the sample's frames are split into T equal bins and one frame is
  drawn uniformly at random in each bin (a sample shorter than T frames repeats
  frames); with fixed windows, optionally only a random part of the sample
  (``crop``) at a random playback speed (``speed_min``, ``speed_max``), see
  :func:`stmt.clip.draw_spans`;
- evaluation (val/test/predict): the frame at the centre of each bin.

Options in detail:

- ``with_other``: the classifier learns to spread its probability over actions outside
  its classes (``ClassificationModule(other_weight=...)``) and ``stmt calibrate`` fits
  its "unknown" rule on them.
- ``train_sources``, ``val_sources``, ``test_sources``: a sample's source is its subject
  up to the first "/" (realmix's "bandai", "hdm05", "synthetic"). With splits such as
  "train+test" this trains on one source and tests on another
  (``benchmarks/eval_cross_source.py``).
- ``class_balance`` b: weights ``count(class)**-b``, drawn with replacement, as many
  draws per epoch as samples: 0 keeps the plain shuffle, 1 sees every class equally
  often (for mixed sets whose classes differ in size by 10x or more: realmix).
  ``class_balance_min``: ``max(count, min)**-b``, so a class of one clip is not drawn as
  often as one of hundreds (which makes it the answer for whatever the model has not
  seen). ``source_balance``: a class's weight is shared equally by its sources.
- ``max_samples``: a class-balanced subset fixed by ``seed``, after ``train_fraction``,
  for a quick check that training runs (``datasets/synthetic/smoke.yaml``): a count of
  samples, unlike Lightning's ``limit_*_batches`` whose meaning changes between 1 and 1.0.
- ``window`` (fixed windows, :mod:`stmt.clip`): every clip covers the cache's
  ``window_s`` seconds (or ``window_seconds``), whatever its sample's length (a random
  window of a longer sample in training, its centre window in evaluation; a shorter
  sample held at its ends), so motion is seen at one time scale; recorded in the
  checkpoint (``fixed_window``) for inference. False: a clip spans its whole sample.
  ``window_seconds`` keeps a model's time scale when sources are added (the cache's
  ``window_s``, the median sample length, moves).
- ``crop``: a random part of the sample, U(crop_min, 1) of min(sample, window) long,
  padded in the window as a short file is at inference; ``speed_min``, ``speed_max``:
  the sample played at a speed drawn log-uniformly in that range
  (:func:`stmt.clip.draw_spans`).

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

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from stmt.clip import ClipSettings, bin_frames, draw_spans, normalise
from stmt.data.cache import load_index, open_arrays
from stmt.data.sampling import STAGES, SampleSelection
from stmt.data.transforms import augment_matrices
from stmt.template import Template


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
        """A batch: ``vertices`` (B, T, N, 3), ``label`` (B,) and ``position`` (B,), the
        items' places in this dataset (``stmt predict`` under DDP puts the processes'
        predictions back in order by them, :mod:`stmt.engine.predictions`)."""
        clip, label = self.clips(items)
        return {"vertices": clip, "label": label, "position": torch.as_tensor(items)}

    def __getitem__(self, i: int) -> dict:
        clip, label = self.clips([i])
        return {"vertices": clip[0], "label": label[0]}


def _identity_collate(batch):
    return batch


class STMTDataModule(pl.LightningDataModule):
    """Clips of a prepared cache for training, evaluation and prediction (the module
    docstring says more about the options marked *).

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
        jitter_std, jitter_clip: noise sigma and clip, normalised units (original:
            0.007 and 0.04).
        train_split, val_split, test_split, predict_split: each stage's split in the
            cache; an empty one falls back to ``val_split`` (BABEL has no test labels).
        train_fraction: keep this fraction of the training samples, per class, fixed
            by ``seed`` (0.1: fine-tuning with 10 % labels).
        seed: seed of the labelled subset and of evaluation-time randomness.
        with_unlabelled: keep the samples of labels -1 and -2 in every stage
            (self-supervised pretraining only).
        with_other: keep the samples of actions outside the classes (label -2)*.
        train_sources, val_sources, test_sources: keep only samples of these sources*
            (None: every source); predict uses ``test_sources``.
        class_balance: training draws each sample with weight ``count(class)**-b``*.
        class_balance_min: a smaller class is weighted as if it had this many samples*.
        pin_memory: pin batches for faster host-to-GPU copies.
        max_samples: at most this many samples of each split, the classes in turn*.
        window: fixed windows: every clip covers ``window_s`` seconds*.
        mirror: mirror half of the training clips left-right (for label sets
            without left/right classes).
        crop: with fixed windows, the probability that a training clip shows only a
            part of its sample*.
        crop_min: the shortest part, as a fraction.
        speed_min, speed_max: with fixed windows, the range of a training clip's
            playback speed* (1, 1: off).
        source_balance: with ``class_balance``, the sources of a class drawn alike*.
        window_seconds: seconds a fixed window covers*; None: the cache's ``window_s``.
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
        _check_options(
            num_frames, batch_size, num_workers, train_fraction, max_samples, class_balance,
            class_balance_min, crop, crop_min, window_seconds, speed_min, speed_max,
        )  # fmt: skip
        self.save_hyperparameters()
        self.cache = Path(cache)
        self.index = load_index(self.cache)
        self.template = Template.load(self.cache / "template.npz")
        self.num_frames = int(num_frames)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.pin_memory = pin_memory
        self._window_s = None if window_seconds is None else float(window_seconds)
        self.samples = SampleSelection(
            self.index,
            splits=dict(zip(STAGES, (train_split, val_split, test_split, predict_split))),
            sources=dict(zip(STAGES, (train_sources, val_sources, test_sources, test_sources))),
            with_unlabelled=with_unlabelled, with_other=with_other,
            train_fraction=train_fraction, max_samples=max_samples, seed=seed,
            class_balance=float(class_balance), class_balance_min=int(class_balance_min),
            source_balance=source_balance,
        )  # fmt: skip
        self.augment_args = augment_options(
            augment, rotate, rotate_range, tilt, tilt_deg, scale, scale_min, scale_max, jitter,
            jitter_std, jitter_clip, mirror,
        )  # fmt: skip
        # every clip covers window_s (stmt.clip); the CLI links it into the model as is
        self.fixed_window = bool(window)
        self.draw = draw_options(augment and window, crop, crop_min, speed_min, speed_max)
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

    class_names = property(lambda self: self.index.class_names)
    num_classes = property(lambda self: len(self.index.class_names))
    num_points = property(lambda self: self.index.num_points)
    fps = property(lambda self: self.index.fps)
    window_s = property(lambda self: self._window_s or self.index.window_s)

    @property
    def clip_s(self) -> float | None:
        """Seconds of the longest labelled training sample: ``stmt classify`` takes a
        file no longer than this as one whole clip, as training did (None with fixed
        windows: every clip is a window)."""
        return (
            None
            if self.fixed_window
            else self.index.longest_labelled_s(self.samples.splits["fit"], self.window_s)
        )

    @property
    def geodesic(self) -> torch.Tensor:
        """(N, N) float32 geodesic distances between the template vertices (metres)."""
        return torch.from_numpy(self.template.geodesic)

    # ---- samples
    def _split_indices(self, split: str, sources: list[str] | None = None) -> np.ndarray:
        """The samples of ``split`` (and ``sources``) with the labels kept
        (:meth:`stmt.data.sampling.SampleSelection.split_indices`)."""
        return self.samples.split_indices(split, sources)

    def dataset(self, stage: str) -> CacheClips:
        """The clips of ``stage`` ("fit", "validate", "test", "predict"), made once."""
        if stage not in self._datasets:
            ids = self.samples.stage(stage, self.cache)
            index, window = self.index, round(self.window_s * self.fps)
            self._datasets[stage] = CacheClips(
                self.cache, ids, index.sample_frame_start()[ids], index.sample_length[ids],
                index.sample_label[ids], self.num_frames, train=stage == "fit",
                augment=self.augment_args, seed=self.seed,
                window=window if self.fixed_window else 0, draw=self.draw,
            )  # fmt: skip
        return self._datasets[stage]

    def setup(self, stage: str | None = None) -> None:
        stages = ["fit", "validate"] if stage in (None, "fit") else [stage]
        for s in stages:
            self.dataset(s)

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        ds = self.dataset(stage)
        sampler = None
        if shuffle and self.samples.balanced:
            sampler, shuffle = self.samples.balanced_sampler(ds.label, ds.sample_ids), False
        drop_last = (shuffle or sampler is not None) and len(ds) > self.batch_size
        return DataLoader(
            ds, batch_size=self.batch_size, shuffle=shuffle, sampler=sampler, drop_last=drop_last,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            collate_fn=_identity_collate,  # __getitems__ already returns the batch
        )  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("fit", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validate", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)


def _check_options(
    num_frames, batch_size, num_workers, train_fraction, max_samples, class_balance,
    class_balance_min, crop, crop_min, window_seconds, speed_min, speed_max,
) -> None:  # fmt: skip
    """The data module's numbers in range, or one ValueError naming the init arg."""
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


def augment_options(
    augment, rotate, rotate_range, tilt, tilt_deg, scale, scale_min, scale_max, jitter,
    jitter_std, jitter_clip, mirror,
) -> dict:  # fmt: skip
    """The training augmentation :class:`CacheClips` applies (empty: none)."""
    if not augment:
        return {}
    out: dict = {}
    if rotate:
        out["rotate_range"] = rotate_range
    if tilt:
        out["tilt_deg"] = tilt_deg
    if scale:
        out.update(scale_min=scale_min, scale_max=scale_max)
    if jitter:
        out.update(jitter_std=jitter_std, jitter_clip=jitter_clip)
    if mirror:
        out["mirror"] = True
    return out


def draw_options(fixed: bool, crop, crop_min, speed_min, speed_max) -> dict:
    """How training draws the part of a sample a fixed-window clip shows
    (:func:`stmt.clip.draw_spans`); empty: the whole sample at its own speed."""
    if fixed and (crop > 0 or speed_max > speed_min or speed_min != 1.0):
        return {"crop": crop, "crop_min": crop_min, "speed": (speed_min, speed_max)}
    return {}
