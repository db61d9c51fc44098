"""Offset attention: Triton kernel vs eager reference vs torch.compile(reference).

At the model's shapes (768 = 32 clips x 24 frames attention problems, N = 32
and 64 patches, Dv = C = 256, Dk = C / 4 = 64): forward and forward+backward
time (median of CUDA-event timings) and peak memory above the inputs, all
measured in one run, printed as one table with ratios to eager and compiled.

    python benchmarks/bm_offset_attention.py                 # GPU, bfloat16
    python benchmarks/bm_offset_attention.py --dtype float32

Without CUDA it says so and times only the reference, eager and compiled, at
a small batch (the kernel's CPU interpreter is for correctness, not speed).
Imports only torch, triton (through the kernel) and stmt.ops.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import math
import statistics
import time

import torch

oa = importlib.import_module("stmt.ops.offset_attention")

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def _inputs(b, n, dk, dv, dtype, device, grad):
    gen = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(b, n, dk, device=device, generator=gen) * dk**-0.5
    k = torch.randn(b, n, dk, device=device, generator=gen)
    v = torch.randn(b, n, dv, device=device, generator=gen)
    g = torch.randn(b, n, dv, device=device, generator=gen)
    q, k, v, g = (t.to(dtype) for t in (q, k, v, g))
    return [t.requires_grad_(grad) for t in (q, k, v)] + [g]


def _time(fn, iters: int, warmup: int, cuda: bool) -> float:
    """Median milliseconds of fn()."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _peak_mib(fn) -> float:
    """Peak CUDA memory allocated by fn() above what was allocated before, MiB."""
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def bench_shape(methods, b, n, dk, dv, dtype, device, iters, warmup):
    cuda = device == "cuda"
    rows = {}
    for name, fn in methods.items():
        q, k, v, g = _inputs(b, n, dk, dv, dtype, device, grad=False)

        def forward(fn=fn, q=q, k=k, v=v):
            with torch.no_grad():
                fn(q, k, v)

        qg, kg, vg, g = _inputs(b, n, dk, dv, dtype, device, grad=True)

        def forward_backward(fn=fn, q=qg, k=kg, v=vg, g=g):
            out = fn(q, k, v)
            torch.autograd.grad(out, (q, k, v), g)

        try:
            fwd = _time(forward, iters, warmup, cuda)
            fwd_bwd = _time(forward_backward, iters, warmup, cuda)
            mem = _peak_mib(forward_backward) if cuda else float("nan")
            rows[name] = (fwd, fwd_bwd, mem)
        except Exception as exc:  # noqa: BLE001 - report it (e.g. torch.compile without a C++ compiler), go on
            print(f"  {name}: failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return rows


def _ratio(base, value) -> str:
    return f"{base / value:.2f}x" if base is not None else "-"


def print_table(title, rows):
    """One line per method; ``x eager`` = eager time / this time (higher is faster)."""
    print(f"\n{title}")
    header = (
        f"{'method':<9} {'fwd ms':>8} {'x eager':>8} {'x compiled':>10} "
        f"{'fwd+bwd ms':>10} {'x eager':>8} {'x compiled':>10} {'peak MiB':>9} {'mem/eager':>9}"
    )
    print(header)
    print("-" * len(header))
    eager = rows.get("eager", (None, None, math.nan))
    compiled = rows.get("compiled", (None, None, math.nan))
    for name, (fwd, fwd_bwd, mem) in rows.items():
        mem_txt = "n/a" if math.isnan(mem) else f"{mem:.1f}"
        mem_ratio = "-" if math.isnan(mem) or math.isnan(eager[2]) else f"{mem / eager[2]:.2f}"
        print(
            f"{name:<9} {fwd:8.3f} {_ratio(eager[0], fwd):>8} {_ratio(compiled[0], fwd):>10} "
            f"{fwd_bwd:10.3f} {_ratio(eager[1], fwd_bwd):>8} {_ratio(compiled[1], fwd_bwd):>10} "
            f"{mem_txt:>9} {mem_ratio:>9}"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--batch", type=int, default=768, help="attention problems (clips x frames)"
    )
    parser.add_argument("--n", type=int, nargs="+", default=[32, 64], help="points per problem")
    parser.add_argument("--dk", type=int, default=64)
    parser.add_argument("--dv", type=int, default=256)
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default=None,
        help="default: bfloat16 on GPU, float32 on CPU",
    )
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--cpu-batch", type=int, default=32, help="batch used without CUDA")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile(reference)")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = DTYPES[args.dtype or ("bfloat16" if cuda else "float32")]
    batch = args.batch
    methods = {}
    if cuda:
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
        try:
            import triton

            print(f"triton {triton.__version__}")
            methods["kernel"] = oa.offset_attention_triton
        except ImportError:
            print("NOTE: triton is not installed; the kernel is not timed")
    else:
        batch = min(batch, args.cpu_batch)
        args.iters, args.warmup = min(args.iters, 20), min(args.warmup, 5)
        print(
            "NOTE: no CUDA device. The Triton kernel needs a GPU (its CPU interpreter checks "
            "correctness, it is not a speed); timing only the PyTorch reference, eager and "
            f"compiled, on the CPU at batch {batch}; peak memory is measured on CUDA only."
        )
    methods["eager"] = oa.offset_attention_reference
    if not args.no_compile:
        methods["compiled"] = torch.compile(oa.offset_attention_reference, dynamic=False)

    for n in args.n:
        title = (
            f"B={batch} N={n} Dk={args.dk} Dv={args.dv} {str(dtype).removeprefix('torch.')} "
            f"on {device} (median of {args.iters}, fwd = no grad)"
        )
        torch._dynamo.reset()
        rows = bench_shape(
            methods, batch, n, args.dk, args.dv, dtype, device, args.iters, args.warmup
        )
        print_table(title, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
