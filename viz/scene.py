"""What the viewer shows, computed without Open3D: :class:`Scene`.

Attention colouring: the model's attention rollout gives, per window and per
sampled frame, a relevance for each level-2 patch (:meth:`stmt.Classifier.attention`
maps it to every frame of the sequence). A patch is spread to vertices in two
steps:

1. each template point belongs to its geodesically nearest level-2 centre
   (template points [0:P2]);
2. each vertex of the full mesh takes the patch of its nearest template point
   on the rest mesh (euclidean, in the rest pose, so the assignment does not
   change as the body moves).

Colours are per frame: the frame's patch relevances scaled to [0, 1] (its
least relevant patch 0, its most relevant 1), mapped along viridis (dark
blue = low, yellow = high). So the colours show where the model looks within
a frame, not how much one frame matters against another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stmt.clip import window_cuts
from stmt.inference import Classifier
from stmt.reading import read_sequence
from viz.overlay import PLAIN_COLOR, colormap


def nearest_point(points: np.ndarray, targets: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(V,) index of the nearest of ``targets`` (N, 3) for each of ``points`` (V, 3)."""
    out = np.empty(len(points), dtype=np.int64)
    t2 = (targets**2).sum(axis=1)  # (N,)
    for i in range(0, len(points), chunk):
        p = points[i : i + chunk]
        d = t2[None, :] - 2.0 * p @ targets.T  # (chunk, N), |p|^2 dropped: same argmin
        out[i : i + chunk] = np.argmin(d, axis=1)
    return out


def vertex_patches(
    rest: np.ndarray, vertex_ids: np.ndarray, patch_of_point: np.ndarray
) -> np.ndarray:
    """(V,) level-2 patch of every vertex of the full mesh ``rest`` (V, 3).

    ``vertex_ids`` (N,) are the template vertices, ``patch_of_point`` (N,) their patches.
    """
    rest = np.asarray(rest, dtype=np.float32)
    nearest = nearest_point(rest, rest[np.asarray(vertex_ids)])  # (V,) into the template
    return np.asarray(patch_of_point, dtype=np.int64)[nearest]


# joint name pairs (left, right) that give the body's sideways axis, in order of trust
_SIDE_PAIRS = (
    ("left_hip", "right_hip"), ("LeftUpLeg", "RightUpLeg"), ("left_shoulder", "right_shoulder"),
    ("LeftArm", "RightArm"),
)  # fmt: skip


def body_facing(seq) -> np.ndarray:
    """(2,) unit horizontal direction the body faces in the first frame (Z up).

    From the joints when the sequence names a left and right hip or shoulder: the
    front is (left - right) x up. Otherwise from the mesh: the front is perpendicular
    to the widest horizontal axis, on the side the feet (the lowest 5 % of the points)
    reach out to, as toes point forwards. Falls back to -Y when both fail.
    """
    names = list(seq.joint_names or [])
    if seq.joints is not None:
        for left, right in _SIDE_PAIRS:
            if left in names and right in names:
                side = seq.joints[0, names.index(left)] - seq.joints[0, names.index(right)]
                front = np.array([side[1], -side[0]])  # (left - right) x z, horizontal part
                norm = np.linalg.norm(front)
                if norm > 1e-6:
                    return (front / norm).astype(np.float64)
    v = np.asarray(seq.vertices[0], dtype=np.float64)  # (V, 3)
    xy = v[:, :2] - v[:, :2].mean(axis=0)
    _, vecs = np.linalg.eigh(xy.T @ xy)  # ascending eigenvalues: [:, 0] the narrow axis
    front = vecs[:, 0]
    feet = v[:, 2] <= np.quantile(v[:, 2], 0.05)
    reach = float((xy[feet] @ front).mean()) if feet.any() else 0.0
    if abs(reach) < 1e-4:
        return np.array([0.0, -1.0])
    return front * np.sign(reach)


@dataclass
class Scene:
    """A sequence to play, with optional labels and attention.

    Attributes:
        vertices: (T, V, 3) float32 full mesh (or points), metres, Z-up.
        faces: (F, 3) int64 or None (drawn as points).
        fps: the sequence's frame rate.
        source: the file shown.
        prediction: the classifier's :class:`stmt.inference.Prediction` (top-3 per window) or None.
        window_of_frame: (T,) window index per frame (nearest window centre) or None.
        relevance: (T, P2) attention per frame and patch, or None.
        vertex_patch: (V,) patch of each vertex, or None.
        label_index: class name -> class index (its colour, :func:`viz.overlay.label_color`).
        facing: (2,) unit horizontal direction the body faces (:func:`body_facing`);
            the camera is placed relative to it.
    """

    vertices: np.ndarray
    faces: np.ndarray | None
    fps: float
    source: Path
    prediction: object | None = None
    window_of_frame: np.ndarray | None = None
    relevance: np.ndarray | None = None
    vertex_patch: np.ndarray | None = None
    label_index: dict[str, int] = field(default_factory=dict)
    facing: np.ndarray = field(default_factory=lambda: np.array([0.0, -1.0]))

    @property
    def num_frames(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    @property
    def has_attention(self) -> bool:
        return self.relevance is not None and self.vertex_patch is not None

    def colors(self, frame: int, attention: bool = True) -> np.ndarray:
        """(V, 3) float RGB of the vertices at ``frame``."""
        if attention and self.has_attention:
            r = self.relevance[frame]  # (P2,)
            lo, hi = float(r.min()), float(r.max())
            r = (r - lo) / (hi - lo) if hi - lo > 1e-12 else np.full_like(r, 0.5)
            return colormap(r[self.vertex_patch])
        return np.broadcast_to(PLAIN_COLOR, (self.vertices.shape[1], 3)).copy()

    def top(self, frame: int, k: int = 3) -> list[tuple[str, float]] | None:
        """The top-k labels of the window shown at ``frame``, or None without a model; the
        first reads ``unknown (best: LABEL)`` where the checkpoint's rule says so."""
        if self.prediction is None or self.window_of_frame is None:
            return None
        ranked = list(self.prediction.windows[int(self.window_of_frame[frame])][2][:k])
        if self.prediction.is_unknown(ranked):
            ranked[0] = (f"unknown (best: {ranked[0][0]})", ranked[0][1])
        return ranked

    def timeline(self) -> list[tuple[float, float, str]] | None:
        """[(start_s, end_s, top-1 label or "unknown")] partitioning [0, duration], or None."""
        if self.prediction is None:
            return None

        spans = [(s, e) for s, e, _ in self.prediction.windows]
        cuts = window_cuts(spans, self.duration)  # each instant: the nearest window centre
        unknown = self.prediction.is_unknown
        return [
            (float(a), float(b), "unknown" if unknown(w[2]) else w[2][0][0])
            for a, b, w in zip(cuts[:-1], cuts[1:], self.prediction.windows)
        ]


def load_scene(
    path: str | Path,
    ckpt: str | Path | None = None,
    *,
    body: str = "auto",
    body_models: str | Path | None = None,
    window: float | None = None,
    stride: float | None = None,
    device: str = "cpu",
    joint_map: dict[str, str] | None = None,
) -> Scene:
    """Read ``path`` (full mesh) and, with a checkpoint, label it and compute attention."""
    seq = read_sequence(path, body=body, body_models=body_models, joint_map=joint_map)
    return scene_from_sequence(seq, ckpt, window=window, stride=stride, device=device)


def scene_from_sequence(
    seq, ckpt=None, *, window=None, stride=None, device="cpu", classifier=None
) -> Scene:
    """A :class:`Scene` of a full :class:`stmt.sequence.MeshSequence` (see :func:`load_scene`)."""
    scene = Scene(
        vertices=seq.vertices,
        faces=seq.faces,
        fps=float(seq.fps),
        source=seq.source,
        facing=body_facing(seq),
    )
    if ckpt is None and classifier is None:
        return scene
    if classifier is None:
        classifier = Classifier.from_checkpoint(ckpt, device=device)
    item = classifier.preprocess(seq, window, stride)  # one preprocessing, labels and attention
    pred = classifier.postprocess(item, classifier.forward([item])[0], top_k=3)
    att = classifier.attention(item)
    rest = seq.rest_vertices if seq.rest_vertices is not None else seq.vertices[0]
    if seq.vertex_ids is not None:  # a subset: full-mesh rest positions of the points shown
        rest = np.asarray(rest)[seq.vertex_ids]
        pos = {int(v): i for i, v in enumerate(seq.vertex_ids)}
        ids = np.array([pos[int(v)] for v in att.vertex_ids], dtype=np.int64)
    else:
        ids = att.vertex_ids
    scene.prediction = pred
    scene.window_of_frame = att.window_of_frame
    scene.relevance = att.relevance
    scene.vertex_patch = vertex_patches(rest, ids, att.patch_of_point)
    for i, name in enumerate(classifier.class_names):
        scene.label_index[name] = i
    return scene
