"""Writing a cache, one transaction per ``stmt prepare`` run (:mod:`stmt.data.cache` is
its layout and reading).

:class:`CacheWriter` is the transaction:

- **begin** (``with CacheWriter(...)``): claim the output folder (an output folder of
  :mod:`stmt.fileio`), take the lock (``.lock``; a second writer stops at once with one
  line naming the holder), finish what a killed run left, keep the ``shards/`` of
  the same settings (template, fps, body) and note which sequences an intact previous
  cache of the same settings holds (they are not posed again);
- **adopt** (``stmt prepare --merge``): a sequence as another cache of the same
  settings holds it (a shard cache of ``--shard K/N``), copied at commit;
- **add**: one posed sequence as a shard (``shards/<sha>.npz``, float16 offsets and
  float32 centres, written atomically), unless :meth:`CacheWriter.has` it already: so
  a killed run resumes where it stopped;
- **commit**: a new version folder (``vertices.npy`` / ``centres.npy`` / ``bounds.npy``
  consolidated from the shards and the previous cache, ``template.npz``, then
  ``index.json`` with each file's shape, dtype, size and sha256), renamed into place,
  and the ``current`` symlink switched: the one atomic step that publishes the whole
  cache. The shards go; the last two versions stay.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stmt.clip import frame_bounds, to_cache_form
from stmt.data.cache import (
    ARRAYS,
    CACHE_FORMAT,
    CACHE_VERSION,
    CURRENT,
    INDEX,
    TEMPLATE,
    check_files,
    describe_files,
    load_index,
)
from stmt.data.jobs import SequenceJob
from stmt.errors import InputError
from stmt.fileio import TEMP_PREFIX, OutputFolder, atomic_savez, atomic_text, claim_folder
from stmt.template import Template


def shard_name(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:20]


def write_shard(shards: Path, key: str, frames: np.ndarray) -> int:
    """The sequence ``key`` ((K, N, 3) float32 frames) as ``shards/<sha>.npz`` (float16
    offsets, float32 centres, their per-frame bounds), written atomically; returns K.
    The bounds are computed here, where a worker process writes the shard, so that the
    command's commit only copies."""
    offsets, centres = to_cache_form(frames)
    bounds = frame_bounds(offsets, centres)
    atomic_savez(shards / f"{shard_name(key)}.npz", offsets=offsets, centres=centres, bounds=bounds)
    return len(frames)


class CacheWriter:
    """One ``stmt prepare`` run's transaction on the cache folder ``out`` (module docstring).

    Args:
        out: the cache folder.
        template: the template the sequences are posed on (its vertices only).
        fps: the cache's frame rate (every sequence added is at it).
        body: the body name the sequences are posed on (recorded, and part of the
            settings shards and a previous cache must share to be reused).
        overwrite: write into a folder that holds files stmt did not write
            (:func:`stmt.fileio.claim_folder`).
        log: where a line about a previous cache that cannot be reused goes.
        reuse: keep the sequences of a previous cache in ``out`` (False: only new ones).
    """

    def __init__(
        self,
        out: str | Path,
        template: Template,
        fps: float,
        body: str,
        overwrite: bool = False,
        log: Callable[[str], None] = print,
        reuse: bool = True,
    ):
        self.out = Path(out)
        self.reuse = reuse
        self.template = template
        self.fps = float(fps)
        self.settings = {"template_key": template.key, "fps": self.fps, "body": body}
        self.overwrite = overwrite
        self.log = log
        self.frames: dict[str, int] = {}  # sequence key -> frames in the cache, so far
        # key -> (arrays, offset, frames) of a sequence kept from the previous cache or adopted
        self.previous: dict[str, tuple[tuple[np.ndarray, ...], int, int]] = {}
        self._old: tuple[np.ndarray, ...] | None = None  # the previous cache's arrays
        self._lock = contextlib.ExitStack()

    # ----------------------------------------------------------------- begin
    def __enter__(self):  # the writer itself
        self.folder = claim_folder(self.out, "stmt prepare", self.overwrite, adopt_cache)
        take(self.folder, ".lock")
        self._lock.enter_context(cache_lock(self.out))
        _recover(self.folder)
        self.shards = self.out / "shards"
        take(self.folder, "shards")
        stamp = self.shards / "settings.json"
        if self.shards.exists() and _stamp(stamp) != self.settings:
            self.folder.remove("shards")  # shards of another template / fps / body: unusable
            self.folder.own("shards")
        self.shards.mkdir(exist_ok=True)
        atomic_text(stamp, json.dumps(self.settings))
        self._reuse_previous()
        return self

    def __exit__(self, *exc) -> None:
        self._lock.close()

    def _reuse_previous(self) -> None:
        """The sequences of a previous cache with the same settings, if it is intact."""
        if not self.reuse or not (self.out / INDEX).exists():
            return
        try:
            old = load_index(self.out)
            if not all(old.meta.get(k) == v for k, v in self.settings.items()):
                return
            check_files(self.out, old.meta, full=True)
            srcs = old.meta["sequences"]["source"]
            self._old = tuple(np.load(self.out / name, mmap_mode="r") for name in ARRAYS)
            self.previous = {
                s: (self._old, int(o), int(n))
                for s, o, n in zip(srcs, old.seq_offset, old.seq_length)
            }
        except (InputError, OSError, ValueError, KeyError) as err:
            self.log(
                f"stmt prepare: the existing cache cannot be reused ({err}); posing every file again"
            )
            self.previous, self._old = {}, None

    # ----------------------------------------------------------------- add
    def has(self, key: str) -> bool:
        """Whether the sequence ``key`` is in the cache already (the previous cache, or a
        shard of this or a killed run); a damaged shard is dropped (pose it again)."""
        if key in self.previous:
            self.frames[key] = self.previous[key][2]
            return True
        shard = self.shards / f"{shard_name(key)}.npz"
        if shard.exists():
            try:
                with np.load(shard) as z:
                    self.frames[key] = int(z["centres"].shape[0])
                return True
            except (OSError, ValueError, KeyError):
                shard.unlink()
        return False

    def add(self, key: str, frames: np.ndarray | int) -> None:
        """The sequence ``key``: (K, N, 3) float32 frames at the cache's fps, written as a
        shard; or K, the frames of the shard :func:`write_shard` wrote (a worker process)."""
        count = frames if isinstance(frames, int) else write_shard(self.shards, key, frames)
        _step("shard")
        self.frames[key] = int(count)

    def adopt(self, key: str, arrays: tuple[np.ndarray, ...], offset: int, frames: int) -> None:
        """The sequence ``key`` as another cache of the same settings holds it: ``frames``
        frames at ``offset`` of its ``arrays`` (vertices, centres, bounds), copied at commit."""
        self.previous[key] = (arrays, int(offset), int(frames))
        self.frames[key] = int(frames)
        self._old = None  # the arrays change: the new version cannot link the old files

    # ----------------------------------------------------------------- commit
    def commit(self, jobs: list[SequenceJob], meta: dict) -> dict:
        """Publish the sequences of ``jobs`` that were added (or kept) as the cache, with
        ``meta`` (dataset, class names, chunk_s, ...) in its index; returns the index."""
        kept = [j for j in jobs if j.key in self.frames]
        offsets = np.cumsum([0] + [self.frames[j.key] for j in kept])  # (S + 1,)
        version = _new_version(self.folder)
        self._write_arrays(version, kept, offsets)
        self.template.save(version / TEMPLATE)
        _step("template")
        index = self._index(kept, offsets, meta)
        index["files"] = describe_files(version)
        atomic_text(version / INDEX, json.dumps(index))
        _step("index")
        _commit(self.folder, version)
        self.folder.remove("shards")
        return index

    def _write_arrays(self, version: Path, kept: list[SequenceJob], offsets: np.ndarray) -> None:
        if [j.key for j in kept] == list(self.previous) and self._old is not None:
            for name in ARRAYS:  # the arrays do not change: the new version links the old files
                _link_or_copy(self.out / name, version / name)
        else:
            n_pts, total = self.template.num_points, int(offsets[-1])
            out = [
                np.lib.format.open_memmap(version / name, mode="w+", dtype=dtype,
                                          shape=(total, *tail(n_pts)))
                for name, (dtype, tail) in ARRAYS.items()
            ]  # fmt: skip
            for j, off in zip(kept, offsets):
                self._copy_sequence(j, int(off), out)
                _step("arrays")
            for arr in out:
                arr.flush()
            del out
        _step("arrays-written")

    def _copy_sequence(self, job: SequenceJob, off: int, out: list[np.ndarray]) -> None:
        """One sequence into the new arrays ``out`` (vertices, centres, bounds) at ``off``."""
        n = self.frames[job.key]
        if job.key in self.previous:
            arrays, o, _ = self.previous[job.key]
            for new, old in zip(out, arrays):
                new[off : off + n] = old[o : o + n]
            return
        with np.load(self.shards / f"{shard_name(job.key)}.npz") as z:
            offsets, centres = z["offsets"], z["centres"]
            bounds = z["bounds"] if "bounds" in z else frame_bounds(offsets, centres)
        if not np.isfinite(bounds).all():  # min and max carry a point's NaN or Inf
            raise InputError(job.path, "posed to NaN or Inf vertices; not cached")
        for new, arr in zip(out, (offsets, centres, bounds)):
            new[off : off + n] = arr

    def _index(self, kept: list[SequenceJob], offsets: np.ndarray, meta: dict) -> dict:
        """``index.json`` (layout in :mod:`stmt.data.cache`): the sequences, their samples
        (each segment cut at the cache's fps), and ``window_s``, the median sample length
        (at most ``chunk_s``)."""
        fps, chunk_s = self.fps, float(meta["chunk_s"])
        samples = {"sequence": [], "start": [], "length": [], "label": [], "split": []}
        for si, j in enumerate(kept):
            n = self.frames[j.key]
            for seg in j.segments:
                s = round(seg.start_t * fps)
                e = n if math.isinf(seg.end_t) else min(round(seg.end_t * fps), n)
                if e - s < 1:
                    continue
                for column, value in zip(samples, (si, s, e - s, seg.label, j.split)):
                    samples[column].append(value)
        lengths = np.asarray(samples["length"]) / fps
        window_s = float(min(chunk_s, np.round(np.median(lengths), 1))) if len(lengths) else chunk_s
        return {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "dataset": meta["dataset"],
            "class_names": meta["class_names"],
            **self.settings,
            "num_points": self.template.num_points,
            "window_s": window_s,
            "chunk_s": chunk_s,
            "num_frames_total": int(offsets[-1]),
            "sequences": {
                "source": [j.key for j in kept],
                "offset": [int(o) for o in offsets[:-1]],
                "length": [self.frames[j.key] for j in kept],
                "split": [j.split for j in kept],
                "subject": [j.subject for j in kept],
            },
            "samples": samples,
            **{k: v for k, v in meta.items() if k not in ("dataset", "class_names", "chunk_s")},
        }


# --------------------------------------------------------------------------- the transaction
FAULT_HOOK = None  # tests: called with each write step's name (e.g. to kill the process)


def _step(name: str) -> None:
    if FAULT_HOOK is not None:
        FAULT_HOOK(name)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_VERSION = re.compile(r"v-\d{6}")


def _versions(folder: OutputFolder) -> list[Path]:
    """The finished versions stmt wrote in the cache folder, oldest first."""
    return sorted(
        p for p in folder.path.iterdir()
        if _VERSION.fullmatch(p.name) and p.is_dir() and folder.owns(p.name)
    )  # fmt: skip


def _new_version(folder: OutputFolder) -> Path:
    """An empty folder for the next version (``v-NNNNNN.tmp``, renamed by :func:`_commit`),
    numbered past every version-like name in the folder, stmt's or not."""
    numbers = [int(p.name[2:8]) for p in folder.path.glob("v-[0-9]*") if _VERSION.match(p.name)]
    n = max(numbers, default=0) + 1
    tmp = folder.path / f"v-{n:06d}.tmp"
    folder.own(tmp.name, tmp.name[: -len(".tmp")])
    tmp.mkdir()
    return tmp


def take(folder: OutputFolder, name: str) -> None:
    """Record ``name`` as the cache's before it is written. A folder of that name that
    stmt did not write (in a folder given with ``--overwrite``) is never replaced: the
    run stops with one line instead."""
    p = folder.path / name
    if not folder.owns(name) and p.is_dir() and not p.is_symlink():
        raise InputError(p, "is a folder stmt did not write; move it away or choose another --out")
    folder.own(name)


def _stamp(path: Path) -> dict | None:
    """The settings a shards folder was made with (None when unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


CACHE_NAMES = re.compile(
    r"(index\.json|vertices\.npy|centres\.npy|bounds\.npy|template\.npz|current|\.lock|shards"
    r"|v-\d{6}(\.tmp)?|\.current\.tmp|\..+\.link\.tmp)"
)


def adopt_cache(path: Path, entries: set[str]) -> set[str]:
    """The entries of a folder without a marker that an earlier ``stmt prepare`` wrote
    (:func:`stmt.fileio.check_folder`): the cache's names, when its index (or that of its
    ``current`` version, or its shards' settings) says it is an stmt cache."""
    for f in (path / INDEX, path / CURRENT / INDEX):
        try:
            with open(f, "rb") as fh:
                head = fh.read(4096)
        except OSError:
            continue
        if f'"format": "{CACHE_FORMAT}"'.encode() in head:
            return {n for n in entries if CACHE_NAMES.fullmatch(n)}
    if isinstance(_stamp(path / "shards" / "settings.json"), dict):
        return {n for n in entries if CACHE_NAMES.fullmatch(n)}
    return set()


def _link_or_copy(src: Path, dst: Path) -> None:
    src = Path(os.path.realpath(src))
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _commit(folder: OutputFolder, tmp: Path) -> None:
    """Make the complete version ``tmp`` the cache: rename it into place, switch the
    ``current`` symlink (the one atomic step that publishes it), then make sure the
    top-level names point through ``current`` and drop all but the last two versions."""
    out = folder.path
    for name in os.listdir(tmp):
        fd = os.open(tmp / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(tmp)
    final = tmp.with_name(tmp.name[: -len(".tmp")])
    os.rename(tmp, final)
    _fsync_dir(out)
    _step("version")
    take(folder, CURRENT)
    link = out / f"{TEMP_PREFIX}{CURRENT}.tmp"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(final.name, link)
    os.replace(link, out / CURRENT)  # the switch
    _fsync_dir(out)
    _step("switch")
    _link_names(folder)
    _step("links")
    keep = {final.name, *(p.name for p in _versions(folder)[-2:])}
    for p in _versions(folder):
        if p.name not in keep:
            folder.remove(p.name)


def _link_names(folder: OutputFolder) -> None:
    """Top-level ``index.json``, arrays and template as symlinks through ``current``.
    A cache from before versions has plain files there: its index goes first (so a
    kill half-way leaves an incomplete cache, never a mix), then the rest, the index last."""
    out = folder.path
    for name in (*ARRAYS, TEMPLATE, INDEX):
        take(folder, name)
    index = out / INDEX
    if index.exists() and not index.is_symlink():
        index.unlink()
        _fsync_dir(out)
        _step("legacy-index")
    for name in (*ARRAYS, TEMPLATE, INDEX):  # index last
        target = f"{CURRENT}/{name}"
        path = out / name
        if path.is_symlink() and os.readlink(path) == target:
            continue
        tmp = out / f"{TEMP_PREFIX}{name}.link.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, path)
        _step("link")
    _fsync_dir(out)


def _recover(folder: OutputFolder) -> None:
    """Finish what a killed run left: half-built versions go, and a switched
    ``current`` whose top-level links were not all made gets them."""
    out = folder.path
    for p in out.glob("v-*.tmp"):
        folder.remove(p.name)  # only stmt's
    if folder.owns(CURRENT) and (out / CURRENT).is_dir() and (out / CURRENT / INDEX).is_file():
        _link_names(folder)


class CacheLocked(InputError):
    pass


@contextlib.contextmanager
def cache_lock(out: Path):
    """Hold an exclusive ``fcntl.flock`` on ``out/.lock`` while writing the cache; a
    second writer gets one line saying who holds it."""
    path = out / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (ValueError, OSError):
            holder = {}
        os.close(fd)
        who = (
            f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
            if holder
            else "another process"
        )
        raise CacheLocked(
            out, f"another `stmt prepare` is writing this cache ({who}); wait for it to finish"
        ) from None
    try:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
