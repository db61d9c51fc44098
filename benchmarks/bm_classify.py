"""End-to-end speed of ``stmt classify`` on a 10 s clip (a benchmark, not a test).

Writes, in a work folder:
- ``walk_10s.npz``: a 10 s AMASS SMPL+H file at 120 fps (a procedural walk),
  posed by ``stmt classify`` on the free anny body (no SMPL files needed);
- ``stmt_tiny.ckpt`` / ``stmt_base.ckpt``: untrained checkpoints in the layout
  training saves (weights do not change the speed), 15 classes, 24 frames,
  2 s windows.

Then runs ``stmt classify FILE --ckpt CKPT`` in a fresh interpreter: once to
fill the caches (the anny rig cache, the template cache), then ``--repeat``
times, and reports the median wall-clock time including interpreter start,
and the median CPU time (user + sys) of the same runs: on a shared machine
the wall-clock time grows with the load, the CPU time much less.
``python -c "import torch"`` is timed the same way for reference.

    python benchmarks/bm_classify.py [--repeat 5] [--work DIR] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CLASSES = ["walk", "stand", "turn", "t pose", "jump", "sit", "run", "bend", "throw",
           "stand up", "kick", "wave", "punch", "squat", "hop"]  # fmt: skip


def write_walk(path: Path, seconds: float = 10.0, fps: float = 120.0) -> Path:
    """A plausible AMASS SMPL+H walk: root upright (+90 deg about x), legs swinging, moving forward."""
    t = np.arange(int(seconds * fps)) / fps  # (T,)
    poses = np.zeros((len(t), 156), np.float32)
    poses[:, 0] = np.pi / 2  # root: body Y-up -> world Z-up
    swing = 0.5 * np.sin(2 * np.pi * 0.9 * t)
    poses[:, 3 + 0] = -swing  # left hip (joint 1) flexion about x
    poses[:, 3 + 3] = swing  # right hip (joint 2)
    poses[:, 3 + 9] = np.clip(np.sin(2 * np.pi * 0.9 * t), 0, None)  # left knee (joint 4)
    poses[:, 3 + 12] = np.clip(-np.sin(2 * np.pi * 0.9 * t), 0, None)  # right knee (joint 5)
    trans = np.stack([np.zeros_like(t), -1.2 * t, np.full_like(t, 0.93)], -1).astype(np.float32)
    np.savez(path, poses=poses, trans=trans, betas=np.zeros(16, np.float32), gender="neutral",
             mocap_framerate=np.float64(fps), dmpls=np.zeros((len(t), 8), np.float32))  # fmt: skip
    return path


def write_checkpoint(path: Path, arch: str) -> Path:
    import torch

    from stmt.model.stmt import build_model

    args = {"num_classes": len(CLASSES), "num_frames": 24}
    model = build_model(arch, **args)
    hp = {"arch": arch, "model_args": args, "num_classes": len(CLASSES), "num_frames": 24,
          "num_points": model.num_points, "class_names": CLASSES, "fps": 30.0, "window_s": 2.0}  # fmt: skip
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": hp, "state_dict": state}, path)
    return path


CPU: list[float] = []  # user + sys seconds of each timed child, in order
LOAD: list[float] = []  # 1-minute load average before each timed child


def timed(cmd: list[str], env: dict) -> float:
    """Wall-clock seconds of one run; its CPU seconds (user + sys) go to ``CPU``."""
    LOAD.append(os.getloadavg()[0])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return took


def report(name: str, runs: list[float], extra: str = "") -> None:
    cpu = statistics.median(CPU[-len(runs) :])
    load = LOAD[-len(runs) :]
    wall = statistics.median(runs)
    print(
        f"{name:<12}  wall median {wall:.2f} s (min {min(runs):.2f}, max {max(runs):.2f}), "
        f"cpu median {cpu:.2f} s{extra}; load {min(load):.1f}-{max(load):.1f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--work", type=Path, default=Path(".cache/bm_classify"))
    p.add_argument("--threads", type=int, default=2, help="CPU cores to pin the runs to (taskset)")
    p.add_argument("--archs", nargs="+", default=["stmt_tiny", "stmt_base"])
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    clip = write_walk(args.work / "walk_10s.npz")
    env = dict(os.environ)
    pin = []
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.threads and len(cores) >= args.threads:
        pin = ["taskset", "-c", ",".join(map(str, cores[: args.threads]))]
    stmt = [*pin, sys.executable, "-m", "stmt", "classify"]

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"runs pinned to {args.threads}; python {platform.python_version()}; "
        f"load average before {os.getloadavg()[0]:.1f}"
    )
    base = [timed([*pin, sys.executable, "-c", "import torch"], env) for _ in range(args.repeat)]
    report("import torch", base)
    for arch in args.archs:
        ckpt = write_checkpoint(args.work / f"{arch}.ckpt", arch)
        cmd = [*stmt, str(clip), "--ckpt", str(ckpt), "--json"]
        warm = timed(cmd, env)  # fills the template and anny rig caches
        runs = [timed(cmd, env) for _ in range(args.repeat)]
        report(arch, runs, f"; first run {warm:.2f} s")
    print("(10 s AMASS clip at 120 fps on anny, 2 s windows every 1 s: 9 windows of 24 frames)")
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
