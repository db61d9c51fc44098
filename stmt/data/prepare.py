"""``stmt prepare``: pose every sequence of a dataset once into a training cache.

A short composition:

1. the dataset's files and samples (:func:`stmt.data.registry.list_dataset`);
2. the template of the body they are posed on (:func:`stmt.reading.body_topology`,
   :func:`stmt.template.get_template`);
3. one transaction on the cache folder (:class:`stmt.data.cache_writer.CacheWriter`):
   for each file, in a stable order, unless the cache has it already (a killed run
   resumes where it stopped): pose only the template vertices
   (:func:`stmt.reading.read_sequence`), resample linearly to ``fps``
   (:func:`stmt.clip.resample`), add it; then commit, one atomic step that
   publishes the whole cache (layout: :mod:`stmt.data.cache`).

Workers (``workers``, :mod:`stmt.archive`): the files are read and posed in worker
processes and added in the listing's order, so the cache is the same with any number
of workers. Shards (``shard=(K, N)``): only the K-th of N consecutive parts of the
listing is posed, into a shard cache of its own (its index says which part:
``"shard": {"k", "n", "files"}``); :func:`stmt.data.merge.merge` joins the N of them
into the cache one ``prepare`` of the whole listing writes.

realmix (:mod:`stmt.data.realmix`): the files are found under ``data`` by their
names instead of from annotations, each file is one whole-clip sample, and
samples without a label get ``UNLABELLED`` (-1, :mod:`stmt.data.cache`): the classifier's data module
leaves them out, the pretrainer's keeps them (``with_unlabelled``). Its files are
always posed on anny (BVH and ASF/AMC are anny-only; the synthetic clips mixed
in must share the topology).

Failures: a file that is missing is listed under ``missing`` (users rarely have
all of AMASS; BABEL covers all of it) and does not change the exit status. A
file that cannot be read or posed is reported at once, skipped, listed at the
end and recorded under ``failed``; the cache is still written from the rest and
the exit status is 1. Posed geometry that is no body (collapsed to a point, flat:
:func:`stmt.io.mesh.check_plausible`, as ``stmt classify`` checks it) fails the same
way; input that is legal but odd (a size far from a person's: units that are not
metres; a root that travels faster than anyone runs; a degenerate source skeleton)
is cached, with one ``stmt prepare: warning: FILE: ...`` line each. A worker process
that dies (killed, out of memory) fails the file it held the same way, but the exit
status is 2: nothing was wrong with the file as far as stmt knows; rerunning the
command poses it (and only it) again.
With ``strict=True`` the first failure (or missing file) stops the run with an
InputError (CLI exit status 2); finished shards are kept.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stmt import reading
from stmt.archive import Failed, Workers, resolve_workers, shard_range
from stmt.clip import resample
from stmt.data.babel import CHUNK_S
from stmt.data.cache_writer import CacheWriter, write_shard
from stmt.data.jobs import SequenceJob
from stmt.data.registry import list_dataset
from stmt.errors import InputError
from stmt.io.mesh import check_plausible
from stmt.template import get_template


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
    died: int = 0  # files whose worker process died
    warned: int = 0  # files posed in this run with a warning (printed as it was posed)
    shards: int = 0  # shard caches merged (stmt.data.merge)

    @property
    def exit_status(self) -> int:
        return 2 if self.died else 1 if self.failed else 0


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
    workers: int | None = 0,
    shard: tuple[int, int] | None = None,
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
        workers: worker processes that read and pose the files (0: this process; None:
            :func:`stmt.archive.resolve_workers` chooses, by cores and memory).
        shard: ``(K, N)``: pose only the K-th of N consecutive parts of the listing
            into a shard cache (:func:`stmt.data.merge.merge` joins them).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    data, out = Path(data), Path(out)
    listing = list_dataset(dataset, data, annotations, chunk_s, synthetic, body, log)
    part = shard_range(len(listing.jobs), shard)
    jobs = listing.jobs[part.start : part.stop]
    result = PrepareResult(
        cache=out, sequences=len(jobs), samples=sum(len(j.segments) for j in jobs)
    )
    if list_only:
        return result
    rest, faces, body_name = reading.body_topology(
        body=listing.body, body_models=body_models, fmt="amass-smplh"
    )
    template = get_template(faces, rest, num_points, cache_dir=template_cache)
    with CacheWriter(out, template, fps, body_name, overwrite, log) as writer:
        task = PoseTask(listing.body, body_models, template.vertex_ids, writer.fps, writer.shards)
        what = f"prepare {dataset}" + (f" {shard[0]}/{shard[1]}" if shard else "")
        _pose_all(writer, jobs, task, workers, strict, result, what if progress else None)
        if not writer.frames:
            where = f"shard {shard[0]}/{shard[1]} of the dataset" if shard else "the dataset"
            raise InputError(data, f"no file of {where} could be prepared")
        meta = cache_meta(dataset, listing.classes, chunk_s, result.failed, result.missing,
                          listing.summary, data)  # fmt: skip
        if shard is not None:
            meta["shard"] = {"k": shard[0], "n": shard[1], "files": len(listing.jobs)}
        index = writer.commit(jobs, meta)
    result.sequences = len(index["sequences"]["source"])
    result.samples, result.frames = len(index["samples"]["label"]), index["num_frames_total"]
    report(result, data, log)
    return result


def cache_meta(dataset, classes, chunk_s, failed, missing, summary, data) -> dict:
    """What a cache's index records of the run that made it (beside the sequences):
    the same keys in the same order for ``prepare`` and for ``merge``."""
    meta = {"dataset": dataset, "class_names": list(classes), "chunk_s": float(chunk_s),
            "failed": failed, "missing": missing}  # fmt: skip
    if summary is not None:
        meta["listing"] = summary
    meta["data"] = str(data)
    return meta


@dataclass
class PoseTask:
    """One file's template vertices posed at the cache's fps and written as a shard of the
    cache (:func:`~stmt.data.cache_writer.write_shard`), in a worker process: ``(frames
    in the cache, source frames)``, None for a missing file, or a
    :class:`~stmt.archive.Failed` for one that cannot be read or posed."""

    body: str
    body_models: str | Path | None
    vertex_ids: np.ndarray
    fps: float
    shards: Path  # the cache writer's shards folder

    def __call__(self, job: SequenceJob) -> tuple[int, int, list[str]] | Failed | None:
        if not job.path.is_file():
            return None
        try:
            seq = reading.read_sequence(
                job.path, body=self.body, body_models=self.body_models, vertex_ids=self.vertex_ids
            )
            warnings = list(seq.warnings) + check_plausible(seq)  # or InputError: no body
            frames = resample(seq.vertices, float(seq.fps), self.fps)
        except InputError as err:
            return Failed(str(err), "input")
        except Exception as err:  # noqa: BLE001 (one file's failure, reported and skipped)
            return Failed(f"{type(err).__name__}: {err}", "error")
        try:
            return write_shard(self.shards, job.key, frames), seq.num_frames, warnings
        except InputError as err:  # the cache cannot be written (a full disk): the run stops
            return Failed(str(err), "fatal")


def _pose_all(writer, jobs, task, workers, strict, result, progress: str | None) -> None:
    """Pose the ``jobs`` the cache lacks (:class:`PoseTask`, in worker processes), each
    added in the listing's order; a progress bar over the files titled ``progress``."""
    todo = [job for job in jobs if not writer.has(job.key)]
    with (
        tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=progress, unit="file",
             disable=progress is None) as bar,
        Workers(task, resolve_workers(workers, len(todo))) as pool,
    ):  # fmt: skip
        for job, posed in zip(todo, pool.map(todo)):
            _record(writer, job, posed, strict, result, bar)
            bar.update()


def _record(writer: CacheWriter, job: SequenceJob, posed, strict, result, bar) -> None:
    """One file's :class:`PoseTask` result into ``writer``; a file that is missing or
    failed is recorded in ``result`` (or, ``strict``, stops the run)."""
    if posed is None:
        if strict:
            raise InputError(job.path, "file listed in the annotations is missing")
        result.missing.append(str(job.key))
        return
    if isinstance(posed, Failed):
        if strict or posed.kind == "fatal":  # an InputError's line names its file already
            named = posed.kind in ("input", "fatal")  # fatal: the shard that cannot be written
            raise InputError(None if named else job.path, posed.message)
        bar.write(f"stmt prepare: skipped {job.path}: {posed.message}", file=sys.stderr)
        result.failed.append({"source": job.key, "path": str(job.path), "error": posed.message})
        result.died += posed.kind == "died"
        return
    count, source_frames, warnings = posed
    for line in warnings:  # legal but odd (units, a degenerate skeleton): cached, said once
        bar.write(f"stmt prepare: warning: {job.path}: {line}", file=sys.stderr)
    result.warned += bool(warnings)
    writer.add(job.key, count)
    result.posed += 1
    result.posed_frames += source_frames


def report(result: PrepareResult, data: Path, log) -> None:
    """The missing and failed files, after the cache is written."""
    if result.missing:
        shown = ", ".join(result.missing[:5]) + (" ..." if len(result.missing) > 5 else "")
        log(
            f"stmt prepare: warning: {len(result.missing)} annotated files are not under "
            f"{data} and were left out: {shown}"
        )
    if result.warned:
        log(
            f"stmt prepare: warning: {result.warned} files were cached with a warning about "
            "their input (each printed above): check them before training on them"
        )
    if result.failed:
        log(f"stmt prepare: warning: {len(result.failed)} files failed and were skipped:")
        for f in result.failed:
            log(f"  {f['path']}: {f['error']}")
