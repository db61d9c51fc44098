"""One training step: commit 2b99dcd's model against this tree's, eager and compiled, in one run.

A step is forward, cross-entropy, backward and the AdamW update ``stmt fit``
builds (``stmt.engine.common``: fused on the CPU, the default update on a GPU
and for 2b99dcd's rows) on random clips (stmt_base, batch 32, T = 24 frames, N = 512 points, bfloat16 autocast on
a GPU). Rows, all with the same weights and inputs:

- ``2b99dcd``: the model as of the base commit (its source read with
  ``git show`` into a temporary package, see ``bm_cpu_train_step.py``), eager;
- ``2b99dcd-compiled`` (``--modes``): the same after ``model.compile()``;
- ``eager``: this tree's model, eager;
- ``compiled``: this tree's model after ``model.compile()`` (what
  ``model.init_args.compile`` does), compile time reported, not counted;
- ``compiled-fused`` (``--modes``): ``compiled`` with the fused AdamW update
  (``stmt fit`` takes it on the CPU only, so far);
- ``compiled-three-steps`` (``--modes``): ``compiled`` with batch norm, ReLU and
  the max over the neighbours as three steps instead of the one-pass kernel
  (``stmt.ops.neighbor_stats``), the kernel's share of the step;
- ``reference`` (``--modes``): this tree, eager, ``STMT_DISABLE_KERNELS=1``.

Reports the median step time, clips/s, the ratio to the first row, the peak
memory of one step, and the model FLOPs utilisation: forward+backward FLOPs
of one step counted by ``torch.utils.flop_counter`` (matrix products and
attention; the offset-attention kernel, a custom op, is not counted) over
the step time and the dense bf16 peak (``--peak-tflops``, default 989, the
H100/H200 SXM datasheet figure).

    python benchmarks/bm_train_step.py                       # GPU
    python benchmarks/bm_train_step.py --quick               # CPU smoke run: tiny sizes, float32

Without CUDA: float32, no autocast, peak memory and MFU not measured.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this tree's stmt, whatever is installed

from bm_cpu_train_step import count_flops, load_old_model_module, make_inputs, optimizer

from stmt.engine.common import use_fused_adamw
from stmt.model.stmt import build_model
from stmt.ops import neighbor_stats


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def training_step(model, opt, vertices, geodesic, labels, autocast):
    """A function that runs one step: forward under ``autocast``, cross-entropy, backward, ``opt``."""

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(vertices, geodesic), labels)
        loss.backward()
        opt.step()

    return step


@contextmanager
def one_pass_kernel(on: bool):
    """With ``on`` False, this tree's batch norm + ReLU + max runs as three steps."""
    saved = neighbor_stats.use_kernel
    if not on:
        neighbor_stats.use_kernel = lambda y: False
    try:
        yield
    finally:
        neighbor_stats.use_kernel = saved


def run(mode: str, args, device: str, old_mod, state) -> dict:
    cuda = device == "cuda"
    os.environ["STMT_DISABLE_KERNELS"] = "1" if mode == "reference" else "0"
    sizes = {"num_classes": args.classes, "num_frames": args.frames, "num_points": args.points}
    torch.manual_seed(0)
    build = old_mod.build_model if mode.startswith("2b99dcd") else build_model
    model = build(args.arch, **sizes)
    model.load_state_dict(state)
    model = model.to(device).train()
    fused = mode.endswith("-fused") or (not mode.startswith("2b99dcd") and use_fused_adamw(device))
    opt = optimizer(model, fused=fused)
    vertices, geodesic, labels = (x.to(device) for x in make_inputs(args))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    result = {"compile_s": float("nan"), "flops": float("nan")}
    compiled = "compiled" in mode
    if args.flops and not compiled:
        result["flops"] = count_flops(model, vertices, geodesic, labels, autocast)
    if compiled:
        model.compile()
    step = training_step(model, opt, vertices, geodesic, labels, autocast)

    t0 = time.perf_counter()
    step()
    _sync(cuda)
    if compiled:
        result["compile_s"] = time.perf_counter() - t0
    for _ in range(args.warmup):
        step()
    _sync(cuda)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        _sync(cuda)
        times.append(time.perf_counter() - t0)
    peak = float("nan")
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        step()
        _sync(cuda)
        peak = torch.cuda.max_memory_allocated() / 2**30
    result.update(sec=statistics.median(times), peak_gib=peak)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="stmt_base")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["2b99dcd", "eager", "compiled"],
        choices=["2b99dcd", "2b99dcd-compiled", "eager", "compiled", "compiled-fused"]
        + ["compiled-three-steps", "reference"],
    )
    parser.add_argument("--base", default="2b99dcd", help="commit of the baseline row")
    parser.add_argument("--base-src", type=Path, help="the base commit's files, instead of git")
    parser.add_argument("--no-flops", dest="flops", action="store_false")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak")
    parser.add_argument("--quick", action="store_true", help="stmt_tiny, batch 2, T 4, 2 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.arch, args.batch, args.frames, args.points = "stmt_tiny", 2, 4, 256
        args.warmup, args.steps = 1, 2

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if cuda:
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16 autocast")
    else:
        print("NOTE: no CUDA device: float32 on the CPU, no peak memory, no MFU")
    print(
        f"{args.arch}: batch {args.batch}, T={args.frames}, N={args.points}, "
        f"median of {args.steps} steps after {args.warmup} warm-up"
    )
    previous = os.environ.get("STMT_DISABLE_KERNELS")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        old_mod = load_old_model_module(args.base, Path(tmp), args.base_src)
        torch.manual_seed(0)
        sizes = {"num_classes": args.classes, "num_frames": args.frames, "num_points": args.points}
        state = old_mod.build_model(args.arch, **sizes).state_dict()
        try:
            for mode in args.modes:
                label = mode.replace("2b99dcd", args.base)
                with one_pass_kernel(not mode.endswith("-three-steps")):
                    results[label] = run(mode, args, device, old_mod, state)
                gc.collect()  # the last mode's model and optimizer are gone
                if cuda:
                    torch.cuda.empty_cache()
                r = results[label]
                print(f"  ran {label}: {r['sec'] * 1e3:.1f} ms/step", flush=True)
        finally:
            if previous is None:
                os.environ.pop("STMT_DISABLE_KERNELS", None)
            else:
                os.environ["STMT_DISABLE_KERNELS"] = previous

    flops = next((r["flops"] for r in results.values() if not math.isnan(r["flops"])), math.nan)
    if not math.isnan(flops):
        print(
            f"FLOPs per step (fwd+bwd, counted): {flops / 1e9:.1f} G = {flops / args.batch / 1e9:.1f} G per clip"
        )
    header = (
        f"{'model':<21} {'step ms':>9} {'clips/s':>9} {'x first':>8} {'MFU %':>6} "
        f"{'peak GiB':>9} {'compile s':>10}"
    )
    print(header)
    print("-" * len(header))
    first = next(iter(results.values()))["sec"]
    for label, r in results.items():
        mfu = flops / r["sec"] / (args.peak_tflops * 1e12) * 100 if cuda else math.nan
        fmt = lambda v, f: "n/a" if math.isnan(v) else format(v, f)
        print(
            f"{label:<21} {r['sec'] * 1e3:9.1f} {args.batch / r['sec']:9.1f} "
            f"{first / r['sec']:7.2f}x {fmt(mfu, '6.1f'):>6} {fmt(r['peak_gib'], '9.2f'):>9} "
            f"{fmt(r['compile_s'], '10.1f'):>10}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
