"""``stmt prepare``: pose every sequence of a dataset once into a training cache.

Steps (see :mod:`stmt.data.cache` for the layout):

1. The template of the body the files are posed on (:func:`stmt.reading.body_topology`
   then :func:`stmt.template.get_template`), saved as ``template.npz``.
2. For each annotated MoCap file, in a stable order: pose only the template
   vertices (``read_sequence(path, vertex_ids=...)``), resample linearly to
   ``fps``, write ``shards/<sha>.npz`` (float16 offsets, float32 centres) atomically.
   A file already in a shard, or in the cache of a previous run with the same
   template and fps, is not posed again; so a killed run resumes where it stopped.
3. Consolidate into a new version folder (``vertices.npy`` / ``centres.npy`` /
   ``bounds.npy``, ``template.npz``, then ``index.json`` with each file's shape,
   dtype, size and sha256), rename it into place and switch the ``current``
   symlink: one atomic step publishes the whole cache (see :mod:`stmt.data.cache`).
   Shards are removed once consolidated. A previous cache is reused only when its
   files match their checksums.

The run holds an exclusive lock on ``out/.lock``: a second ``stmt prepare`` on
the same folder stops at once with one line naming the holder.

realmix (:mod:`stmt.data.realmix`): the files are found under ``data`` by their
names instead of from annotations, each file is one whole-clip sample, and
samples without a label get ``UNLABELLED`` (-1): the classifier's data module
leaves them out, the pretrainer's keeps them (``with_unlabelled``). Its files are
always posed on anny (BVH and ASF/AMC are anny-only; the synthetic clips mixed
in must share the topology).

Failures: a file that is missing is listed under ``missing`` (users rarely have
all of AMASS; BABEL covers all of it) and does not change the exit status. A
file that cannot be read or posed is reported at once, skipped, listed at the
end and recorded under ``failed``; the cache is still written from the rest and
the exit status is 1. With ``strict=True`` the first failure (or missing file)
stops the run with an InputError (CLI exit status 2); finished shards are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stmt.clip import frame_bounds, resample, to_cache_form
from stmt.data.babel import CHUNK_S, DATASETS, label_set, load_annotations, sequence_jobs
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
from stmt.errors import InputError
from stmt.fileio import TEMP_PREFIX, OutputFolder, atomic_savez, atomic_text, claim_folder

UNLABELLED = -1  # label of a sample for self-supervised pretraining only
OTHER_ACTION = -2  # label of a sample of an action outside the classes ("unknown")


@dataclass
class PrepareResult:
    cache: Path
    sequences: int = 0
    samples: int = 0
    frames: int = 0
    posed: int = 0  # files posed in this run (the rest came from earlier runs)
    posed_frames: int = 0  # source frames posed in this run
    failed: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        return 1 if self.failed else 0


def shard_name(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:20]


def realmix_jobs(data: Path, synthetic, log) -> tuple[list, list[str], dict]:
    """realmix's jobs (one whole-clip segment each), class names and counts; logs the counts."""
    from stmt.data.realmix import list_realmix

    listing = list_realmix(data, synthetic)
    log(listing.summary())
    if not listing.clips:
        raise InputError(data, "no realmix clip of a known content or class was found")
    return listing.jobs(), listing.classes, listing.counts()


def prepare(
    dataset: str,
    data: str | Path,
    out: str | Path,
    annotations: str | Path | None = None,
    num_points: int = 512,
    fps: float = 30.0,
    body: str = "auto",
    body_models: str | Path | None = None,
    strict: bool = False,
    chunk_s: float = CHUNK_S,
    template_cache: str | Path | None = None,
    progress: bool = True,
    log=None,
    synthetic: str | Path | None = None,
    list_only: bool = False,
    overwrite: bool = False,
) -> PrepareResult:
    """Build (or finish) the cache ``out`` for ``dataset``; see the module docstring.

    Args:
        dataset: "synthetic", "babel60", "babel120", "kit" or "realmix".
        data: AMASS root (for synthetic: the ``stmt synth`` output folder; for
            realmix: a folder holding the Bandai-Namco and/or HDM05 clones).
        out: cache folder.
        annotations: folder of BABEL ``train.json``/``val.json`` (default: ``data``).
        num_points: template vertices N.
        fps: frame rate of the cache.
        body, body_models: body model to pose parameter files with (as ``stmt inspect``).
        strict: stop at the first failure (InputError) instead of skipping.
        chunk_s: longest sample (s); longer segments are cut (not realmix: one clip, one sample).
        template_cache: folder of cached templates (default ``$STMT_CACHE_DIR/templates``).
        synthetic: realmix only: a ``stmt synth`` output whose clips of the classes the
            recorded data lacks are mixed in (:data:`stmt.data.realmix.SYNTH_USED`).
        list_only: list the files and samples (counted in the result), pose and write nothing.
        overwrite: write into a folder that holds files stmt did not write (an output
            folder of :mod:`stmt.fileio`: only the cache's own names are written, and a
            folder of such a name that stmt did not write stops the run).
    """
    from tqdm import tqdm

    from stmt.reading import body_topology, read_sequence
    from stmt.template import get_template

    log = log or (lambda msg: print(msg, file=sys.stderr))
    if dataset not in DATASETS:
        raise InputError(
            None, f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}"
        )
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise InputError(
            data, "expected the folder of the MoCap files (AMASS root or synth output)"
        )
    summary = None
    if dataset == "realmix":
        if body not in ("auto", "anny"):
            raise InputError(
                None, f"realmix is posed on anny only (--body auto or anny), not {body}"
            )
        body = "anny"
        jobs, classes, summary = realmix_jobs(data, synthetic, log)
    else:
        if synthetic is not None:
            raise InputError(synthetic, "--synthetic is for --dataset realmix only")
        ann = load_annotations(annotations if annotations is not None else data)
        jobs = sequence_jobs(dataset, ann, data, chunk_s)
        if not jobs:
            raise InputError(
                annotations or data, f"the annotations hold no sample of the {dataset} classes"
            )
        classes = label_set(dataset)
    if list_only:
        n = sum(len(j.segments) for j in jobs)
        return PrepareResult(cache=out, sequences=len(jobs), samples=n)

    folder = claim_folder(out, "stmt prepare", overwrite, adopt_cache)
    take(folder, ".lock")
    with cache_lock(out):
        _recover(folder)
        rest, faces, body_name = body_topology(
            body=body, body_models=body_models, fmt="amass-smplh"
        )
        template = get_template(faces, rest, num_points, cache_dir=template_cache)
        settings = {"template_key": template.key, "fps": float(fps), "body": body_name}
        shards = out / "shards"
        stamp = shards / "settings.json"
        take(folder, "shards")
        if shards.exists() and _stamp(stamp) != settings:
            folder.remove("shards")  # shards of another template / fps / body: unusable
            folder.own("shards")
        shards.mkdir(exist_ok=True)
        atomic_text(stamp, json.dumps(settings))

        # sequences already in a previous cache with the same settings, if it is intact
        previous: dict[str, tuple[int, int]] = {}
        old_verts = old_centres = old_bounds = None
        if (out / INDEX).exists():
            try:
                old = load_index(out)
                if all(old.meta.get(k) == v for k, v in settings.items()):
                    check_files(out, old.meta, full=True)
                    srcs = old.meta["sequences"]["source"]
                    previous = {
                        s: (int(o), int(n)) for s, o, n in zip(srcs, old.seq_offset, old.seq_length)
                    }
                    old_verts = np.load(out / "vertices.npy", mmap_mode="r")
                    old_centres = np.load(out / "centres.npy", mmap_mode="r")
                    old_bounds = np.load(out / "bounds.npy", mmap_mode="r")
            except (InputError, OSError, ValueError, KeyError) as err:
                log(
                    f"stmt prepare: the existing cache cannot be reused ({err}); posing every file again"
                )
                previous = {}

        result = PrepareResult(cache=out)
        done: dict[str, int] = {}  # job key -> frames at the cache fps
        bar = tqdm(jobs, desc=f"prepare {dataset}", unit="file", disable=not progress)
        for job in bar:
            shard = shards / f"{shard_name(job.key)}.npz"
            if job.key in previous:
                done[job.key] = previous[job.key][1]
                continue
            if shard.exists():
                try:
                    with np.load(shard) as z:
                        done[job.key] = int(z["centres"].shape[0])
                    continue
                except (OSError, ValueError, KeyError):
                    shard.unlink()  # a damaged shard: pose the file again
            if not job.path.is_file():
                if strict:
                    raise InputError(job.path, "file listed in the annotations is missing")
                result.missing.append(str(job.key))
                continue
            try:
                seq = read_sequence(
                    job.path, body=body, body_models=body_models, vertex_ids=template.vertex_ids
                )
                frames = resample(seq.vertices, float(seq.fps), fps)
            except Exception as err:
                msg = str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
                if strict:
                    if isinstance(err, InputError):
                        raise
                    raise InputError(job.path, msg) from err
                bar.write(f"stmt prepare: skipped {job.path}: {msg}", file=sys.stderr)
                result.failed.append({"source": job.key, "path": str(job.path), "error": msg})
                continue
            offsets, centres = to_cache_form(frames)
            atomic_savez(shard, offsets=offsets, centres=centres)
            _step("shard")
            done[job.key] = len(frames)
            result.posed += 1
            result.posed_frames += seq.num_frames

        # ---- consolidate
        kept = [j for j in jobs if j.key in done]
        if not kept:
            raise InputError(data, "no file of the dataset could be prepared")
        n_pts = template.num_points
        seq_offset, total = [], 0
        for j in kept:
            seq_offset.append(total)
            total += done[j.key]
        same = [j.key for j in kept] == list(previous) and old_verts is not None
        version = _new_version(folder)
        if same:  # the arrays do not change: the new version links the old files
            for name in ARRAYS:
                _link_or_copy(out / name, version / name)
        else:
            verts = np.lib.format.open_memmap(
                version / "vertices.npy", mode="w+", dtype=np.float16, shape=(total, n_pts, 3)
            )
            cents = np.lib.format.open_memmap(
                version / "centres.npy", mode="w+", dtype=np.float32, shape=(total, 3)
            )
            bnds = np.lib.format.open_memmap(
                version / "bounds.npy", mode="w+", dtype=np.float32, shape=(total, 2, 3)
            )
            for j, off in zip(kept, seq_offset):
                n = done[j.key]
                if j.key in previous:
                    o = previous[j.key][0]
                    verts[off : off + n] = old_verts[o : o + n]
                    cents[off : off + n] = old_centres[o : o + n]
                    bnds[off : off + n] = old_bounds[o : o + n]
                else:
                    with np.load(shards / f"{shard_name(j.key)}.npz") as z:
                        if not (
                            np.isfinite(z["offsets"]).all() and np.isfinite(z["centres"]).all()
                        ):
                            raise InputError(j.path, "posed to NaN or Inf vertices; not cached")
                        verts[off : off + n] = z["offsets"]
                        cents[off : off + n] = z["centres"]
                        bnds[off : off + n] = frame_bounds(z["offsets"], z["centres"])
                _step("arrays")
            for arr in (verts, cents, bnds):
                arr.flush()
            del verts, cents, bnds
        _step("arrays-written")
        template.save(version / TEMPLATE)
        _step("template")

        samples = {"sequence": [], "start": [], "length": [], "label": [], "split": []}
        for si, j in enumerate(kept):
            n = done[j.key]
            for seg in j.segments:
                s = round(seg.start_t * fps)
                e = n if math.isinf(seg.end_t) else min(round(seg.end_t * fps), n)
                if e - s < 1:
                    continue
                samples["sequence"].append(si)
                samples["start"].append(s)
                samples["length"].append(e - s)
                samples["label"].append(seg.label)
                samples["split"].append(j.split)
        lengths = np.asarray(samples["length"]) / fps
        window_s = float(min(chunk_s, np.round(np.median(lengths), 1))) if len(lengths) else chunk_s
        index = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "dataset": dataset,
            "class_names": classes,
            **settings,
            "num_points": n_pts,
            "window_s": window_s,
            "chunk_s": float(chunk_s),
            "num_frames_total": total,
            "sequences": {
                "source": [j.key for j in kept],
                "offset": seq_offset,
                "length": [done[j.key] for j in kept],
                "split": [j.split for j in kept],
                "subject": [j.subject for j in kept],
            },
            "samples": samples,
            "failed": result.failed,
            "missing": result.missing,
        }
        if summary is not None:
            index["listing"] = summary
        index["data"] = str(data)
        index["files"] = describe_files(version)
        atomic_text(version / INDEX, json.dumps(index))
        _step("index")
        _commit(folder, version)
        folder.remove("shards")

        result.sequences, result.samples, result.frames = len(kept), len(samples["label"]), total
        if result.missing:
            shown = ", ".join(result.missing[:5]) + (" ..." if len(result.missing) > 5 else "")
            log(
                f"stmt prepare: warning: {len(result.missing)} annotated files are not under "
                f"{data} and were left out: {shown}"
            )
        if result.failed:
            log(f"stmt prepare: warning: {len(result.failed)} files failed and were skipped:")
            for f in result.failed:
                log(f"  {f['path']}: {f['error']}")
        return result


# --------------------------------------------------------------------------- transaction
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
    import fcntl
    import socket
    import time

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
