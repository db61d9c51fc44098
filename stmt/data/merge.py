"""``stmt prepare --merge SHARD... --out CACHE``: shard caches joined into one cache.

``stmt prepare --shard K/N`` poses the K-th of N consecutive parts of a dataset's
listing into a cache of its own, whose index says which part it is (``"shard": {"k",
"n", "files"}``). :func:`merge` checks the N shard caches (each in full, as
``--verify`` does; the same dataset, settings, template and listing; every part from 1
to N once) and writes, in one transaction of :class:`~stmt.data.cache_writer.CacheWriter`,
the cache a single ``stmt prepare`` of the whole listing writes: the parts' sequences in
the listing's order, their samples, and the failed and missing files of every part.

The template is compared by what it holds, not by its key or file digest: the same vertex
ids and rest positions, and geodesics within :data:`GEODESIC_ATOL`. Shards prepared on
different CPUs differ there: anny triangulates a few quads of its mesh by float32
rounding, so the body's faces (the key's input) differ by machine while its template
differs by 1e-7 m.

The samples are taken from the shard indexes (frames at the cache's fps) as segments
again (seconds = frames / fps, which give the same frames back), so the merged index is
made by the code that makes every index.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stmt.data.cache import TEMPLATE, CacheIndex, open_arrays, verify_cache
from stmt.data.cache_writer import CacheWriter
from stmt.data.jobs import Segment, SequenceJob
from stmt.data.prepare import PrepareResult, cache_meta
from stmt.errors import InputError
from stmt.template import Template

# what every shard of one dataset's run shares (besides the template's content)
SHARED = ("dataset", "class_names", "chunk_s", "fps", "num_points", "body", "listing")
GEODESIC_ATOL = 1e-5  # metres: shards of one run from different CPUs came 1.2e-7 apart


def merge(
    shards: list[str | Path],
    out: str | Path,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> PrepareResult:
    """Join the shard caches ``shards`` (any order) into the cache ``out``; see the
    module docstring. Raises one :class:`InputError` line for a shard that is damaged,
    from another run, given twice or missing."""
    out = Path(out)
    paths = [Path(p) for p in shards]
    indexes = _check_shards(paths, out)
    order = sorted(range(len(paths)), key=lambda i: indexes[i].meta["shard"]["k"])
    first = indexes[order[0]].meta
    template = Template.load(paths[order[0]] / TEMPLATE)
    jobs: list[SequenceJob] = []
    failed: list[dict] = []
    missing: list[str] = []
    with CacheWriter(out, template, first["fps"], first["body"], overwrite, log, reuse=False) as w:
        for i in order:
            arrays, index = open_arrays(paths[i]), indexes[i]
            for job, offset, length in zip(jobs_of(index, paths[i]), index.seq_offset,
                                           index.seq_length):  # fmt: skip
                w.adopt(job.key, arrays, int(offset), int(length))
                jobs.append(job)
            failed += index.meta.get("failed", [])
            missing += index.meta.get("missing", [])
        meta = cache_meta(first["dataset"], first["class_names"], first["chunk_s"], failed,
                          missing, first.get("listing"), first.get("data", ""))  # fmt: skip
        index = w.commit(jobs, meta)
    return PrepareResult(
        cache=out,
        sequences=len(index["sequences"]["source"]),
        samples=len(index["samples"]["label"]),
        frames=index["num_frames_total"],
        failed=failed,
        missing=missing,
        shards=len(paths),
    )


def jobs_of(index: CacheIndex, path: Path) -> list[SequenceJob]:
    """The sequences of a cache as the jobs that made them: key, split, subject, and each
    sample a segment (its frames at the cache's fps as seconds)."""
    seqs, fps = index.meta["sequences"], index.fps
    jobs = [
        SequenceJob(key, path, split, subject)
        for key, split, subject in zip(seqs["source"], seqs["split"], seqs["subject"])
    ]
    for seq, start, length, label in zip(
        index.sample_seq, index.sample_start, index.sample_length, index.sample_label
    ):
        start, end = int(start), int(start) + int(length)
        jobs[int(seq)].segments.append(Segment(int(label), start / fps, end / fps))
    return jobs


def _check_shards(paths: list[Path], out: Path) -> list[CacheIndex]:
    """Each shard verified in full, all of one run, every part 1..N once; their indexes."""
    if not paths:
        raise InputError(None, "--merge needs the shard caches to join")
    real_out = os.path.realpath(out)
    indexes = []
    for path in paths:
        if os.path.realpath(path) == real_out:
            raise InputError(path, "is the --out of the merge; write the merged cache elsewhere")
        index = verify_cache(path)
        part = index.meta.get("shard")
        if not isinstance(part, dict) or not {"k", "n", "files"} <= set(part):
            raise InputError(path, "is not a shard cache (made by `stmt prepare --shard K/N`)")
        indexes.append(index)
    first, path0 = indexes[0].meta, paths[0]
    for path, index in zip(paths[1:], indexes[1:]):
        meta = index.meta
        for key in SHARED:
            if meta.get(key) != first.get(key):
                raise InputError(
                    path, f"has another {key} than {path0}: not a shard of the same run"
                )
        mine, theirs = meta["shard"], first["shard"]
        if (mine["n"], mine["files"]) != (theirs["n"], theirs["files"]):
            raise InputError(
                path,
                f"is shard {mine['k']}/{mine['n']} of a listing of {mine['files']} files, "
                f"{path0} one of {theirs['n']} shards of {theirs['files']} files",
            )
        if index.meta["files"][TEMPLATE]["sha256"] != first["files"][TEMPLATE]["sha256"]:
            _check_same_template(path, path0)
    _check_parts(paths, indexes)
    return indexes


def _check_same_template(path: Path, path0: Path) -> None:
    """The template of ``path`` holds what the one of ``path0`` holds (module docstring)."""
    mine, theirs = Template.load(path / TEMPLATE), Template.load(path0 / TEMPLATE)
    if not np.array_equal(mine.vertex_ids, theirs.vertex_ids) or not np.allclose(
        mine.rest, theirs.rest, rtol=0, atol=1e-6
    ):
        raise InputError(path, f"has another template than {path0} (other vertices)")
    apart = float(np.abs(mine.geodesic - theirs.geodesic).max())
    if not apart <= GEODESIC_ATOL:
        raise InputError(
            path, f"has another template than {path0} (geodesics up to {apart:.2g} m apart)"
        )


def _check_parts(paths: list[Path], indexes: list[CacheIndex]) -> None:
    """Every part 1..N given once (one line naming a part given twice, or those missing)."""
    n = indexes[0].meta["shard"]["n"]
    seen: dict[int, Path] = {}
    for path, index in zip(paths, indexes):
        k = index.meta["shard"]["k"]
        if k in seen:
            raise InputError(path, f"is shard {k}/{n}, as {seen[k]} is: a shard given twice")
        seen[k] = path
    absent = [str(k) for k in range(1, n + 1) if k not in seen]
    if absent:
        shown = ", ".join(absent[:10]) + (" ..." if len(absent) > 10 else "")
        raise InputError(
            None,
            f"shard(s) {shown} of {n} are missing: run `stmt prepare ... --shard K/{n}` "
            "for each and merge all of them",
        )
