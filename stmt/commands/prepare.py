"""``stmt prepare``: pose a dataset once into a training cache.

Exit status: 0 when every available file was prepared (annotated files that
are not on disk are listed as a warning); 1 when some files could not be read
or posed (they are skipped, listed at the end and recorded in the cache's
index.json; the cache holds the rest); 2 on a user error, at the first
failure with ``--strict``, or when a worker process died (the cache holds the
rest, as for 1). Rerunning the same command resumes an interrupted
run and only poses what is not in the cache yet.

--out is stmt's own folder: an existing folder that holds files stmt did not
write is refused (exit 2) unless ``--overwrite`` is given, and even then only
the cache's names are written and only what stmt wrote is ever removed.

The cache becomes visible in one atomic step when complete (a kill leaves the
previous cache); a second ``stmt prepare`` on the same ``--out`` while one runs
exits 2 naming the holder. ``stmt prepare --out CACHE --verify`` checks every
file of a cache against the shapes, sizes and sha256 its index.json records.

Archives (:mod:`stmt.archive`): ``--workers N`` reads and poses the files in N worker
processes (default: one per core, fewer when memory is short; 0: in this process);
the cache is the same with any number. A worker that dies (killed, out of memory)
fails the file it held, the others complete, and the exit status is 2; rerunning the
command poses only that file. ``--shard K/N`` poses the K-th of N consecutive parts of
the listing into a shard cache of its own (``--out``), for one job of a job array;
``stmt prepare --merge SHARD... --out CACHE`` joins the N shard caches into the cache
one run over the whole listing writes (:mod:`stmt.data.merge`). A failed or killed
shard is rerun alone (the same command resumes it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stmt import limits
from stmt.archive import parse_shard, resolve_workers
from stmt.commands.options import (
    add_archive_arguments,
    add_body_arguments,
    add_max_frames_argument,
    apply_max_frames,
)
from stmt.data.cache import verify_cache
from stmt.data.cache_writer import adopt_cache
from stmt.data.merge import merge
from stmt.data.prepare import prepare
from stmt.data.registry import DATASETS
from stmt.errors import InputError
from stmt.fileio import check_folder


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", choices=DATASETS, default=None, help="label set and split rules (required)"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="AMASS root (the folder holding CMU/, KIT/, ...), the `stmt synth` output, or "
        "for realmix a folder holding the Bandai-Namco and/or HDM05 clones (required)",
    )
    p.add_argument(
        "--synthetic",
        type=Path,
        default=None,
        metavar="DIR",
        help="realmix only: `stmt synth` output whose stand, t pose, jump, sit, stand up and "
        "punch clips are mixed in",
    )
    p.add_argument(
        "--annotations",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder with BABEL train.json / val.json (default: --data)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="CACHE", help="cache folder to write")
    p.add_argument(
        "--num-points", type=int, default=512, metavar="N", help="template vertices (default 512)"
    )
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the cache (default 30)")
    p.add_argument(
        "--chunk-s",
        type=float,
        default=5.0,
        metavar="S",
        help="longest sample in seconds; longer segments are cut (default 5)",
    )
    add_body_arguments(p)
    add_max_frames_argument(p)
    p.add_argument(
        "--strict", action="store_true", help="stop at the first file that fails (exit 2)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write the cache into a folder that holds files stmt did not write (only the "
        "cache's own names are written there; the others are kept)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument(
        "--verify",
        action="store_true",
        help="check the cache --out against its index.json (shapes, sizes, sha256 of every "
        "file) and exit: 0 when it matches, 2 with the first mismatch; needs only --out",
    )
    add_archive_arguments(p, "pose")
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        metavar="SHARD",
        help="join the shard caches of `--shard 1/N` ... `--shard N/N` into the cache --out "
        "(the cache one run over all files writes) and exit; needs only --out",
    )
    p.add_argument(
        "--list-only",
        action="store_true",
        help="list the files and samples (realmix: its counts table), pose and write nothing",
    )


def main(args: argparse.Namespace) -> int:
    if args.verify:
        index = verify_cache(args.out)
        print(
            f"{args.out}: ok ({len(index.seq_offset)} sequences, {len(index.sample_seq)} samples, "
            f"{index.meta['num_frames_total']} frames; every file matches index.json)"
        )
        return 0
    if args.merge is not None:
        return merge_shards(args)
    missing = [f"--{k}" for k in ("dataset", "data") if getattr(args, k) is None]
    if missing:
        raise InputError(None, f"stmt prepare needs {' and '.join(missing)} (or --verify)")
    shard = parse_shard(args.shard)
    resolve_workers(args.workers, 0)  # checks the number
    if not args.list_only:  # before any work: a folder of someone else's files is refused
        check_folder(args.out, "stmt prepare", args.overwrite, adopt_cache)
    apply_max_frames(args)
    limits.whole_number("num-points", args.num_points, 1, 100_000)
    args.fps = limits.check_fps(None, args.fps, "--fps")
    args.chunk_s = limits.positive_number("chunk-s", args.chunk_s)
    limits.check_frames(None, args.chunk_s * args.fps, what="--chunk-s at --fps")
    result = prepare(
        args.dataset,
        args.data,
        args.out,
        annotations=args.annotations,
        num_points=args.num_points,
        fps=args.fps,
        body=args.body,
        body_models=args.body_models,
        strict=args.strict,
        chunk_s=args.chunk_s,
        progress=not args.quiet,
        synthetic=args.synthetic,
        list_only=args.list_only,
        overwrite=args.overwrite,
        workers=args.workers,
        shard=shard,
    )
    print_summary(result, args.json)
    return result.exit_status


def merge_shards(args: argparse.Namespace) -> int:
    """``--merge SHARD... --out CACHE``: nothing else is posed or listed."""
    given = [f"--{k.replace('_', '-')}" for k in ("dataset", "data", "shard", "list_only")
             if getattr(args, k) not in (None, False)]  # fmt: skip
    if given:
        raise InputError(None, f"--merge takes only the shard caches and --out, not {given[0]}")
    check_folder(args.out, "stmt prepare", args.overwrite, adopt_cache)
    result = merge(args.merge, args.out, overwrite=args.overwrite,
                   log=lambda m: print(m, file=sys.stderr))  # fmt: skip
    print_summary(result, args.json)
    return 0


def print_summary(result, as_json: bool = False) -> None:
    """What was written: a few readable lines, or with ``as_json`` one JSON object
    (keys cache, sequences, samples, frames, posed_now, failed, missing)."""
    summary = {
        "cache": str(result.cache),
        "sequences": result.sequences,
        "samples": result.samples,
        "frames": result.frames,
        "posed_now": result.posed,
        "failed": len(result.failed),
        "missing": len(result.missing),
    }
    if result.shards:
        summary["shards_merged"] = result.shards
    if as_json:
        print(json.dumps(summary))
        return
    print(f"cache      {summary['cache']}")
    reused = summary["sequences"] - summary["posed_now"]
    if result.shards:
        print(f"sequences  {summary['sequences']} (from {result.shards} shard caches)")
    else:
        print(
            f"sequences  {summary['sequences']} ({summary['posed_now']} posed now, {reused} reused)"
        )
    print(f"samples    {summary['samples']} ({summary['frames']} frames)")
    if summary["failed"] or summary["missing"]:
        where = "recorded in index.json by the shards" if result.shards else "see above"
        print(f"problems   {summary['failed']} failed, {summary['missing']} missing ({where})")
