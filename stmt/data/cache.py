"""The prepared cache that training reads (written by ``stmt prepare``).

Layout of a cache folder: each run of ``stmt prepare`` that changes anything
writes a complete new version ``v-NNNNNN/`` (arrays, template, index.json with
each file's shape, dtype, size and sha256) and makes it visible with one atomic
switch of the ``current`` symlink; the top-level names below are fixed symlinks
through ``current``, so a reader sees the old cache or the new one, never a mix.
A kill at any step leaves the previous version in place. ``.lock`` is held
(``fcntl.flock``) by the ``stmt prepare`` writing the folder. Caches written
before versions (plain files at the top level) are read as they are and
converted by the next ``stmt prepare``::

    index.json      what is in the cache
    vertices.npy    float16 (F, N, 3): every frame of every sequence, template
                    vertices only, metres, relative to the frame's centre
    centres.npy     float32 (F, 3): the mean of the N vertices of each frame
                    (world position = vertices + centres; splitting keeps float16
                    precise to ~0.5 mm whatever the distance from the origin)
    bounds.npy      float32 (F, 2, 3): per-frame min and max corner of the N vertices
                    (world, as reconstructed from the two arrays above), so the
                    loader normalises a clip without reducing over its points
    template.npz    the :class:`stmt.template.Template` (vertex ids, geodesic)
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

A sample covers frames ``offset[seq] + start`` .. ``+ length`` of the arrays; its label
is a class index, :data:`UNLABELLED` or :data:`OTHER_ACTION`. Writing a cache is
:mod:`stmt.data.cache_writer`'s (one transaction per ``stmt prepare`` run).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from stmt import limits
from stmt.errors import InputError
from stmt.fileio import read_text
from stmt.io.detect import TRACKED_SUFFIXES

ARRAYS = {  # name -> (dtype, shape after the frame count F, given N points)
    "vertices.npy": ("float16", lambda n: (n, 3)),
    "centres.npy": ("float32", lambda n: (3,)),
    "bounds.npy": ("float32", lambda n: (2, 3)),
}
TEMPLATE = "template.npz"
INDEX = "index.json"
FILES = (*ARRAYS, TEMPLATE, INDEX)  # the top-level names, symlinks through CURRENT
CURRENT = "current"
_REQUIRED_KEYS = ("class_names", "fps", "num_points", "window_s", "num_frames_total",
                  "sequences", "samples")  # fmt: skip

CACHE_FORMAT = "stmt-cache"
CACHE_VERSION = 1

# sample labels that are no class
UNLABELLED = -1  # a sample for self-supervised pretraining only
OTHER_ACTION = -2  # a sample of an action outside the classes (what "unknown" is learnt on)


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
        """Sample indices of ``split`` ("train", "val", "test"; "train+test" for several)."""
        return np.nonzero(np.isin(self.sample_split, split.split("+")))[0]

    def longest_labelled_s(self, split: str, default: float) -> float:
        """Seconds of the longest labelled sample of ``split`` (``default`` without one)."""
        ids = self.split_indices(split)
        ids = ids[self.sample_label[ids] >= 0]
        if len(ids) == 0:
            return default
        return float(np.max(self.sample_length[ids])) / self.fps

    def sample_frame_start(self) -> np.ndarray:
        """(M,) absolute first frame of each sample in vertices.npy."""
        return self.seq_offset[self.sample_seq] + self.sample_start

    def sample_subject(self) -> list[str]:
        return [self.seq_subject[s] for s in self.sample_seq]

    def sample_input_kind(self) -> np.ndarray:
        """(M,) str: "tracked" for the samples of joint-position files a sensor tracked
        (by their file's suffix, :data:`stmt.io.detect.TRACKED_SUFFIXES`), else "mocap"."""
        files = self.meta.get("sequences", {}).get("source") or [""] * len(self.seq_subject)
        kind = ["tracked" if Path(f).suffix.lower() in TRACKED_SUFFIXES else "mocap" for f in files]
        return np.asarray(kind, dtype="<U7")[self.sample_seq]

    def sample_source(self) -> np.ndarray:
        """(M,) str: the source of each sample, its subject up to the first "/" (realmix:
        "bandai", "hdm05", "synthetic")."""
        return np.asarray([self.seq_subject[s].split("/", 1)[0] for s in self.sample_seq], str)


def rebuild_hint(meta: dict | None = None) -> str:
    """What to rerun to rebuild a cache, from what its index says it was built with."""
    meta = meta or {}
    if meta.get("dataset") and meta.get("data"):
        return (
            f"rebuild it: stmt prepare --dataset {meta['dataset']} --data {meta['data']} "
            f"--out <this folder> --num-points {meta.get('num_points')} --fps {meta.get('fps'):g}"
        )
    return "rebuild it: rerun `stmt prepare` with the options that built it"


def load_index(cache: str | Path, check: bool = True) -> CacheIndex:
    """Read ``cache/index.json`` (raises InputError when missing or not a cache).

    With ``check`` the cache's files are checked against the index cheaply (shapes,
    dtypes, sizes, the template's point count; see :func:`check_files`)."""
    root = Path(cache)
    f = root / INDEX
    if not f.is_file():
        if (root / CURRENT).is_dir() or root.joinpath("shards").is_dir():
            raise InputError(root, "the cache is incomplete (a `stmt prepare` was interrupted); "
                             "rerun that command to finish it")  # fmt: skip
        raise InputError(root, "not a prepared cache (no index.json); run `stmt prepare` first")
    text = read_text(f, "a cache index (JSON)", limits.MAX_ANNOTATION_BYTES)  # bounded
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise InputError(f, f"not valid JSON ({err}); {rebuild_hint()}") from None
    if not isinstance(meta, dict):
        raise InputError(f, f"not a cache index (a {type(meta).__name__}); {rebuild_hint()}")
    if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
        raise InputError(
            f,
            f"expected a {CACHE_FORMAT} v{CACHE_VERSION} index, got "
            f"{meta.get('format')} v{meta.get('version')}; rerun `stmt prepare`",
        )
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if missing:
        raise InputError(f, f"lacks {', '.join(missing)}; {rebuild_hint(meta)}")
    try:
        seqs, samples = meta["sequences"], meta["samples"]
        index = CacheIndex(
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
        total, n = int(meta["num_frames_total"]), int(meta["num_points"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(
            f, f"is malformed ({type(err).__name__}: {err}); {rebuild_hint(meta)}"
        ) from None
    ends = index.seq_offset + index.seq_length
    if (
        len(index.sample_seq)
        and (index.sample_seq.min() < 0 or index.sample_seq.max() >= len(index.seq_offset))
        or (len(ends) and ends.max() > total)
    ):
        raise InputError(f, f"its samples point outside the arrays; {rebuild_hint(meta)}")
    if n < 1 or total < 0:
        raise InputError(f, f"num_points {n}, num_frames_total {total}; {rebuild_hint(meta)}")
    if check:
        check_files(root, meta)
    return index


def file_digest(path: Path) -> str:
    """sha256 of a file, read 16 MB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()


def describe_files(root: Path) -> dict:
    """The ``files`` record of an index: shape, dtype, size and sha256 of each file."""
    out = {}
    for name in (*ARRAYS, TEMPLATE):
        path = root / name
        entry = {"bytes": path.stat().st_size, "sha256": file_digest(path)}
        if name in ARRAYS:
            shape, dtype, _ = _npy_header(path)
            entry.update(shape=list(shape), dtype=str(dtype))
        out[name] = entry
    return out


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a .npy file, from its header alone."""
    with open(path, "rb") as fh:
        version = npy.read_magic(fh)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = read(fh)
        return tuple(shape), np.dtype(dtype), fh.tell()


def check_files(root: Path, meta: dict, full: bool = False) -> None:
    """Check the cache's files against its index: present, the shapes and dtypes the
    index implies (F frames, N points), the recorded sizes, the template's point
    count; with ``full`` also the recorded sha256 (old caches without one: a scan for
    NaN/Inf instead). Raises one InputError line naming the file and what to rerun."""
    total, n = int(meta["num_frames_total"]), int(meta["num_points"])
    recorded = meta.get("files") or {}
    hint = rebuild_hint(meta)
    for name, (dtype, tail) in ARRAYS.items():
        path = root / name
        want = (total, *tail(n))
        try:
            shape, got_dtype, header = _npy_header(path)
            size = path.stat().st_size
        except FileNotFoundError:
            raise InputError(path, f"is missing from the cache; {hint}") from None
        except (OSError, ValueError, SyntaxError) as err:
            raise InputError(path, f"is not a readable .npy array ({err}); {hint}") from None
        if tuple(shape) != want or got_dtype != np.dtype(dtype):
            raise InputError(
                path, f"holds {got_dtype} {tuple(shape)}, index.json says {dtype} {want}; {hint}"
            )
        if size != header + int(np.prod(want)) * np.dtype(dtype).itemsize:
            raise InputError(path, f"is {size} bytes, truncated or padded; {hint}")
        if name in recorded and recorded[name].get("bytes") not in (None, size):
            raise InputError(
                path, f"is {size} bytes, index.json says {recorded[name]['bytes']}; {hint}"
            )
    tpath = root / TEMPLATE
    if (
        TEMPLATE in recorded
        and tpath.is_file()
        and tpath.stat().st_size != recorded[TEMPLATE]["bytes"]
    ):
        raise InputError(tpath, f"is {tpath.stat().st_size} bytes, index.json says "
                         f"{recorded[TEMPLATE]['bytes']}; {hint}")  # fmt: skip
    try:
        with np.load(tpath) as z:
            ids, geo = z["vertex_ids"], z["geodesic"]
    except FileNotFoundError:
        raise InputError(tpath, f"is missing from the cache; {hint}") from None
    except Exception as err:  # noqa: BLE001 (BadZipFile, KeyError, zlib.error, ...)
        raise InputError(
            tpath, f"is not a readable template ({type(err).__name__}); {hint}"
        ) from None
    if ids.shape != (n,) or geo.shape != (n, n):
        raise InputError(
            tpath, f"holds {ids.shape[0] if ids.ndim else 0} points, index.json says {n}; {hint}"
        )
    if not full:
        return
    for name in (*ARRAYS, TEMPLATE):
        path = root / name
        if name in recorded and "sha256" in recorded[name]:
            if file_digest(path) != recorded[name]["sha256"]:
                raise InputError(
                    path, f"does not match its sha256 in index.json (corrupted); {hint}"
                )
        elif name in ARRAYS:
            arr = np.load(path, mmap_mode="r")
            for i in range(0, len(arr), 65536):
                if not np.isfinite(arr[i : i + 65536]).all():
                    raise InputError(path, f"holds NaN or Inf (near frame {i}); {hint}")


def verify_cache(cache: str | Path) -> CacheIndex:
    """Full check of a cache (``stmt prepare --verify``): :func:`load_index` and
    :func:`check_files` with the checksums."""
    index = load_index(cache)
    check_files(Path(cache), index.meta, full=True)
    return index


def open_arrays(cache: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Memory-mapped ``vertices`` (F, N, 3) float16, ``centres`` (F, 3) float32 and
    ``bounds`` (F, 2, 3) float32."""
    root = Path(cache)
    try:
        meta = json.loads((root / INDEX).read_text())
        check_files(root, meta)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # load_index (called first by every reader) reports a bad index
    try:
        verts = np.load(root / "vertices.npy", mmap_mode="r")
        centres = np.load(root / "centres.npy", mmap_mode="r")
        bounds = np.load(root / "bounds.npy", mmap_mode="r")
    except (OSError, ValueError) as err:
        raise InputError(
            root, f"cache arrays are unreadable ({err}); rerun `stmt prepare`"
        ) from None
    return verts, centres, bounds
