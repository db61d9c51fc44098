"""``stmt prepare`` throughput: source frames posed per second (template excluded).

python benchmarks/bm_prepare.py [--per-class 2] [--num-points 512] [--body anny]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from stmt.data.prepare import prepare
from stmt.data.synth import generate
from stmt.reading import body_topology
from stmt.template import get_template


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--per-class", type=int, default=2)
    p.add_argument("--num-points", type=int, default=512)
    p.add_argument("--body", default="anny")
    p.add_argument("--body-models", default=None)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        generate(tmp / "syn", per_class=a.per_class, subjects=4, progress=False)
        t1 = time.perf_counter()
        rest, faces, _ = body_topology(body=a.body, body_models=a.body_models)
        get_template(faces, rest, a.num_points, cache_dir=tmp / "t")  # one-time, not timed
        t2 = time.perf_counter()
        r = prepare(
            "synthetic",
            tmp / "syn",
            tmp / "cache",
            num_points=a.num_points,
            body=a.body,
            body_models=a.body_models,
            template_cache=tmp / "t",
            progress=False,
        )
        t3 = time.perf_counter()
    print(f"synth: {r.sequences} clips in {t1 - t0:.2f} s ({r.sequences / (t1 - t0):.0f} clips/s)")
    print(
        f"prepare body={a.body} N={a.num_points}: {r.posed_frames} frames in {t3 - t2:.1f} s "
        f"= {r.posed_frames / (t3 - t2):.0f} frames/s"
    )


if __name__ == "__main__":
    main()
