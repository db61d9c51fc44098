"""One-time template cost: FPS + heat-method geodesics on a body's rest mesh.

python benchmarks/bm_template.py [--num-points 512] [--body anny]
"""

from __future__ import annotations

import argparse
import time

from stmt.reading import body_topology
from stmt.template import compute_template


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--num-points", type=int, default=512)
    p.add_argument("--body", default="anny")
    p.add_argument("--body-models", default=None)
    a = p.parse_args()
    t0 = time.perf_counter()
    rest, faces, name = body_topology(body=a.body, body_models=a.body_models)
    t1 = time.perf_counter()
    t = compute_template(faces, rest, a.num_points)
    t2 = time.perf_counter()
    print(
        f"body={name} V={len(rest)} F={len(faces)} N={a.num_points}: "
        f"rest mesh {t1 - t0:.1f} s, template (FPS + geodesics) {t2 - t1:.1f} s, "
        f"max geodesic {t.geodesic.max():.2f} m"
    )


if __name__ == "__main__":
    main()
