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
the exit status is 1. With ``strict=True`` the first failure (or missing file)
stops the run with an InputError (CLI exit status 2); finished shards are kept.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from stmt import reading
from stmt.clip import resample
from stmt.data.babel import CHUNK_S
from stmt.data.cache_writer import CacheWriter
from stmt.data.jobs import SequenceJob
from stmt.data.registry import list_dataset
from stmt.errors import InputError
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

    @property
    def exit_status(self) -> int:
        return 1 if self.failed else 0


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
    log = log or (lambda msg: print(msg, file=sys.stderr))
    data, out = Path(data), Path(out)
    listing = list_dataset(dataset, data, annotations, chunk_s, synthetic, body, log)
    result = PrepareResult(cache=out, sequences=len(listing.jobs), samples=listing.samples)
    if list_only:
        return result
    rest, faces, body_name = reading.body_topology(
        body=listing.body, body_models=body_models, fmt="amass-smplh"
    )
    template = get_template(faces, rest, num_points, cache_dir=template_cache)
    with CacheWriter(out, template, fps, body_name, overwrite, log) as writer:
        bar = tqdm(listing.jobs, desc=f"prepare {dataset}", unit="file", disable=not progress)
        for job in bar:
            if not writer.has(job.key):
                _pose_into(writer, job, listing.body, body_models, strict, result, bar)
        if not writer.frames:
            raise InputError(data, "no file of the dataset could be prepared")
        meta = {"dataset": dataset, "class_names": listing.classes, "chunk_s": float(chunk_s),
                "failed": result.failed, "missing": result.missing}  # fmt: skip
        if listing.summary is not None:
            meta["listing"] = listing.summary
        meta["data"] = str(data)
        index = writer.commit(listing.jobs, meta)
    result.sequences = len(index["sequences"]["source"])
    result.samples, result.frames = len(index["samples"]["label"]), index["num_frames_total"]
    _report(result, data, log)
    return result


def _pose_into(writer: CacheWriter, job: SequenceJob, body, body_models, strict, result, bar):
    """Pose one file's template vertices at the cache's fps into ``writer``; a file that is
    missing or fails is recorded in ``result`` (or, ``strict``, stops the run)."""
    if not job.path.is_file():
        if strict:
            raise InputError(job.path, "file listed in the annotations is missing")
        result.missing.append(str(job.key))
        return
    try:
        seq = reading.read_sequence(
            job.path, body=body, body_models=body_models, vertex_ids=writer.template.vertex_ids
        )
        frames = resample(seq.vertices, float(seq.fps), writer.fps)
    except Exception as err:
        msg = str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
        if strict:
            if isinstance(err, InputError):
                raise
            raise InputError(job.path, msg) from err
        bar.write(f"stmt prepare: skipped {job.path}: {msg}", file=sys.stderr)
        result.failed.append({"source": job.key, "path": str(job.path), "error": msg})
        return
    writer.add(job.key, frames)
    result.posed += 1
    result.posed_frames += seq.num_frames


def _report(result: PrepareResult, data: Path, log) -> None:
    """The missing and failed files, after the cache is written."""
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
