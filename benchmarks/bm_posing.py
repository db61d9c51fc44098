"""Posing speed: frames/s posing an AMASS-format clip on an SMPL+H-sized model.

Compares, on the same frames in the same run:
  (a) plain smplx: ``smplx.SMPLH`` forward (full mesh, hands in axis-angle, all 16 betas);
  (b) stmt full mesh: :func:`stmt.body.smpl.pose` with ``vertex_ids=None``;
  (c) stmt subset: :func:`stmt.body.smpl.pose` on a 512-vertex subset;
  (d) the same subset through ``read_sequence`` (npz parsing and checks included).
Each is timed ``--repeats`` times (rounds interleaved) after one warm-up; the
best time is reported.
The model is the synthetic SMPL+H-sized file of the tests (6890 vertices, 52
joints, 16 shape components), unless ``--model`` names a real one.

    python benchmarks/bm_posing.py [--frames 600] [--threads N] [--model SMPLH_X.npz]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.helpers

from stmt.body.smpl import load_model, pose
from stmt.reading import read_sequence
from tests.helpers.smpl_model import amass_arrays, write_amass_npz, write_smplh_model


def best_times(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Best wall time of each function over ``repeats`` interleaved rounds (after a warm-up).

    Interleaving spreads the load of a shared machine over all methods alike.
    """
    outs = {name: fn() for name, fn in fns.items()}  # warm-up
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, outs


def smplx_forward(model_file: Path, a: dict, batch: int):
    """Plain smplx over all frames in batches of ``batch``: vertices (T, V, 3) float32."""
    import smplx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = smplx.SMPLH(
            str(model_file),
            ext="npz",
            use_pca=False,
            flat_hand_mean=True,
            num_betas=16,
            batch_size=batch,
        )
    # smplx 0.1.28 keeps 10 betas for a model with < 300 shape components; give it all 16.
    model.shapedirs = torch.from_numpy(np.load(model_file)["shapedirs"]).float()
    model._num_betas = 16
    P = torch.tensor(a["poses"], dtype=torch.float32)
    tr = torch.tensor(a["trans"], dtype=torch.float32)
    betas = torch.tensor(a["betas"], dtype=torch.float32)[None]

    def run():
        out = []
        with torch.inference_mode():
            for s in range(0, len(P), batch):
                p = P[s : s + batch]
                b = len(p)
                o = model(
                    betas=betas.expand(b, -1), global_orient=p[:, :3], body_pose=p[:, 3:66],
                    left_hand_pose=p[:, 66:111], right_hand_pose=p[:, 111:156], transl=tr[s : s + batch],
                )  # fmt: skip
                out.append(o.vertices.numpy())
        return np.concatenate(out)

    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--subset", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256, help="frames per smplx forward call")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", type=Path, default=None, help="a SMPL+H .npz (default: synthetic)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="bm_posing_"))
    model_file = args.model or write_smplh_model(tmp) / "smplh" / "SMPLH_NEUTRAL.npz"
    clip = write_amass_npz(tmp / "clip.npz", T=args.frames, fps=120.0, seed=3)
    a = amass_arrays(args.frames, fps=120.0, seed=3)
    model = load_model(model_file, "smplh")
    ids = np.random.default_rng(0).choice(model.num_vertices, size=args.subset, replace=False)
    models_root = model_file.parents[1]

    fns = {
        "(a) plain smplx forward, full mesh": smplx_forward(model_file, a, args.batch),
        "(b) stmt pose, full mesh": lambda: pose(model, a["poses"], a["trans"], a["betas"])[0],
        f"(c) stmt pose, {args.subset}-vertex subset": lambda: pose(
            model, a["poses"], a["trans"], a["betas"], ids
        )[0],
    }
    if args.model is None:  # read_sequence finds the file by gender in the smplx layout
        fns[f"(d) read_sequence, {args.subset}-vertex subset"] = lambda: (
            read_sequence(clip, body_models=models_root, vertex_ids=ids).vertices
        )
    times, outs = best_times(fns, args.repeats)
    ref = outs["(a) plain smplx forward, full mesh"]
    t_ref = times["(a) plain smplx forward, full mesh"]
    rows = []
    for name, out in outs.items():
        expect = ref if out.shape[1] == ref.shape[1] else ref[:, ids]
        rows.append((name, times[name], float(np.abs(out - expect).max())))

    print(f"{args.frames} frames, model {model.num_vertices} vertices / {model.num_joints} joints, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, best of {args.repeats}")  # fmt: skip
    print(f"{'method':<40} {'frames/s':>10} {'vs smplx':>9} {'max |diff| m':>13}")
    for name, t, diff in rows:
        print(f"{name:<40} {args.frames / t:>10.0f} {t_ref / t:>8.1f}x {diff:>13.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
