"""Where a training step's time goes: GPU kernel time per step, by kind, from torch.profiler.

stmt_base, batch 32, T 24, N 512, bfloat16 autocast, compiled (``--eager``: not),
stepping the AdamW update ``stmt fit`` builds (``--fused``: the fused one). After
warm-up steps it profiles ``--steps`` steps and prints the kernel time per step in
the categories of ``benchmarks/README.md``'s profile tables (matrix products, the
patch branches' batch norm, attention, ...), the unaligned (``align1``) matrix
products apart, and the 15 longest kernels; ``--out`` keeps the Chrome trace.

    python benchmarks/profile_step.py [--eager] [--fused] [--out DIR]
    python benchmarks/profile_step.py --quick      # CPU smoke run: tiny sizes, CPU operators

Without CUDA it sorts the CPU operators' self time into the same categories.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other benchmarks beside this file

from bm_cpu_train_step import make_inputs, optimizer
from bm_train_step import training_step

from stmt.engine.common import use_fused_adamw
from stmt.model.stmt import build_model

# (category, name fragments), first match wins; names lower-cased
CATEGORIES = [
    ("batch norm + ReLU + max, one-pass kernel", ("_stats_kernel", "_stats_backward_kernel")),
    ("neighbour search", ("_rows_kernel", "_euclid_kernel", "topk", "cdist", "euclidean_dist")),
    ("offset attention kernel", ("_forward_kernel", "_backward_kernel")),
    ("batch norm (+ its fused ReLU / max)", ("batch_norm", "bn_fw", "bn_bw")),
    ("layer norm", ("layer_norm",)),
    ("attention (SDPA)", ("sdpa", "flash", "fmha", "cudnn", "attention")),
    (
        "matrix products",
        (
            "gemm",
            "nvjet",
            "cutlass",
            "cublas",
            "aten::linear",
            "aten::matmul",
            "aten::mm",
            "aten::addmm",
            "aten::bmm",
        ),
    ),
    ("optimiser", ("multi_tensor_apply", "adam", "foreach")),
    ("gathers, scatters, concatenation", ("gather", "index", "cat", "embedding", "scatter")),
    ("other inductor kernels", ("triton_",)),
    ("other", ("",)),
]


def category(name: str) -> str:
    low = name.lower()
    return next(c for c, frags in CATEGORIES if any(f in low for f in frags))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="stmt_base")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--points", type=int, default=512)
    p.add_argument("--classes", type=int, default=60)
    p.add_argument("--steps", type=int, default=3, help="profiled steps")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--eager", action="store_true", help="do not compile the model")
    p.add_argument("--fused", action="store_true", help="the fused AdamW update")
    p.add_argument("--out", type=Path, help="folder for the Chrome trace (gzipped)")
    p.add_argument("--quick", action="store_true", help="stmt_tiny, batch 2, T 4, N 256")
    a = p.parse_args(argv)
    if a.quick:
        a.arch, a.batch, a.frames, a.points, a.steps, a.warmup = "stmt_tiny", 2, 4, 256, 2, 1
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"

    torch.manual_seed(0)
    model = build_model(a.arch, num_classes=a.classes, num_frames=a.frames, num_points=a.points)
    model = model.to(device).train()
    opt = optimizer(model, fused=a.fused or use_fused_adamw(device))
    vertices, geodesic, labels = (x.to(device) for x in make_inputs(a))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    if not a.eager:
        model.compile()
    step = training_step(model, opt, vertices, geodesic, labels, autocast)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    for _ in range(a.warmup):
        step()
    sync()
    print(f"warm-up ({a.warmup} steps, compiling included): {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    wall = (time.perf_counter() - t0) / a.steps * 1e3

    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(a.steps):
            step()
        sync()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = json.loads(path.read_text())
        if a.out:
            a.out.mkdir(parents=True, exist_ok=True)
            name = f"{a.arch}-{'eager' if a.eager else 'compiled'}{'-fused' if a.fused else ''}"
            with gzip.open(a.out / f"trace-{name}.json.gz", "wt") as f:
                json.dump(trace, f)
    if cuda:  # GPU kernels, from the trace
        events = [(e["name"], e["dur"]) for e in trace["traceEvents"] if e.get("cat") == "kernel"]
    else:  # CPU operators' self time (they nest)
        events = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    per_cat, per_name = collections.Counter(), collections.Counter()
    align1 = 0.0
    for name, us in events:
        per_cat[category(name)] += us / a.steps / 1e3
        per_name[name] += us / a.steps / 1e3
        if "align1" in name:
            align1 += us / a.steps / 1e3
    total = sum(per_cat.values())
    where = torch.cuda.get_device_name() if cuda else "CPU (operators' self time)"
    mode = "eager" if a.eager else "compiled"
    print(
        f"{where}, torch {torch.__version__}: {a.arch}, batch {a.batch}, T {a.frames}, "
        f"N {a.points}, {mode}, {'fused' if opt.defaults.get('fused') else 'default'} AdamW"
    )
    print(
        f"step {wall:.1f} ms (wall, unprofiled); {'kernels' if cuda else 'operators'} {total:.2f} ms"
    )
    print(f"  {'part':<42} {'ms / step':>10}")
    for cat, ms in per_cat.most_common():
        print(f"  {cat:<42} {ms:10.2f}")
    print(f"  {'  of the products, unaligned (align1)':<42} {align1:10.2f}")
    print("longest:")
    for name, ms in per_name.most_common(15):
        print(f"  {ms:7.3f} ms  {name[:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
