"""Template geometry: one vertex subset and one geodesic matrix per body topology.

:func:`get_template` picks ``num_points`` vertices of a body's canonical rest mesh
by farthest point sampling (FPS) and measures geodesic distances between them on
the full surface. It runs once per topology and is cached on disk.

Conventions:

- **Start vertex**: FPS starts at the highest vertex of the rest mesh (largest z;
  the lowest index on a tie), so the result depends only on the mesh.
- **FPS order is kept** (prefix property): for any P <= N, the first P template
  points are exactly a farthest point sample of P points from the same start.
  The model takes its level-1 and level-2 patch centres as the first P1 / P2
  points, so no other index list is needed.
- Only vertices that some face uses are candidates (unreferenced vertices carry
  no surface).
- **Geodesics**: potpourri3d's heat method (``MeshHeatMethodDistanceSolver``) from
  each template vertex to all others on the full mesh; the matrix is symmetrised
  ((D + Dᵀ) / 2), its diagonal zeroed, and clamped below by the euclidean distance
  (the heat method can undershoot by a few per cent; a geodesic is never shorter
  than the straight line). Pairs the heat method cannot reach (separate mesh
  components, e.g. eyes) fall back to shortest paths along mesh edges, and pairs
  no path joins get the euclidean distance.
- **No faces** (a point or mesh sequence without triangles): graph distances on a
  symmetric k-nearest-neighbour graph (k = 8) of the rest points (scipy dijkstra),
  with the same fallback and clamping.

Cache: ``<cache_dir>/template_<key>.npz`` where ``key`` is the sha256 of the faces'
int64 bytes (or of the rest points' float32 bytes when there are no faces), the
vertex count, N and whether the rest is a body's rest mesh or a mesh sequence's first
frame (:func:`template_key`); the default folder is ``$STMT_CACHE_DIR/templates`` or
``~/.cache/stmt/templates``. Written atomically, and the first written stays: processes
that compute one topology's template at once (from different rest shapes) use the one
on disk (:func:`_publish`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stmt.errors import InputError
from stmt.fileio import atomic_savez

KNN_NEIGHBOURS = 8
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Template:
    """N vertices of one body topology and the geodesic distances between them.

    Attributes:
        vertex_ids: (N,) int64 ids into the full mesh, in FPS order.
        geodesic: (N, N) float32 metres, symmetric, zero diagonal.
        rest: (N, 3) float32 rest-pose positions of the template vertices.
        key: cache key (hash of the topology and N).
    """

    vertex_ids: np.ndarray
    geodesic: np.ndarray
    rest: np.ndarray
    key: str

    @property
    def num_points(self) -> int:
        return int(self.vertex_ids.shape[0])

    def save(self, path: str | Path) -> None:
        """Write to ``path`` (.npz) atomically."""
        atomic_savez(
            Path(path),
            vertex_ids=self.vertex_ids,
            geodesic=self.geodesic,
            rest=self.rest,
            key=np.array(self.key),
            version=np.array(_FORMAT_VERSION),
        )

    @classmethod
    def load(cls, path: str | Path) -> Template:
        with np.load(path) as z:
            return cls(
                vertex_ids=z["vertex_ids"].astype(np.int64),
                geodesic=z["geodesic"].astype(np.float32),
                rest=z["rest"].astype(np.float32),
                key=str(z["key"]),
            )


def default_cache_dir() -> Path:
    """``$STMT_CACHE_DIR/templates`` or ``~/.cache/stmt/templates``."""
    root = os.environ.get("STMT_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "stmt"
    return base / "templates"


def template_key(
    faces: np.ndarray | None, rest_vertices: np.ndarray, num_points: int, first_frame: bool = False
) -> str:
    """sha256 (first 16 hex digits) of the topology and N.

    ``first_frame``: the rest is a mesh sequence's own first frame, not a body model's
    rest mesh. Such templates get keys of their own: a mesh file with a body's faces
    (a body posed and saved as a mesh) neither takes the body's template nor, when it is
    read first, leaves its posed frame's template on disk for the body's files."""
    h = hashlib.sha256()
    if first_frame:
        h.update(b"first-frame")
    if faces is not None:
        h.update(b"faces")
        h.update(np.ascontiguousarray(faces, dtype=np.int64).tobytes())
    else:
        h.update(b"points")
        h.update(np.ascontiguousarray(rest_vertices, dtype=np.float32).tobytes())
    h.update(f"V={len(rest_vertices)};N={num_points};v{_FORMAT_VERSION}".encode())
    return h.hexdigest()[:16]


def get_template(
    faces: np.ndarray | None,
    rest_vertices: np.ndarray,
    num_points: int = 512,
    cache_dir: str | Path | None = None,
    key: str | None = None,
) -> Template:
    """The template of a topology: FPS vertex ids, their geodesics and rest positions.

    Args:
        faces: (F, 3) int triangles of the full mesh, or None for point data.
        rest_vertices: (V, 3) float canonical rest mesh (metres, Z-up).
        num_points: N, the number of template vertices.
        cache_dir: folder of cached templates (default :func:`default_cache_dir`).
        key: :func:`template_key` of these arguments, when the caller has it already.

    Returns:
        :class:`Template`, loaded from the cache when present.
    """
    rest_vertices = np.asarray(rest_vertices, dtype=np.float32)
    if rest_vertices.ndim != 2 or rest_vertices.shape[1] != 3:
        raise InputError(None, f"rest vertices must have shape (V, 3), got {rest_vertices.shape}")
    if faces is not None:
        faces = np.asarray(faces, dtype=np.int64)
        if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
            raise InputError(None, f"faces must have shape (F, 3), F > 0, got {faces.shape}")
    key = key or template_key(faces, rest_vertices, num_points)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"template_{key}.npz"
    if path.exists():
        try:
            cached = Template.load(path)
            if cached.key == key and cached.num_points == num_points:
                return cached
        except (OSError, KeyError, ValueError):
            pass  # unreadable cache entry: recompute and overwrite it
    template = compute_template(faces, rest_vertices, num_points, key=key)
    folder.mkdir(parents=True, exist_ok=True)
    return _publish(template, path)


def _publish(template: Template, path: Path) -> Template:
    """Write ``template`` to ``path`` unless another process wrote one there first, and
    return the one on disk: processes that compute a topology's template at the same time
    from different rest shapes (mesh files of one topology, in ``--workers``) all use
    the first one written, so a file's clips and the geodesic they go to the model with
    come from one template, whichever process read the file. An unreadable entry is
    replaced."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    template.save(tmp)
    try:
        os.link(tmp, path)  # fails when the path exists: another process was first
    except FileExistsError:
        try:
            first = Template.load(path)
            if first.key == template.key and first.num_points == template.num_points:
                return first
        except (OSError, KeyError, ValueError):
            pass
        os.replace(tmp, path)
    except OSError:  # a file system without hard links: the last writer's
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return template


def compute_template(
    faces: np.ndarray | None, rest_vertices: np.ndarray, num_points: int, key: str = ""
) -> Template:
    """:func:`get_template` without the cache."""
    rest_vertices = np.asarray(rest_vertices, dtype=np.float32)
    if faces is not None:
        candidates = np.unique(np.asarray(faces, dtype=np.int64))
    else:
        candidates = np.arange(len(rest_vertices))
    if num_points > len(candidates):
        raise InputError(
            None, f"asked for {num_points} template points but the mesh has {len(candidates)}"
        )
    local = farthest_point_sampling(rest_vertices[candidates], num_points)
    ids = candidates[local].astype(np.int64)
    if faces is not None:
        geo = heat_geodesics(rest_vertices, np.asarray(faces, dtype=np.int64), ids)
    else:
        geo = knn_graph_geodesics(rest_vertices, ids)
    return Template(
        vertex_ids=ids,
        geodesic=geo,
        rest=rest_vertices[ids].copy(),
        key=key or template_key(faces, rest_vertices, num_points),
    )


def farthest_point_sampling(points: np.ndarray, n: int, start: int | None = None) -> np.ndarray:
    """Indices of ``n`` farthest points of ``points`` (M, 3), in sampling order.

    Starts at ``start`` or, by default, the highest point (largest z, lowest index
    on a tie). Deterministic; ties in the running distance go to the lowest index.
    """
    pts = np.asarray(points, dtype=np.float64)
    if start is None:
        start = int(np.argmax(pts[:, 2]))
    out = np.empty(n, dtype=np.int64)
    out[0] = start
    dist = np.sum((pts - pts[start]) ** 2, axis=1)
    for i in range(1, n):
        nxt = int(np.argmax(dist))
        out[i] = nxt
        np.minimum(dist, np.sum((pts - pts[nxt]) ** 2, axis=1), out=dist)
    return out


def _euclidean(points: np.ndarray) -> np.ndarray:
    diff = points[:, None, :] - points[None, :, :]  # (N, N, 3)
    return np.sqrt(np.sum(diff * diff, axis=-1))


def _finish(geo: np.ndarray, graph_fallback, points: np.ndarray) -> np.ndarray:
    """Fill unreachable pairs, symmetrise, clamp to >= euclidean, zero the diagonal."""
    bad = ~np.isfinite(geo)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        fb = graph_fallback(rows)  # (len(rows), N)
        geo[rows] = np.where(bad[rows], fb, geo[rows])
    euclid = _euclidean(points.astype(np.float64))
    geo = np.where(np.isfinite(geo), geo, euclid)
    geo = 0.5 * (geo + geo.T)
    geo = np.maximum(geo, euclid)
    np.fill_diagonal(geo, 0.0)
    return geo.astype(np.float32)


def _edge_graph(vertices: np.ndarray, faces: np.ndarray):
    from scipy.sparse import coo_matrix

    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # (3F, 2)
    w = np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1)
    n = len(vertices)
    g = coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    return g.maximum(g.T)


def heat_geodesics(vertices: np.ndarray, faces: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(N, N) float32 geodesic distances between ``ids`` on the mesh (heat method)."""
    import potpourri3d as pp3d

    v = np.asarray(vertices, dtype=np.float64)
    solver = pp3d.MeshHeatMethodDistanceSolver(v, faces)
    geo = np.empty((len(ids), len(ids)), dtype=np.float64)
    for row, vid in enumerate(ids):
        geo[row] = solver.compute_distance(int(vid))[ids]

    def fallback(rows):
        from scipy.sparse.csgraph import dijkstra

        d = dijkstra(_edge_graph(v, faces), directed=False, indices=ids[rows])
        return d[:, ids]

    return _finish(geo, fallback, v[ids])


def knn_graph_geodesics(points: np.ndarray, ids: np.ndarray, k: int = KNN_NEIGHBOURS) -> np.ndarray:
    """(N, N) float32 shortest-path distances between ``ids`` on a kNN graph of ``points``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra
    from scipy.spatial import cKDTree

    p = np.asarray(points, dtype=np.float64)
    k = min(k, len(p) - 1)
    dist, nbr = cKDTree(p).query(p, k=k + 1)  # (M, k+1), first column is the point itself
    rows = np.repeat(np.arange(len(p)), k)
    g = coo_matrix((dist[:, 1:].ravel(), (rows, nbr[:, 1:].ravel())), shape=(len(p), len(p)))
    g = g.tocsr()
    g = g.maximum(g.T)
    geo = dijkstra(g, directed=False, indices=ids)[:, ids]
    return _finish(geo, lambda r: np.full((len(r), len(ids)), np.inf), p[ids])
