"""Loader throughput from a cache: clips/s at T=24, N=512 with 0 and 2 workers.

Builds a random cache (same layout and dtypes as ``stmt prepare`` writes), then
times training batches (random bin sampling + normalisation + all augmentations).
Besides wall-clock clips/s it reports what bounds them on any machine:

- ``cpu ms/batch`` (0 workers): CPU time (``time.process_time``, all threads) one
  batch costs, so ``1000 * batch / cpu_ms`` clips/s is what one fully used core
  gives (a DataLoader worker runs torch on one thread), and ``cores * that`` the
  ceiling with one worker per core;
- ``main cpu ms/batch``: CPU time the training process itself spends per batch
  receiving it from the workers (2 workers), which competes for the same cores;
  ``workers'``: the workers' CPU time per batch (making and sending it, from
  /proc); ``cores busy``: all that CPU time over the wall time;
- the load average: on a shared machine the workers get only part of the cores.

The loader is made once and iterated epoch after epoch, as Lightning does, so
its persistent workers start once (in the warm-up).

    python benchmarks/bm_loader.py [--samples 2000] [--batch-size 32] [--batches 100]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stmt.clip import frame_bounds
from stmt.data.cache import CACHE_FORMAT, CACHE_VERSION
from stmt.data.datamodule import STMTDataModule
from stmt.template import Template


def write_random_cache(root: Path, samples: int, frames: int, n: int) -> None:
    rng = np.random.default_rng(0)
    total = samples * frames
    v = np.lib.format.open_memmap(root / "vertices.npy", "w+", np.float16, (total, n, 3))
    for i in range(0, total, 10000):
        v[i : i + 10000] = rng.normal(0, 0.3, (min(10000, total - i), n, 3))
    v.flush()
    centres = rng.normal(0, 1, (total, 3)).astype(np.float32)
    np.save(root / "centres.npy", centres)
    bounds = np.empty((total, 2, 3), np.float32)
    for i in range(0, total, 10000):
        bounds[i : i + 10000] = frame_bounds(v[i : i + 10000], centres[i : i + 10000])
    np.save(root / "bounds.npy", bounds)
    Template(np.arange(n), np.zeros((n, n), np.float32), np.zeros((n, 3), np.float32), "x").save(
        root / "template.npz"
    )
    index = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "dataset": "bench",
        "class_names": [f"c{i}" for i in range(10)],
        "fps": 30.0,
        "num_points": n,
        "window_s": frames / 30.0,
        "chunk_s": 5.0,
        "body": "none",
        "template_key": "x",
        "num_frames_total": total,
        "sequences": {
            "source": [str(i) for i in range(samples)],
            "offset": list(range(0, total, frames)),
            "length": [frames] * samples,
            "split": ["train"] * samples,
            "subject": ["s"] * samples,
        },
        "samples": {
            "sequence": list(range(samples)),
            "start": [0] * samples,
            "length": [frames] * samples,
            "label": [i % 10 for i in range(samples)],
            "split": ["train"] * samples,
        },
        "failed": [],
        "missing": [],
    }
    (root / "index.json").write_text(json.dumps(index))


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process so far, from /proc (0 where there is none)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--num-points", type=int, default=512)
    p.add_argument("--num-frames", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=100)
    a = p.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker: one core's worth per batch
    with tempfile.TemporaryDirectory() as tmp:
        write_random_cache(Path(tmp), a.samples, a.frames, a.num_points)
        print(f"load average before: {os.getloadavg()[0]:.2f}, cores: {os.cpu_count()}")
        for workers in (0, 2):
            dm = STMTDataModule(
                tmp,
                num_frames=a.num_frames,
                batch_size=a.batch_size,
                num_workers=workers,
                val_split="train",
            )
            dm.setup("fit")
            # one loader, iterated epoch after epoch as Lightning does: its persistent
            # workers live on (a fresh loader per epoch would time their start-up)
            loader = dm.train_dataloader()
            it = iter(loader)
            for _ in range(3):  # warm-up: worker start, page cache
                next(it)
            pids = [w.pid for w in getattr(it, "_workers", [])]
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            w0 = sum(_cpu_seconds(pid) for pid in pids)
            for _ in range(a.batches):
                try:
                    b = next(it)
                except StopIteration:
                    it = iter(loader)
                    b = next(it)
                n += b["vertices"].shape[0]
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            worker_cpu = sum(_cpu_seconds(pid) for pid in pids) - w0
            per_batch = 1e3 * cpu / a.batches
            extra = (
                f"cpu ms/batch {per_batch:.1f} (one core: {1e3 * a.batch_size / per_batch:.0f} clips/s)"
                if workers == 0
                else f"main cpu ms/batch {per_batch:.1f}, workers' {1e3 * worker_cpu / a.batches:.1f}; "
                f"cores busy {(cpu + worker_cpu) / dt:.2f}"
            )
            print(
                f"workers={workers} T={a.num_frames} N={a.num_points} B={a.batch_size}: "
                f"{n / dt:.0f} clips/s; {extra}; load {os.getloadavg()[0]:.2f}"
            )
            del it


if __name__ == "__main__":
    main()
