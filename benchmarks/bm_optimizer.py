"""The optimiser step alone: AdamW as ``stmt fit`` builds it, fused against the default update.

Both optimisers hold the same model's parameters in the same two groups
(``stmt.engine.common.param_groups``) with random gradients; their steps
alternate, and the ratio of the medians is printed per model size. CPU, or the
GPU when there is one.

    python benchmarks/bm_optimizer.py [--arch stmt_tiny stmt_base] [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from stmt.engine.common import adamw, param_groups
from stmt.model.stmt import build_model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", nargs="+", default=["stmt_tiny", "stmt_base"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    where = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"{where}, torch {torch.__version__}, median of {a.steps} steps after 2 warm-up")

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for arch in a.arch:
        torch.manual_seed(0)
        models = {fused: build_model(arch, num_classes=60).to(device) for fused in (False, True)}
        models[True].load_state_dict(models[False].state_dict())
        opts = {}
        for fused, model in models.items():
            for param in model.parameters():
                param.grad = torch.randn_like(param)
            opts[fused] = adamw(param_groups(model, 0.05), 1e-4, fused=fused)
        times = {False: [], True: []}
        for i in range(a.steps + 2):
            for fused, opt in opts.items():
                sync()
                t0 = time.perf_counter()
                opt.step()
                sync()
                if i >= 2:
                    times[fused].append(time.perf_counter() - t0)
        default, fused = (statistics.median(times[f]) * 1e3 for f in (False, True))
        n = sum(param.numel() for param in models[True].parameters())
        ratio = default / fused
        print(
            f"  {arch:<10} {n / 1e6:5.1f} M parameters: default {default:7.2f} ms, "
            f"fused {fused:7.2f} ms ({ratio:.2f}x; fused: {opts[True].defaults['fused']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
