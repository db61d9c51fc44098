"""Mesh sequences read as they are (``body="mesh"``): no body model involved.

Two layouts:

- ``mesh-npz``: an ``.npz`` with ``vertices`` (T, V, 3) in metres, Z up;
  optional ``faces`` (F, 3) integer; optional ``fps`` (one number). Without
  an ``fps`` key the frame rate is 30.
- ``mesh-folder``: a folder of per-frame ``.obj`` / ``.ply`` files (other
  files are ignored), ordered by the LAST number in each file name
  (``walk_0002.obj`` is frame 2; ``frame10.ply`` follows ``frame9.ply``).
  Files are read with trimesh without processing, keeping the vertex order
  exactly as stored. Every frame must have the vertex count of the first;
  faces come from the first frame. The frame rate is 30, unless the folder
  holds a file ``fps.txt`` with one number in it.

The rest mesh (``rest_vertices``) of a mesh sequence is its first frame.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from stmt import limits
from stmt.errors import InputError
from stmt.io.detect import MESH_SUFFIXES, SUPPORTED
from stmt.io.text import is_number, open_text
from stmt.npz import npz_array, npz_header, open_npz
from stmt.sequence import MeshSequence, check_vertex_ids

DEFAULT_FPS = 30.0
FPS_FILE = "fps.txt"


def _fps_value(path: Path, raw) -> float:
    """A mesh sequence's frame rate: one real number (not a boolean or a string) within
    :mod:`stmt.limits`."""
    raw = np.asarray(raw)
    if raw.size != 1 or raw.dtype.kind not in "fiu" or not np.isfinite(raw).all() or raw <= 0:
        shown = raw.tolist() if raw.size <= 8 else f"an array of shape {raw.shape}"
        raise InputError(path, f"fps must be one positive number, got {shown!r} ({raw.dtype})")
    return limits.check_fps(path, raw, "fps")


# ------------------------------------------------------------------------- plausibility
MIN_EXTENT_M = 1e-3  # a frame whose vertices all lie closer than this is a point
FLAT_RATIO = 1e-3  # a body thinner than this fraction of its length is a plane or a line
HUMAN_SIZE_M = (0.3, 5.0)  # the largest extent of a person's body, a child's to a giant's
MAX_SPEED_M_S = 20.0  # faster than anyone runs, on average over a take


def check_plausible(seq: MeshSequence) -> list[str]:
    """Before a label: refuse geometry that is no body (every frame collapsed to a point,
    or the body flat in a plane or a line: one InputError), and return a warning for
    what is legal but odd: a few collapsed frames, a size far from a person's (units
    that are not metres), a body that travels faster than anyone runs (a wrong unit for
    the root's path)."""
    v = seq.vertices  # (T, V, 3)
    posed = np.arange(seq.num_frames) if seq.posed is None else seq.posed
    ext = v[posed].max(axis=1) - v[posed].min(axis=1)  # (K, 3) per frame
    largest = ext.max(axis=1)  # (K,)
    if largest.max() < MIN_EXTENT_M:
        raise InputError(
            seq.source,
            f"every frame's vertices lie within {largest.max() * 1000:.2g} mm of each other "
            "(all zero, or collapsed to a point); expected a body",
        )
    small, _, size = np.median(np.sort(ext[largest >= MIN_EXTENT_M], axis=1), axis=0)
    if small < FLAT_RATIO * size:
        raise InputError(
            seq.source,
            f"the body is {size:.3g} m long but {small:.2g} m thick: its vertices lie in a "
            "plane or on a line; expected a 3-D body",
        )
    warn: list[str] = []
    collapsed = np.nonzero(largest < MIN_EXTENT_M)[0]
    if len(collapsed):
        warn.append(
            f"{len(collapsed)} of {len(posed)} frames are collapsed to a point (the first at "
            f"{posed[collapsed[0]] / seq.fps:.2f} s)"
        )
    lo, hi = HUMAN_SIZE_M
    if not lo <= size <= hi:
        warn.append(
            f"the body is {size:.3g} m across, where a person is {lo:g} to {hi:g} m: are "
            "the units metres?"
        )
    if len(posed) > 1:
        centres = (v[posed].max(axis=1) + v[posed].min(axis=1)) / 2  # (K, 3)
        travel = float(np.linalg.norm(np.diff(centres, axis=0), axis=1).sum())
        speed = travel / ((posed[-1] - posed[0]) / seq.fps)
        if speed > MAX_SPEED_M_S:
            warn.append(
                f"the body travels {speed:.3g} m/s on average, faster than anyone runs: "
                "is the root's path in the file's units?"
            )
    return warn


def _sequence(vertices, faces, fps, source, fmt, vertex_ids) -> MeshSequence:
    if vertices.shape[0] == 0:
        raise InputError(source, "the sequence has zero frames")
    if faces is not None:
        faces = np.asarray(faces)
        if (
            faces.size
            and faces.dtype.kind in "iu"
            and (faces.min() < 0 or faces.max() >= vertices.shape[1])
        ):
            raise InputError(
                source,
                f"face indices must lie in [0, {vertices.shape[1]}), got [{faces.min()}, {faces.max()}]",
            )
    ids = check_vertex_ids(vertex_ids, vertices.shape[1], source)
    rest = np.asarray(vertices[0], dtype=np.float32)
    if ids is not None:
        vertices = vertices[:, ids]
    return MeshSequence(
        vertices=vertices, faces=faces, fps=fps, body="mesh", source=source, format=fmt,
        rest_vertices=rest, vertex_ids=ids,
    )  # fmt: skip


def read_mesh_npz(path: str | Path, vertex_ids: np.ndarray | None = None) -> MeshSequence:
    """Read a mesh-sequence ``.npz`` (see the module docstring)."""
    path = Path(path)
    npz = open_npz(path, SUPPORTED)
    fps = _fps_value(path, npz_array(npz, path, "fps")) if "fps" in npz.files else DEFAULT_FPS
    if "vertices" in npz.files:  # the frame count, from the header, before it unpacks
        shape, _ = npz_header(npz, path, "vertices")
        if shape:
            limits.check_frames(path, shape[0], fps)
    vertices = npz_array(npz, path, "vertices", "(T, V, 3) metres")
    if vertices.ndim != 3 or vertices.shape[2] != 3 or vertices.dtype.kind not in "fiu":
        raise InputError(
            path,
            f"vertices has shape {vertices.shape} ({vertices.dtype}); expected (T, V, 3) numbers",
        )
    faces = npz_array(npz, path, "faces") if "faces" in npz.files else None
    return _sequence(vertices, faces, fps, path, "mesh-npz", vertex_ids)


def frame_files(folder: str | Path) -> list[Path]:
    """The per-frame mesh files of ``folder`` in frame order (InputError if none or ambiguous)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES]
    if not files:
        raise InputError(
            folder, "no .obj or .ply files in the folder; expected one mesh file per frame"
        )
    numbered: dict[int, Path] = {}
    for p in files:
        digits = re.findall(r"\d+", p.stem)
        if not digits:
            raise InputError(
                p,
                "no frame number in the file name; per-frame meshes are ordered by it, e.g. frame_0001.obj",
            )
        n = int(digits[-1])
        if n in numbered:
            raise InputError(p, f"frame number {n} is also used by {numbered[n].name}")
        numbered[n] = p
    return [numbered[n] for n in sorted(numbered)]


def _load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import trimesh

    try:
        mesh = trimesh.load(path, process=False, force="mesh", maintain_order=True)
        vertices = np.asarray(mesh.vertices, dtype=np.float32)
        faces = np.asarray(mesh.faces, dtype=np.int64) if len(getattr(mesh, "faces", [])) else None
    except Exception as err:  # noqa: BLE001 (any failure here is a bad file)
        raise InputError(
            path, f"could not be read as a mesh ({type(err).__name__}: {err})"
        ) from None
    if vertices.ndim != 2 or len(vertices) == 0:
        raise InputError(path, "holds no vertices; expected a mesh")
    if vertices.shape[1] != 3:
        raise InputError(path, f"has {vertices.shape[1]}-D vertices; expected x y z")
    if not np.isfinite(vertices).all():
        raise InputError(path, "holds NaN or Inf vertex coordinates")
    return vertices, faces


def _folder_fps(folder: Path) -> float:
    fps_file = folder / FPS_FILE
    if not fps_file.is_file():
        return DEFAULT_FPS
    try:
        with open_text(fps_file) as f:
            text = f.read(256).strip()
    except OSError as e:
        raise InputError(fps_file, f"cannot read the file ({e.strerror})") from None
    if not is_number(text):  # the text readers' grammar (stmt.io.text)
        raise InputError(fps_file, "expected one positive number (frames per second)")
    return _fps_value(fps_file, float(text))


def read_mesh_folder(path: str | Path, vertex_ids: np.ndarray | None = None) -> MeshSequence:
    """Read a folder of per-frame ``.obj`` / ``.ply`` meshes (see the module docstring)."""
    folder = Path(path)
    files = frame_files(folder)
    fps = _folder_fps(folder)
    limits.check_frames(folder, len(files), fps)
    first, faces = _load_mesh(files[0])
    vertices = np.empty((len(files), len(first), 3), dtype=np.float32)
    vertices[0] = first
    for t, p in enumerate(files[1:], start=1):
        v, _ = _load_mesh(p)
        if len(v) != len(first):
            raise InputError(
                p,
                f"has {len(v)} vertices but {files[0].name} has {len(first)}; every frame needs the same vertices",
            )
        vertices[t] = v
    return _sequence(vertices, faces, fps, folder, "mesh-folder", vertex_ids)


def read_rest_mesh(path: str | Path, fmt: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The first frame (V, 3) float32 and faces of a mesh sequence, without reading the rest."""
    path = Path(path)
    if fmt == "mesh-folder":
        return _load_mesh(frame_files(path)[0])
    seq = read_mesh_npz(path)
    return seq.rest_vertices, seq.faces
