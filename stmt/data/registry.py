"""The datasets ``stmt prepare`` knows, in one table: their classes and their files.

=============  ===========================================  ==================================
dataset        classes (index = label)                      files (one SequenceJob each)
=============  ===========================================  ==================================
babel60/120    BABEL's first 60 / 120 categories            BABEL annotations over AMASS
kit            BABEL-60 without four (datasets/kit/README)  the KIT sequences of the annotations
synthetic      ``stmt synth``'s classes                     ``stmt synth``'s annotations
realmix        the BABEL-60 categories of its tables        found by their names
                                                            (:mod:`stmt.data.realmix`)
=============  ===========================================  ==================================

:func:`list_dataset` checks the arguments of a dataset and lists its jobs
(:class:`~stmt.data.jobs.SequenceJob`): what :func:`stmt.data.prepare.prepare` poses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stmt.data.babel import (
    BABEL_CATEGORIES,
    CHUNK_S,
    KIT_REMOVED,
    load_annotations,
    sequence_jobs,
)
from stmt.data.jobs import SequenceJob
from stmt.data.realmix import list_realmix, realmix_classes
from stmt.data.synth import SYNTH_CLASSES
from stmt.errors import InputError

DATASETS = ("synthetic", "babel60", "babel120", "kit", "realmix")


def label_set(dataset: str) -> list[str]:
    """Class names (index = label) of ``dataset``."""
    if dataset == "babel120":
        return list(BABEL_CATEGORIES)
    if dataset == "babel60":
        return BABEL_CATEGORIES[:60]
    if dataset == "kit":
        return [c for c in BABEL_CATEGORIES[:60] if c not in KIT_REMOVED]
    if dataset == "synthetic":
        return list(SYNTH_CLASSES)
    if dataset == "realmix":
        return realmix_classes()
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")


@dataclass
class Listing:
    """A dataset's files before any is posed.

    Attributes:
        jobs: the files and their samples, in a stable order.
        classes: the label set.
        body: the body its parameter files are posed on (realmix: always anny).
        summary: realmix's clip counts (recorded in the cache index), else None.
    """

    jobs: list[SequenceJob]
    classes: list[str]
    body: str
    summary: dict | None = field(default=None)

    @property
    def samples(self) -> int:
        return sum(len(j.segments) for j in self.jobs)


def list_dataset(
    dataset: str,
    data: str | Path,
    annotations: str | Path | None = None,
    chunk_s: float = CHUNK_S,
    synthetic: str | Path | None = None,
    body: str = "auto",
    log: Callable[[str], None] = print,
) -> Listing:
    """The jobs of ``dataset`` under ``data`` (arguments as :func:`stmt.data.prepare.prepare`'s).

    Raises :class:`InputError` for an unknown dataset, a ``data`` that is no folder, an
    option the dataset does not take, or a dataset without a sample."""
    if dataset not in DATASETS:
        raise InputError(
            None, f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}"
        )
    data = Path(data)
    if not data.is_dir():
        raise InputError(
            data, "expected the folder of the MoCap files (AMASS root or synth output)"
        )
    if dataset == "realmix":
        if body not in ("auto", "anny"):
            raise InputError(
                None, f"realmix is posed on anny only (--body auto or anny), not {body}"
            )
        listing = list_realmix(data, synthetic)
        log(listing.summary())
        if not listing.clips:
            raise InputError(data, "no realmix clip of a known content or class was found")
        return Listing(listing.jobs(), listing.classes, "anny", listing.counts())
    if synthetic is not None:
        raise InputError(synthetic, "--synthetic is for --dataset realmix only")
    classes = label_set(dataset)
    ann = load_annotations(annotations if annotations is not None else data)
    jobs = sequence_jobs(classes, ann, data, chunk_s, kit=dataset == "kit")
    if not jobs:
        raise InputError(
            annotations or data, f"the annotations hold no sample of the {dataset} classes"
        )
    return Listing(jobs, classes, body)
