"""The prepared cache that training reads (written by ``stmt prepare``).

Layout of a cache folder::

    index.json      what is in the cache (written last: its presence means complete)
    vertices.npy    float16 (F, N, 3): every frame of every sequence, template
                    vertices only, metres, relative to the frame's centre
    centres.npy     float32 (F, 3): the mean of the N vertices of each frame
                    (world position = vertices + centres; splitting keeps float16
                    precise to ~0.5 mm whatever the distance from the origin)
    bounds.npy      float32 (F, 2, 3): per-frame min and max corner of the N vertices
                    (world, as reconstructed from the two arrays above), so the
                    loader normalises a clip without reducing over its points
    template.npz    the :class:`stmt.data.template.Template` (vertex ids, geodesic)
    shards/         per-sequence pieces of an unfinished prepare run

``index.json``::

    {"format": "stmt-cache", "version": 1, "dataset": ..., "class_names": [...],
     "fps": 30.0, "num_points": N, "window_s": ..., "chunk_s": 5.0, "body": ...,
     "template_key": ..., "num_frames_total": F,
     "sequences": {"source": [...], "offset": [...], "length": [...],
                   "split": [...], "subject": [...]},
     "samples":   {"sequence": [...], "start": [...], "length": [...],
                   "label": [...], "split": [...]},
     "failed": [{"source": ..., "error": ...}], "missing": [...]}

A sample covers frames ``offset[seq] + start`` .. ``+ length`` of the arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stmt.errors import InputError

CACHE_FORMAT = "stmt-cache"
CACHE_VERSION = 1


@dataclass
class CacheIndex:
    """``index.json`` of a cache, with the sample columns as numpy arrays."""

    root: Path
    meta: dict
    seq_offset: np.ndarray  # (S,) int64
    seq_length: np.ndarray  # (S,) int64
    seq_subject: list[str]
    sample_seq: np.ndarray  # (M,) int64
    sample_start: np.ndarray  # (M,) int64, frames from the sequence start
    sample_length: np.ndarray  # (M,) int64
    sample_label: np.ndarray  # (M,) int64
    sample_split: np.ndarray  # (M,) str

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def num_points(self) -> int:
        return int(self.meta["num_points"])

    @property
    def window_s(self) -> float:
        return float(self.meta["window_s"])

    def split_indices(self, split: str) -> np.ndarray:
        """Sample indices of ``split`` ("train", "val", "test")."""
        return np.nonzero(self.sample_split == split)[0]

    def sample_frame_start(self) -> np.ndarray:
        """(M,) absolute first frame of each sample in vertices.npy."""
        return self.seq_offset[self.sample_seq] + self.sample_start

    def sample_subject(self) -> list[str]:
        return [self.seq_subject[s] for s in self.sample_seq]


def load_index(cache: str | Path) -> CacheIndex:
    """Read ``cache/index.json`` (raises InputError when missing or not a cache)."""
    root = Path(cache)
    f = root / "index.json"
    if not f.is_file():
        raise InputError(root, "not a prepared cache (no index.json); run `stmt prepare` first")
    try:
        meta = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f, f"not valid JSON ({err})") from None
    if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
        raise InputError(
            f,
            f"expected a {CACHE_FORMAT} v{CACHE_VERSION} index, got "
            f"{meta.get('format')} v{meta.get('version')}; rerun `stmt prepare`",
        )
    seqs, samples = meta["sequences"], meta["samples"]
    return CacheIndex(
        root=root,
        meta=meta,
        seq_offset=np.asarray(seqs["offset"], dtype=np.int64),
        seq_length=np.asarray(seqs["length"], dtype=np.int64),
        seq_subject=list(seqs["subject"]),
        sample_seq=np.asarray(samples["sequence"], dtype=np.int64),
        sample_start=np.asarray(samples["start"], dtype=np.int64),
        sample_length=np.asarray(samples["length"], dtype=np.int64),
        sample_label=np.asarray(samples["label"], dtype=np.int64),
        sample_split=np.asarray(samples["split"], dtype=str),
    )


def open_arrays(cache: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Memory-mapped ``vertices`` (F, N, 3) float16, ``centres`` (F, 3) float32 and
    ``bounds`` (F, 2, 3) float32."""
    root = Path(cache)
    try:
        verts = np.load(root / "vertices.npy", mmap_mode="r")
        centres = np.load(root / "centres.npy", mmap_mode="r")
        bounds = np.load(root / "bounds.npy", mmap_mode="r")
    except (OSError, ValueError) as err:
        raise InputError(
            root, f"cache arrays are unreadable ({err}); rerun `stmt prepare`"
        ) from None
    return verts, centres, bounds


def frame_bounds(offsets: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(T, 2, 3) float32 per-frame min/max of ``offsets`` (T, N, 3) + ``centres`` (T, 3)."""
    world = offsets.astype(np.float32) + centres[:, None, :]  # (T, N, 3)
    return np.stack([world.min(axis=1), world.max(axis=1)], axis=1)


def gather_frames(verts: np.ndarray, centres: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """World positions float32 ``frames.shape + (N, 3)`` of the given absolute frames."""
    flat = frames.reshape(-1)
    out = verts[flat].astype(np.float32)  # (K, N, 3)
    out += centres[flat][:, None, :]
    return out.reshape(*frames.shape, *out.shape[1:])
