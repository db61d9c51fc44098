"""One training step of stmt_base, offset-attention kernel on and off, in one run.

A step is forward, cross-entropy, backward and an Adam update on random clips
(batch 32, T = 24 frames, N = 512 points, bfloat16 autocast on GPU). Reports
the median step time, clips/s and the peak memory of a step, for the Triton
kernel (``STMT_DISABLE_KERNELS=0``) and for the PyTorch reference
(``STMT_DISABLE_KERNELS=1``), same model weights and inputs, and how many
offset-attention calls went to the kernel in one step.

    python benchmarks/bm_train_step.py               # GPU
    python benchmarks/bm_train_step.py --quick       # CPU smoke run: batch 2, 2 steps

Without CUDA the kernel is never dispatched (it needs a GPU), so only the
reference row is measured, in float32. Imports only torch, triton (through
the kernel) and stmt's model and ops.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import math
import os
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from stmt.model.stmt import build_model

oa = importlib.import_module("stmt.ops.offset_attention")


def _count_kernel_calls():
    """Wrap the kernel entry the dispatch calls; returns the call counter."""
    calls = [0]
    kernel = oa.offset_attention_triton

    def counted(*args, **kwargs):
        calls[0] += 1
        return kernel(*args, **kwargs)

    oa.offset_attention_triton = counted
    return calls


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def run(mode: str, args, device: str, calls) -> tuple[float, float, int]:
    """Median step seconds, peak MiB of one step, kernel calls in one step."""
    cuda = device == "cuda"
    os.environ["STMT_DISABLE_KERNELS"] = "0" if mode == "kernel" else "1"
    torch.manual_seed(0)
    model = build_model(
        args.arch, num_classes=args.classes, num_frames=args.frames, num_points=args.points
    ).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(1)
    vertices = torch.randn(args.batch, args.frames, args.points, 3, generator=gen).to(device)
    rest = torch.randn(args.points, 3, generator=gen)
    geodesic = torch.cdist(rest, rest).to(device)  # (N, N) stands in for the template's
    labels = torch.randint(0, args.classes, (args.batch,), generator=gen).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(vertices, geodesic), labels)
        loss.backward()
        opt.step()

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
    calls[0] = 0
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    step()
    _sync(cuda)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    n_calls = calls[0]
    return statistics.median(times), peak, n_calls


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="stmt_base")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="batch 2, 1 warm-up, 2 timed steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.warmup, args.steps = 2, 1, 2

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    calls = _count_kernel_calls()
    previous = os.environ.get("STMT_DISABLE_KERNELS")
    if cuda:
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16 autocast")
        modes = ["kernel", "reference"]
    else:
        print(
            "NOTE: no CUDA device, so the offset-attention kernel is never dispatched; "
            "measuring the reference only, float32 on the CPU."
        )
        modes = ["reference"]
    print(
        f"{args.arch}: batch {args.batch}, T={args.frames}, N={args.points}, "
        f"median of {args.steps} steps after {args.warmup} warm-up"
    )
    results = {}
    try:
        for mode in modes:
            results[mode] = run(mode, args, device, calls)
    finally:
        if previous is None:
            os.environ.pop("STMT_DISABLE_KERNELS", None)
        else:
            os.environ["STMT_DISABLE_KERNELS"] = previous

    header = f"{'offset attention':<17} {'step ms':>9} {'clips/s':>9} {'x ref':>7} {'peak MiB':>9} {'mem/ref':>8} {'kernel calls/step':>18}"
    print(header)
    print("-" * len(header))
    ref_time, ref_peak, _ = results["reference"]
    for mode, (sec, peak, n_calls) in results.items():
        peak_txt = "n/a" if math.isnan(peak) else f"{peak:.0f}"
        mem_ratio = "-" if math.isnan(peak) else f"{peak / ref_peak:.2f}"
        print(
            f"{mode:<17} {sec * 1e3:9.1f} {args.batch / sec:9.2f} {ref_time / sec:6.2f}x "
            f"{peak_txt:>9} {mem_ratio:>8} {n_calls:>18}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
