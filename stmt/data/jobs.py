"""What a dataset lists for ``stmt prepare``: the files to pose and the samples cut from them.

A :class:`SequenceJob` is one MoCap file with its split and subject; each of its
:class:`Segment` s is one sample, a time span with a label: a class index, or one of
the two codes of :mod:`stmt.data.cache` that are no class (``UNLABELLED``,
``OTHER_ACTION``). :mod:`stmt.data.babel` and :mod:`stmt.data.realmix` make them,
:mod:`stmt.data.registry` chooses which, :mod:`stmt.data.cache_writer` stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Segment:
    """One sample: a labelled time span of a sequence (``end_t`` may be ``inf``: to the end)."""

    label: int
    start_t: float
    end_t: float


@dataclass
class SequenceJob:
    """One MoCap file to pose, with the samples cut from it."""

    key: str  # a stable id in the cache (BABEL: feat_p as written in the annotations)
    path: Path
    split: str
    subject: str
    segments: list[Segment] = field(default_factory=list)
