"""Which samples of a cache each stage uses, and how training draws them.

:class:`SampleSelection` holds the choices of :class:`stmt.data.datamodule.STMTDataModule`
that pick samples (splits, sources, the labels kept, a labelled fraction, a cap) and
weight them (class and source balance); the data module turns the picked samples into
clips (:class:`stmt.data.datamodule.CacheClips`) and loaders.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stmt.data.cache import OTHER_ACTION, CacheIndex
from stmt.errors import InputError

STAGES = ("fit", "validate", "test", "predict")


@dataclass
class SampleSelection:
    """The samples of ``index`` each stage uses (arguments as the data module's).

    Attributes:
        index: the cache's index.
        splits: stage -> split name ("train", "val", ...; "train+test" joins splits).
        sources: stage -> the sources kept (None: every source).
        with_unlabelled, with_other: keep samples of labels -1 / -2.
        train_fraction, max_samples, seed: the labelled subset and the cap of each split.
        class_balance, class_balance_min, source_balance: training's draw weights.
    """

    index: CacheIndex
    splits: dict[str, str]
    sources: dict[str, list[str] | None]
    with_unlabelled: bool = False
    with_other: bool = False
    train_fraction: float = 1.0
    max_samples: int | None = None
    seed: int = 0
    class_balance: float = 0.0
    class_balance_min: int = 1
    source_balance: bool = False

    @property
    def balanced(self) -> bool:
        """Whether training draws with weights (else a plain shuffle)."""
        return self.class_balance > 0 or self.source_balance

    def split_indices(self, split: str, sources: list[str] | None = None) -> np.ndarray:
        """Sample indices of ``split`` with the labels kept (labelled ones, and -1 / -2 as
        asked), of ``sources`` only when given."""
        ids = self.index.split_indices(split)
        label = self.index.sample_label[ids]
        if not self.with_unlabelled:
            ids = ids[(label >= 0) | ((label == OTHER_ACTION) & self.with_other)]
        if sources is not None:
            ids = ids[np.isin(self.index.sample_source()[ids], list(sources))]
        return ids

    def stage(self, stage: str, cache: Path | None = None) -> np.ndarray:
        """The samples of ``stage``: its split (falling back to val when that is empty),
        the training's labelled fraction, each capped at ``max_samples``."""
        ids = self.split_samples(self.splits[stage], self.sources[stage], cache)
        if stage == "fit":
            ids = self.labelled_subset(ids)
        return self.capped(ids)

    def split_samples(
        self, split: str, sources: list[str] | None = None, cache: Path | None = None
    ) -> np.ndarray:
        """Sample indices of ``split`` (:meth:`split_indices`), falling back to val when
        it is empty; an InputError naming ``cache`` when that is empty too."""
        ids = self.split_indices(split, sources)
        val = self.splits["validate"]
        if len(ids) == 0 and split != val:
            print(f"stmt: warning: the cache has no '{split}' samples; using '{val}'",
                  file=sys.stderr)  # fmt: skip
            ids = self.split_indices(val, self.sources["validate"])
        if len(ids) == 0:
            raise InputError(cache, f"the cache has no '{split}' samples")
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

    def balanced_sampler(
        self, label: np.ndarray, sample_ids: np.ndarray
    ) -> torch.utils.data.Sampler:
        """Draws samples of labels ``label`` (the cache's ``sample_ids``; as many draws as
        samples, with replacement) with weight ``max(count(class), class_balance_min)**
        -class_balance``, shared equally by the class's sources with ``source_balance``."""
        _, inverse, counts = np.unique(label, return_inverse=True, return_counts=True)
        per_class = np.maximum(counts[inverse], self.class_balance_min).astype(np.float64)
        weights = per_class**-self.class_balance
        if self.source_balance:
            source = self.index.sample_source()[sample_ids]
            pairs = np.stack([label.astype(str), source], axis=1)  # (S, 2) class, source
            uniq, g_inv, g_counts = np.unique(
                pairs, axis=0, return_inverse=True, return_counts=True
            )
            _, n_src = np.unique(uniq[:, 0], return_counts=True)  # sources per class
            per_class = dict(zip(np.unique(uniq[:, 0]), n_src))
            n = np.array([per_class[str(c)] for c in label])
            weights *= counts[inverse] / (n * g_counts[g_inv.reshape(-1)])
        gen = torch.Generator().manual_seed(self.seed)
        return torch.utils.data.WeightedRandomSampler(
            torch.from_numpy(weights), num_samples=len(sample_ids), replacement=True,
            generator=gen,
        )  # fmt: skip
