"""CPU training step: this tree's model against commit 2b99dcd's, in one run.

The old model's source (``stmt/model/stmt.py``, ``stmt/ops/points.py``,
``stmt/ops/offset_attention.py`` at the base commit, default 2b99dcd) is read
with ``git show`` into a temporary package and imported beside the current
one. Both models get the same weights (the old one's state dict, loaded
strictly into the new one: the checkpoint format is the same) and the same
clips. First the logits and the loss gradients of every parameter of one
step are compared, each model in float32 against the old model in float64; then steps (forward, cross-entropy,
backward, Adam) are timed alternately, old, new, old, new, ... so that load
from other processes on the machine falls on both alike, and the ratio of
the medians is printed, of wall-clock time and of this process's CPU time
(with ``--threads 1`` the CPU time is the work done, whatever else runs; with
more threads it includes OpenMP's spin-waiting).

    python benchmarks/bm_cpu_train_step.py                        # stmt_tiny and stmt_base
    python benchmarks/bm_cpu_train_step.py --arch stmt_tiny --batch 16 --steps 7
    python benchmarks/bm_cpu_train_step.py --quick                # tiny sizes, 2 steps

``--compiled`` adds a third row, this tree's model under ``torch.compile``
(inductor: needs a C++ compiler; compile time is reported, not counted).

``--processes`` times each model in a fresh process of its own, as ``stmt fit``
runs it, with glibc's allocator as the C library leaves it ("default") and as
``stmt fit`` sets it since this tree (``stmt.engine.host_memory``, "kept"):
2b99dcd's model with its CLI's allocator against this tree's with its, and the
two other pairings, so that the model's share and the allocator's share are
seen apart. Processes alternate in rounds; each reports the median of its own
steps (wall and CPU time), its page faults per step and its peak resident memory
(the process's, model and data included). The table adds clips/s and the FLOPs
achieved: one step's forward + backward counted by ``torch.utils.flop_counter``
on the base model (the CPU's flash attention counted as the GPU's is), over the
step's wall time, and that as a share of what a dense 2048^3 float32 product
reaches on the same threads (the CPU's utilisation, measured rather than taken
from a datasheet: every process times the product after its steps, and the best
of them is the yardstick, as the machine's speed drifts).

    python benchmarks/bm_cpu_train_step.py --arch stmt_tiny --threads 1 --processes --rounds 3

Each step ends with the AdamW update ``stmt fit`` runs: fused for this tree, the
default one for 2b99dcd's model (``--unfused``: the default for both, the model's
share alone).

``--parts`` splits each model's step in two, timed alternately in one process:
the patch branches (``patch_features``, forward and backward from a fixed
upstream gradient) and the rest (embedding, inter-frame transformer, pooling,
head, loss, their backward from fixed patch features, and the Adam step). The
rest is the same code in both commits and bounds what faster branches can
give: old step / new rest. CPU time with one thread, wall time with more.
Needs git and the repository's history. Float32, CPU, no autocast.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
OLD_FILES = {
    "stmt.py": "stmt/model/stmt.py",
    "points.py": "stmt/ops/points.py",
    "offset_attention.py": "stmt/ops/offset_attention.py",
}
# the old model's imports, pointed at the temporary package
IMPORTS = {
    "from stmt.ops import offset_attention": "from .offset_attention import offset_attention",
    "from stmt.ops.points import": "from .points import",
}


def load_old_model_module(commit: str, where: Path, source: Path | None = None):
    """Import ``stmt/model/stmt.py`` as of ``commit`` (with its ops) as a package under ``where``.

    The files come from ``git show``, or from ``source`` (a folder holding
    them at the same paths, for a machine without the repository's history;
    ``benchmarks/gpu_check.sh`` makes one)."""
    name = f"stmt_at_{commit}"
    pkg = where / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for dest, src in OLD_FILES.items():
        if source is not None:
            text = (source / src).read_text()
        else:
            text = subprocess.run(
                ["git", "show", f"{commit}:{src}"],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        for old, new in IMPORTS.items():
            text = text.replace(old, new)
        (pkg / dest).write_text(text)
    sys.path.insert(0, str(where))
    return importlib.import_module(f"{name}.stmt")


def make_inputs(args):
    gen = torch.Generator().manual_seed(1)
    vertices = torch.randn(args.batch, args.frames, args.points, 3, generator=gen) * 0.3
    rest = torch.randn(args.points, 3, generator=gen) * 0.3
    geodesic = torch.cdist(rest, rest)  # (N, N) stands in for the template's
    labels = torch.randint(0, args.classes, (args.batch,), generator=gen)
    return vertices, geodesic, labels


def _cpu_flops():
    """``FlopCounterMode`` formulas for two CPU ops ``torch.utils.flop_counter`` does
    not count: the CPU's flash attention, counted as the GPU's is (forward
    4 B H L^2 Dh, backward 2.5x that with the scores recomputed), so CPU and GPU steps
    are counted alike; and oneDNN's linear (``stmt.ops.points``), 2 R K C' as a
    product's."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out, query, key, value)

    def linear(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * math.prod(x_shape) * weight_shape[0]  # rows x K x C' multiply-adds

    formulas = {
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    }
    if torch.backends.mkldnn.is_available():
        formulas[torch.ops.mkldnn._linear_pointwise] = linear
    return formulas


def count_flops(model, vertices, geodesic, labels, autocast=None) -> float:
    """FLOPs of one forward + backward (cross-entropy loss), counted by
    ``torch.utils.flop_counter``: matrix products and attention, the CPU's flash
    attention and oneDNN's linear included; the GPU's offset-attention kernel (a custom op) is not
    counted. Leaves no gradients behind."""
    from contextlib import nullcontext

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_cpu_flops()) as counter:
        with autocast or nullcontext():
            loss = F.cross_entropy(model(vertices, geodesic), labels)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def product_gflops(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a dense float32 (size x size) @ (size x size) product on torch's
    threads, the best of ``repeats``: what this CPU's products reach, the
    yardstick of the CPU rows' utilisation."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def optimizer(model, fused: bool):
    """AdamW as ``stmt fit`` builds it (``stmt.engine.common``): two parameter groups, the
    update fused for this tree (``fused=True``), the default update for 2b99dcd's model
    (``fused=False``: what 2b99dcd's ``stmt fit`` ran; ``--unfused`` gives it to both)."""
    from stmt.engine.common import adamw, param_groups

    return adamw(param_groups(model, 0.05), 1e-4, fused=fused)


class Runner:
    """One model, its AdamW, and a training step on fixed inputs."""

    def __init__(self, model, inputs, fused: bool = False):
        self.model = model.train()
        self.opt = optimizer(model, fused)
        self.vertices, self.geodesic, self.labels = inputs
        self.forward = model

    def step(self, seed: int = 0) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        torch.manual_seed(seed)  # the same dropout masks in every model
        logits = self.forward(self.vertices, self.geodesic)
        loss = F.cross_entropy(logits, self.labels)
        loss.backward()
        self.opt.step()
        return logits.detach()


def _logits_and_grads(runner: Runner) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and all parameter gradients (flattened, in named_parameters order) of one step."""
    logits = runner.step()
    grads = torch.cat([p.grad.reshape(-1) for _, p in runner.model.named_parameters()])
    return logits.double(), grads.double()


def compare(old: Runner, new: Runner, inputs, old_mod, arch: str, sizes: dict) -> str:
    """Both float32 models against the old model in float64 on the same step.

    Returns a summary line; raises if this tree's float32 error exceeds
    ``4 x`` the old model's float32 error plus 1e-6 (relative). Batch norm over
    a few clips amplifies rounding, so the float64 truth, not one model's
    float32 result, is the fair yardstick.
    """
    truth_model = old_mod.build_model(arch, **sizes).double()
    truth_model.load_state_dict(old.model.state_dict())
    vertices, geodesic, labels = inputs
    truth = Runner(truth_model, (vertices.double(), geodesic.double(), labels))
    want_logits, want_grads = _logits_and_grads(truth)
    line = []
    errors = {}
    base = old_mod.__name__.split(".")[0].removeprefix("stmt_at_")  # the base commit
    for name, r in ((base, old), ("this tree", new)):
        logits, grads = _logits_and_grads(r)
        e_logits = ((logits - want_logits).abs().max() / want_logits.abs().max()).item()
        e_grads = ((grads - want_grads).norm() / want_grads.norm()).item()
        errors[name] = (e_logits, e_grads)
        line.append(f"{name} logits {e_logits:.1e}, gradients {e_grads:.1e}")
    for i, what in enumerate(("logits", "gradients")):
        if errors["this tree"][i] > 4 * errors[base][i] + 1e-6:
            raise AssertionError(f"{what} disagree: " + "; ".join(line))
    return "float32 error against float64 (relative): " + "; ".join(line)


def bench(args, arch: str, old_mod) -> None:
    from stmt.model.stmt import build_model

    sizes = {"num_classes": args.classes, "num_frames": args.frames, "num_points": args.points}
    torch.manual_seed(0)
    old_model = old_mod.build_model(arch, **sizes)
    new_model = build_model(arch, **sizes)
    new_model.load_state_dict(old_model.state_dict(), strict=True)  # same keys, same weights
    inputs = make_inputs(args)
    runners = {"2b99dcd" if args.base == "2b99dcd" else args.base: Runner(old_model, inputs)}
    runners["this tree"] = Runner(new_model, inputs, fused=not args.unfused)
    print(
        f"\n{arch}: batch {args.batch}, T={args.frames}, N={args.points}, float32, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print("  " + compare(*runners.values(), inputs, old_mod, arch, sizes))

    if args.compiled:
        compiled_model = build_model(arch, **sizes)
        compiled_model.load_state_dict(old_model.state_dict())
        c = Runner(compiled_model, inputs, fused=not args.unfused)
        c.forward = torch.compile(compiled_model)
        t0 = time.perf_counter()
        c.step()
        print(f"  torch.compile: first step (compiling) {time.perf_counter() - t0:.1f} s")
        runners["this tree, compiled"] = c

    for r in runners.values():
        for _ in range(args.warmup):
            r.step()
    times = {name: [] for name in runners}
    cpu_times = {name: [] for name in runners}
    for _ in range(args.steps):  # alternate, so that other load falls on all alike
        for name, r in runners.items():
            t0, c0 = time.perf_counter(), time.process_time()
            r.step()
            times[name].append(time.perf_counter() - t0)
            cpu_times[name].append(time.process_time() - c0)
    base = statistics.median(next(iter(times.values())))
    cpu_base = statistics.median(next(iter(cpu_times.values())))
    print(
        f"  {'model':<22} {'median s':>9} {'min s':>8} {'clips/s':>8} {'x base':>7}"
        f" {'CPU s':>7} {'x base':>7}"
    )
    for name, ts in times.items():
        med, cpu = statistics.median(ts), statistics.median(cpu_times[name])
        print(
            f"  {name:<22} {med:9.3f} {min(ts):8.3f} {args.batch / med:8.1f} {base / med:6.2f}x"
            f" {cpu:7.3f} {cpu_base / cpu:6.2f}x"
        )


def parts(args, arch: str, old_mod) -> None:
    """Median CPU time of the patch branches and of the rest of a step, per model."""
    from stmt.model.stmt import build_model

    sizes = {"num_classes": args.classes, "num_frames": args.frames, "num_points": args.points}
    torch.manual_seed(0)
    models = {args.base: old_mod.build_model(arch, **sizes)}
    models["this tree"] = build_model(arch, **sizes)
    models["this tree"].load_state_dict(models[args.base].state_dict())
    vertices, geodesic, labels = make_inputs(args)
    with torch.no_grad():
        features = models[args.base].patch_features(vertices, geodesic)
    upstream = torch.randn(features.shape, generator=torch.Generator().manual_seed(2))

    def branches(model):
        model.patch_features(vertices, geodesic).backward(upstream)

    def rest(model, opt):
        tokens = model.embed(features)
        x = model.encode(tokens)[0].amax(dim=1)
        F.cross_entropy(model.head(x), labels).backward()
        opt.step()

    opts = {
        name: optimizer(m, fused=name == "this tree" and not args.unfused)
        for name, m in models.items()
    }
    jobs = {}
    for name, model in models.items():
        model.train()
        jobs[(name, "branches")] = lambda m=model: branches(m)
        jobs[(name, "rest")] = lambda m=model, o=opts[name]: rest(m, o)
    times = {key: [] for key in jobs}
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    for i in range(args.warmup + args.steps):
        for key, job in jobs.items():
            for m in models.values():
                m.zero_grad(set_to_none=True)
            c0 = clock()
            job()
            if i >= args.warmup:
                times[key].append(clock() - c0)
    med = {key: statistics.median(ts) for key, ts in times.items()}
    what = "CPU" if clock is time.process_time else "wall"
    print(
        f"\n{arch}: batch {args.batch}, T={args.frames}, N={args.points}, float32, "
        f"{torch.get_num_threads()} threads, {what} s (median of {args.steps})"
    )
    print(f"  {'model':<12} {'branches':>9} {'rest':>7} {'sum':>7}")
    for name in models:
        b, r = med[(name, "branches")], med[(name, "rest")]
        print(f"  {name:<12} {b:9.3f} {r:7.3f} {b + r:7.3f}")
    old_sum = med[(args.base, "branches")] + med[(args.base, "rest")]
    print(
        f"  this tree's rest alone is {old_sum / med[('this tree', 'rest')]:.2f}x faster than "
        f"{args.base}'s whole step: the most any branch speed-up can give"
    )


def child(args) -> int:
    """One model in this fresh process: warm-up steps, then timed ones; prints one JSON line."""
    import json
    import resource

    if args.allocator == "kept":
        from stmt.engine.host_memory import keep_freed_memory

        if not keep_freed_memory():
            raise SystemExit("stmt.engine.host_memory did nothing on this system")
    if args.child == "base":
        sys.path.insert(0, str(args.package.parent))
        build_model = importlib.import_module(f"{args.package.name}.stmt").build_model
    else:
        from stmt.model.stmt import build_model
    sizes = {"num_classes": args.classes, "num_frames": args.frames, "num_points": args.points}
    torch.manual_seed(0)
    fused = args.child == "tree" and not args.unfused
    runner = Runner(build_model(args.arch[0], **sizes), make_inputs(args), fused=fused)
    for _ in range(args.warmup):
        runner.step()
    wall, cpu, faults = [], [], []
    for _ in range(args.steps):
        f0, c0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
        t0 = time.perf_counter()
        runner.step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    medians = {"wall": wall, "cpu": cpu, "faults": faults}
    result = {key: statistics.median(values) for key, values in medians.items()}
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result["flops"] = count_flops(runner.model, runner.vertices, runner.geodesic, runner.labels)
    result["product_gflops"] = product_gflops()
    print(json.dumps(result))
    return 0


def processes(args, arch: str, package: Path) -> None:
    """Each (model, allocator) pairing in fresh processes, alternating in rounds."""
    import json

    pairs = [("base", "default"), ("tree", "kept"), ("base", "kept"), ("tree", "default")]
    names = {"base": args.base, "tree": "this tree"}
    results = {pair: [] for pair in pairs}
    common = [
        "--arch", arch, "--batch", str(args.batch), "--points", str(args.points),
        "--frames", str(args.frames), "--classes", str(args.classes),
        "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--threads", str(args.threads or torch.get_num_threads()), "--package", str(package),
        *(["--unfused"] if args.unfused else []),
    ]  # fmt: skip
    for _ in range(args.rounds):
        for model, allocator in pairs:
            env = dict(os.environ, STMT_KEEP_FREED_MEMORY="1")
            cmd = [sys.executable, __file__, *common, "--child", model, "--allocator", allocator]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=ROOT)
            results[(model, allocator)].append(json.loads(out.stdout.strip().splitlines()[-1]))
    threads = args.threads or torch.get_num_threads()
    print(
        f"\n{arch}: batch {args.batch}, T={args.frames}, N={args.points}, float32, "
        f"{threads} threads, one process per model, {args.rounds} rounds x {args.steps} steps"
    )

    def median(pair, key):
        return statistics.median(r[key] for r in results[pair])

    # the model's FLOPs as 2b99dcd computes them (this tree skips some, e.g. the first
    # grouping layer per point instead of per neighbour): utilisation credits what a
    # step achieves, not how much arithmetic it avoids
    flops = median(pairs[0], "flops")
    products = max(r["product_gflops"] for rs in results.values() for r in rs)  # the best seen
    print(
        f"  FLOPs per step (fwd+bwd, counted on {names['base']}'s model): {flops / 1e9:.1f} G"
        f" ({flops / args.batch / 1e9:.1f} G per clip; this tree's model counts"
        f" {median(pairs[1], 'flops') / 1e9:.1f} G); a 2048^3 float32 product on"
        f" {threads} threads: {products:.1f} GFLOP/s (the best of every process's)"
    )
    base_wall, base_cpu = median(pairs[0], "wall"), median(pairs[0], "cpu")
    print(
        f"  {'model':<12} {'allocator':<10} {'wall s':>7} {'x base':>7}"
        f" {'CPU s':>7} {'x base':>7} {'clips/s':>8} {'GFLOP/s':>8} {'% product':>9}"
        f" {'peak MiB':>9} {'faults/step':>12}"
    )
    for pair in pairs:
        wall, cpu = median(pair, "wall"), median(pair, "cpu")
        print(
            f"  {names[pair[0]]:<12} {pair[1]:<10} {wall:7.3f} {base_wall / wall:6.2f}x"
            f" {cpu:7.3f} {base_cpu / cpu:6.2f}x {args.batch / wall:8.3g}"
            f" {flops / wall / 1e9:8.1f} {flops / wall / 1e9 / products * 100:8.1f}%"
            f" {median(pair, 'peak_mib'):9.0f} {median(pair, 'faults'):12.0f}"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["stmt_tiny", "stmt_base"], nargs="+")
    parser.add_argument("--batch", type=int, help="default: 16 for stmt_tiny, 4 for stmt_base")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--points", type=int, help="default: 256 stmt_tiny, 512 stmt_base")
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--steps", type=int, default=7, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--base", default="2b99dcd", help="commit whose model is the baseline")
    parser.add_argument("--base-src", type=Path, help="the base commit's files, instead of git")
    parser.add_argument("--compiled", action="store_true", help="also time torch.compile")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="batch 2, T 4, 2 steps")
    parser.add_argument("--processes", action="store_true", help="one fresh process per model")
    parser.add_argument("--rounds", type=int, default=3, help="with --processes")
    parser.add_argument("--parts", action="store_true", help="branches and the rest apart")
    parser.add_argument(
        "--unfused", action="store_true", help="this tree's rows with the default AdamW update too"
    )
    parser.add_argument("--child", choices=["base", "tree"], help=argparse.SUPPRESS)
    parser.add_argument("--allocator", choices=["default", "kept"], help=argparse.SUPPRESS)
    parser.add_argument("--package", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    archs = args.arch or ["stmt_tiny", "stmt_base"]
    sys.path.insert(0, str(ROOT))  # this tree's stmt, whatever is installed
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as tmp:
        old_mod = load_old_model_module(args.base, Path(tmp), args.base_src)
        for arch in archs:
            run = argparse.Namespace(**vars(args))
            run.batch = args.batch or (16 if arch == "stmt_tiny" else 4)
            run.points = args.points or (256 if arch == "stmt_tiny" else 512)
            if args.quick:
                run.batch, run.frames, run.steps, run.warmup, run.rounds = 2, 4, 2, 0, 1
            if args.parts:
                parts(run, arch, old_mod)
            elif args.processes:
                processes(run, arch, Path(old_mod.__file__).parent)
            else:
                bench(run, arch, old_mod)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
