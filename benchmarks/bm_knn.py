"""Neighbour search: stmt.ops.knn's Triton kernels against torch (cdist + topk), one run.

The four searches of one stmt_base forward at batch 32, T 24, N 512 (768
frames): euclidean level 1 (64 centres among 512 points per frame) and level 2
(32 among the 64 level-1 centres), geodesic level 1 and 2 (rows of the
template's matrix). Prints the median time of each and the ratio.

    python benchmarks/bm_knn.py            # GPU
    python benchmarks/bm_knn.py --quick    # CPU, interpreter: a smoke run (TRITON_INTERPRET=1)
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stmt.ops import knn


def timed(fn, iters: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=768)
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="4 frames, 3 iterations")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.iters = 4, 3
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if not cuda:
        knn._KERNEL_ON_CPU = True  # the interpreter (TRITON_INTERPRET=1)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(f"device: {torch.cuda.get_device_name() if cuda else 'cpu (interpreter)'}")
    gen = torch.Generator().manual_seed(0)
    xyz = (torch.randn(args.frames, args.points, 3, generator=gen) * 0.3).to(device)
    rest = torch.randn(args.points, 3, generator=gen) * 0.3
    geo = torch.cdist(rest, rest).to(device)
    cases = [
        (
            "euclidean 64 of 512",
            lambda f: f(xyz[:, :64], xyz, 8),
            knn.euclidean_knn,
            knn.euclidean_knn_reference,
        ),
        (
            "euclidean 32 of 64",
            lambda f: f(xyz[:, :32], xyz[:, :64], 8),
            knn.euclidean_knn,
            knn.euclidean_knn_reference,
        ),
        ("geodesic 64 of 512", lambda f: f(geo[:64], 8), knn.smallest_k, knn.smallest_k_reference),
        (
            "geodesic 32 of 64",
            lambda f: f(geo[:32, :64], 8),
            knn.smallest_k,
            knn.smallest_k_reference,
        ),
    ]
    print(f"{'search':<22} {'torch ms':>9} {'kernel ms':>10} {'x torch':>8}")
    total_ref = total_ker = 0.0
    for name, call, kernel_fn, ref_fn in cases:
        ref = timed(functools.partial(call, ref_fn), args.iters, sync)
        ker = timed(functools.partial(call, kernel_fn), args.iters, sync)
        total_ref, total_ker = total_ref + ref, total_ker + ker
        print(f"{name:<22} {ref * 1e3:9.3f} {ker * 1e3:10.3f} {ref / ker:7.2f}x")
    print(
        f"{'all four':<22} {total_ref * 1e3:9.3f} {total_ker * 1e3:10.3f} {total_ref / total_ker:7.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
