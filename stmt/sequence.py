"""The one in-memory type for a posed motion: :class:`MeshSequence`.

Conventions, everywhere in stmt:
- float32 vertex coordinates in metres;
- Z is up (as in AMASS); the ground is the plane z = 0 where known;
- ``vertices`` has shape (T, V, 3): T frames, V vertices;
- ``faces`` index the *full* mesh of the body topology (F, 3), int64.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stmt.errors import InputError


@dataclass
class MeshSequence:
    """A body mesh sequence.

    Attributes:
        vertices: (T, V, 3) float32, metres, Z-up. When ``vertex_ids`` is set the
            sequence holds only those vertices of the full mesh, so V == len(vertex_ids).
        faces: (F, 3) int64 triangles of the full mesh, or None for point data.
        fps: frames per second.
        joints: (T, J, 3) float32 joint positions, or None.
        body: which body produced the mesh: "smplh", "smplx", "anny", or "mesh"
            for a mesh sequence read as it is.
        source: the file or folder the sequence was read from.
        format: the detected input format, e.g. "amass-smplh", "bvh", "mesh-npz".
        rest_vertices: (V_full, 3) float32 canonical rest mesh of the topology
            (mean shape, zero pose for a body model; first frame for a mesh
            sequence). Templates are computed on it, so every sequence of one
            topology gets the same vertex subset.
        vertex_ids: (N,) int64 ids into the full mesh when only a subset was posed.
        joint_names: names of ``joints``' rows, when known.
        rig: for skeleton files, the rig :mod:`stmt.retarget` detected (with the unit
            and up axis), e.g. "bandai (Bandai-Namco; 21 joints mapped), unit cm, up y".
        posed: (K,) sorted int64 frame indices when only those frames were posed
            (``frames`` of :func:`stmt.body.pose_motion`): the other
            frames repeat a posed neighbour and show no motion of their own. None:
            every frame is real.
        warnings: one line each about input that is legal but odd (a degenerate
            source skeleton, a take much shorter than the model's window, ...);
            ``stmt classify`` prints them with the label and records them in JSON.
    """

    vertices: np.ndarray
    faces: np.ndarray | None
    fps: float
    body: str
    source: Path
    format: str = "unknown"
    joints: np.ndarray | None = None
    rest_vertices: np.ndarray | None = None
    vertex_ids: np.ndarray | None = None
    joint_names: list[str] | None = field(default=None)
    rig: str | None = None
    posed: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.source = Path(self.source)
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`InputError` naming ``source`` if anything is off."""
        v = self.vertices
        if v.ndim != 3 or v.shape[2] != 3:
            raise InputError(self.source, f"expected vertices of shape (T, V, 3), got {v.shape}")
        if v.shape[0] == 0:
            raise InputError(self.source, "the sequence has zero frames")
        if v.shape[1] == 0:
            raise InputError(self.source, "the sequence has zero vertices")
        if not np.isfinite(v).all():
            raise InputError(self.source, "vertices contain NaN or Inf")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise InputError(self.source, f"expected a positive frame rate, got {self.fps}")
        n_full = self.num_full_vertices
        if self.faces is not None:
            f = np.asarray(self.faces)
            if f.ndim != 2 or f.shape[1] != 3:
                raise InputError(self.source, f"expected faces of shape (F, 3), got {f.shape}")
            if not np.issubdtype(f.dtype, np.integer):
                raise InputError(self.source, f"expected integer face indices, got {f.dtype}")
            if f.size and (f.min() < 0 or f.max() >= n_full):
                raise InputError(
                    self.source,
                    f"face indices must lie in [0, {n_full}), got [{f.min()}, {f.max()}]",
                )
            self.faces = f.astype(np.int64, copy=False)
        if self.joints is not None:
            j = np.asarray(self.joints, dtype=np.float32)
            if j.ndim != 3 or j.shape[0] != v.shape[0] or j.shape[2] != 3:
                raise InputError(
                    self.source, f"expected joints of shape ({v.shape[0]}, J, 3), got {j.shape}"
                )
            self.joints = j
        if self.rest_vertices is not None:
            r = np.asarray(self.rest_vertices, dtype=np.float32)
            if r.ndim != 2 or r.shape[1] != 3:
                raise InputError(self.source, f"expected rest vertices (V, 3), got {r.shape}")
            self.rest_vertices = r
        if self.vertex_ids is not None:
            ids = np.asarray(self.vertex_ids, dtype=np.int64)
            if ids.shape != (v.shape[1],):
                raise InputError(
                    self.source, f"vertex_ids must have shape ({v.shape[1]},), got {ids.shape}"
                )
            self.vertex_ids = ids
        if self.posed is not None:
            p = np.asarray(self.posed, dtype=np.int64).reshape(-1)
            if p.size == 0 or p[0] < 0 or p[-1] >= v.shape[0] or np.any(np.diff(p) <= 0):
                raise InputError(
                    self.source, f"posed frames must be sorted, unique and in [0, {v.shape[0]})"
                )
            self.posed = p

    # --------------------------------------------------------------- derived
    @property
    def num_frames(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[1])

    @property
    def num_full_vertices(self) -> int:
        """Vertex count of the full mesh (differs from num_vertices for a subset)."""
        if self.rest_vertices is not None:
            return int(np.asarray(self.rest_vertices).shape[0])
        if self.vertex_ids is not None and self.faces is not None:
            return int(np.asarray(self.faces).max()) + 1
        return self.num_vertices

    @property
    def duration(self) -> float:
        """Seconds covered by the frames."""
        return self.num_frames / self.fps

    def subset(self, vertex_ids: np.ndarray) -> MeshSequence:
        """The same motion restricted to ``vertex_ids`` of the full mesh."""
        ids = np.asarray(vertex_ids, dtype=np.int64)
        if self.vertex_ids is not None:
            raise ValueError("sequence is already a vertex subset")
        rest = self.rest_vertices if self.rest_vertices is not None else self.vertices[0]
        return dataclasses.replace(
            self, vertices=self.vertices[:, ids], rest_vertices=rest, vertex_ids=ids
        )


def check_vertex_ids(vertex_ids, num_vertices: int, source: Path) -> np.ndarray | None:
    """``vertex_ids`` as an int64 array checked against the mesh size (InputError naming ``source``)."""
    if vertex_ids is None:
        return None
    ids = np.asarray(vertex_ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"vertex_ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= num_vertices):
        raise InputError(
            source,
            f"vertex ids span [{ids.min()}, {ids.max()}] but this mesh has {num_vertices} vertices "
            "(a template made for another body topology?)",
        )
    return ids.astype(np.int64)
