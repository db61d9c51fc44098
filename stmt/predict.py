"""Inference with a trained checkpoint: :class:`Classifier`.

>>> from stmt import Classifier, read_sequence            # doctest: +SKIP
>>> clf = Classifier.from_checkpoint("stmt_tiny.ckpt")     # doctest: +SKIP
>>> clf.predict(read_sequence("walk.npz")).overall[:3]     # doctest: +SKIP
[('walk', 0.81), ('run', 0.07), ('stand', 0.03)]

How a sequence becomes a label:

1. The template of the sequence's body topology (farthest point sample of
   ``num_points`` vertices of the canonical rest mesh, with their geodesic
   distances; computed once per topology and cached on disk by
   :func:`stmt.data.template.get_template`) picks the vertices the model sees.
2. The sequence is cut into windows of ``window`` seconds (default: the
   duration one training sample covered, ``window_s`` in the checkpoint) every
   ``stride`` seconds (default ``window / 2``). The windows cover the whole
   sequence: the last one is aligned to the end; a sequence shorter than one
   window is one window spanning all of it.
3. Each window becomes ``num_frames`` frames taken at the centres of
   ``num_frames`` equal time bins. Frame k of the sequence covers the time
   [k / fps, (k + 1) / fps), so this is the same as resampling to the
   checkpoint's frame rate with nearest-frame lookup and then taking the bin
   centres, without posing frames nobody looks at: :meth:`Classifier.read`
   asks the readers (their ``frames`` argument) to pose only the frames the
   windows use (216 of 1200 for a 10 s clip at 120 fps with 2 s windows every
   second) when called with ``only_windows=True``; the sequence keeps its true
   length and fps, the frames in between repeat a posed one. If
   :meth:`Classifier.clips` is then asked for other windows than
   :meth:`Classifier.read` was, it reads the file again. The clip
   is normalised with :func:`stmt.data.transforms.normalize_clip`, exactly as
   in training.
4. The windows go through the model in batches; softmax gives per-window
   class probabilities. The **overall** probabilities are the mean of the
   window probabilities (every window weighs the same; overlapping windows
   make the middle of a sequence count a little more than its ends).

Checkpoints are read with ``torch.load(..., weights_only=True)``: a checkpoint
from the internet cannot run code when it is loaded. Only the bare model is
built (no Lightning import), which keeps ``stmt classify`` quick to start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stmt.checkpoint import REQUIRED_HPARAMS  # noqa: F401 - re-exported
from stmt.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from stmt.sequence import MeshSequence


Ranked = list[tuple[str, float]]


@dataclass
class Prediction:
    """What a checkpoint says a sequence shows.

    Attributes:
        file: the sequence's source file.
        windows: one ``(start_s, end_s, [(label, prob), ...])`` per window, in time
            order, the labels sorted by falling probability (top-k).
        overall: ``[(label, prob), ...]`` top-k of the mean window probabilities.
        duration_s: seconds the sequence covers.
        fps: the sequence's own frame rate.
    """

    file: Path
    windows: list[tuple[float, float, Ranked]]
    overall: Ranked
    duration_s: float = 0.0
    fps: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``stmt classify --json`` record of this file (see stmt.commands.classify)."""
        return {
            "file": str(self.file),
            "duration_s": round(float(self.duration_s), 4),
            "fps": round(float(self.fps), 4),
            "overall": [{"label": a, "prob": float(p)} for a, p in self.overall],
            "windows": [
                {
                    "start": round(float(s), 4),
                    "end": round(float(e), 4),
                    "top_k": [{"label": a, "prob": float(p)} for a, p in top],
                }
                for s, e, top in self.windows
            ],
        }


@dataclass
class Attention:
    """Where the model looks, per frame of a sequence.

    Attributes:
        relevance: (T_seq, P2) float32 attention-rollout relevance of patch p at
            frame t of the sequence (taken from the window whose centre is
            nearest to the frame, and from that window's time bin holding the
            frame). Within one window the rows of all its T frames sum to 1.
        vertex_ids: (N,) template vertex ids into the full mesh.
        patch_of_point: (N,) int64, the level-2 patch (0..P2-1) each template point
            belongs to: its geodesically nearest level-2 centre, i.e. the nearest
            of template points [0:P2].
        windows: the (start_s, end_s) spans the relevance was computed on.
        window_of_frame: (T_seq,) int64 index into ``windows`` used for each frame.
    """

    relevance: np.ndarray
    vertex_ids: np.ndarray
    patch_of_point: np.ndarray
    windows: list[tuple[float, float]]
    window_of_frame: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


# --------------------------------------------------------------------------- windows
def window_spans(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """Windows of ``window`` s every ``stride`` s covering [0, duration] exactly.

    The last window is aligned to the end of the sequence; a sequence no longer
    than one window is a single window [0, duration].
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be positive, got {window}, {stride}")
    if stride > window:
        raise ValueError(
            f"stride {stride} s is longer than the window {window} s: windows would leave gaps"
        )
    if duration <= window:
        return [(0.0, float(duration))]
    spans = []
    start = 0.0
    eps = 1e-9
    while start + window < duration - eps:
        spans.append((start, start + window))
        start += stride
    last = (float(duration) - window, float(duration))
    if not spans or abs(spans[-1][0] - last[0]) > eps:
        spans.append(last)
    return spans


def bin_centre_frames(
    start: float, end: float, num_frames: int, fps: float, total: int
) -> np.ndarray:
    """Indices of the sequence frames at the centres of ``num_frames`` bins of [start, end].

    Frame k covers [k / fps, (k + 1) / fps); a window shorter than ``num_frames``
    frames repeats frames.
    """
    centres = start + (np.arange(num_frames) + 0.5) * (end - start) / num_frames
    return np.clip(np.floor(centres * fps).astype(np.int64), 0, total - 1)


def window_frames(
    num_frames: int, fps: float, window: float, stride: float, num_bins: int
) -> tuple[list[tuple[float, float]], np.ndarray]:
    """Windows of a sequence of ``num_frames`` frames at ``fps`` and the frames each uses.

    Returns ``(spans [(start_s, end_s)] * W, frames (W, num_bins) int64)``.
    """
    spans = window_spans(num_frames / fps, window, stride)
    frames = np.stack([bin_centre_frames(s, e, num_bins, fps, num_frames) for s, e in spans])
    return spans, frames  # frames: (W, num_bins)


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; other names are checked.

    Raises :class:`InputError` for a device this machine does not have, before any
    model or file is loaded."""
    import torch

    name = str(name).strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(
            None, f"--device {name!r} is not a torch device (auto, cpu, cuda, cuda:0)"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                None, f"--device {name}: torch sees no CUDA GPU here; use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                None, f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(None, f"--device {name}: MPS is not available here; use --device cpu")
    return str(dev)


def _rank(probs: np.ndarray, names: list[str], k: int) -> Ranked:
    order = np.argsort(-probs, kind="stable")[:k]
    return [(names[i], float(probs[i])) for i in order]


# --------------------------------------------------------------------------- checkpoints
def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a classifier checkpoint safely and check it (see :mod:`stmt.checkpoint`).

    Raises :class:`InputError` naming the file if it is missing, not a torch file,
    holds pickled code, is a pretraining checkpoint, or lacks what an stmt
    classifier checkpoint carries."""
    from stmt import checkpoint

    ckpt = checkpoint.read(path)
    checkpoint.check_classifier(ckpt, path)
    return ckpt


# --------------------------------------------------------------------------- classifier
class Classifier:
    """A trained STMT model ready to label mesh sequences (see the module docstring)."""

    def __init__(
        self,
        model: torch.nn.Module,
        class_names: list[str],
        num_frames: int,
        num_points: int,
        fps: float,
        window_s: float,
        arch: str = "",
        geodesic: torch.Tensor | None = None,
        device: str = "cpu",
        source: Path | None = None,
    ):
        self.model = model.eval()
        self.class_names = list(class_names)
        self.num_frames = int(num_frames)
        self.num_points = int(num_points)
        self.fps = float(fps)
        self.window_s = float(window_s)
        self.arch = arch
        self.train_geodesic = geodesic  # (N, N) of the training template, or None
        self.device = device
        self.source = source
        self._templates: dict[str, Any] = {}
        # id(sequence) -> (weak ref, frames posed, read arguments) of the sequences
        # :meth:`read` posed only in part; entries go when the sequence does.
        self._partial: dict[int, tuple[weakref.ref, np.ndarray, dict[str, Any]]] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> Classifier:
        """Rebuild the bare model from an stmt checkpoint (:func:`stmt.checkpoint.load_classifier`)."""
        import torch

        from stmt.checkpoint import load_classifier

        path = Path(path)
        model, hp, geodesic = load_classifier(path)
        return cls(
            model.to(device),
            class_names=list(hp["class_names"]),
            num_frames=int(hp["num_frames"]),
            num_points=int(hp["num_points"]),
            fps=float(hp["fps"]),
            window_s=float(hp["window_s"]),
            arch=str(hp["arch"]),
            geodesic=None if geodesic is None else torch.as_tensor(geodesic, dtype=torch.float32),
            device=device,
            source=path,
        )

    # ----------------------------------------------------------------- template
    def template(
        self, faces: np.ndarray | None, rest_vertices: np.ndarray, source: Path | None = None
    ):
        """The template (vertex ids, geodesic) of one topology; memoised per process.

        ``faces`` may be None (point data): the template then uses graph distances on
        the rest points (see :mod:`stmt.data.template`)."""
        faces = None if faces is None else np.ascontiguousarray(faces, dtype=np.int64)
        rest = np.ascontiguousarray(rest_vertices, dtype=np.float32)
        h = hashlib.sha1(b"" if faces is None else faces.tobytes())
        h.update(rest.tobytes())
        key = h.hexdigest()
        if key not in self._templates:
            from stmt.data.template import get_template

            if rest.shape[0] < self.num_points:
                raise InputError(
                    source,
                    f"the mesh has {rest.shape[0]} vertices, the model needs {self.num_points}",
                )
            self._templates[key] = get_template(faces, rest, num_points=self.num_points)
        return self._templates[key]

    def read(
        self,
        path: str | Path,
        body: str = "auto",
        body_models: str | Path | None = None,
        *,
        only_windows: bool = False,
        window: float | None = None,
        stride: float | None = None,
        joint_map: dict[str, str] | None = None,
    ):
        """Read a MoCap file, posing only the template vertices when the format allows.

        With ``only_windows``, parameter files (AMASS, BVH, ASF/AMC) pose only the
        frames that the windows of ``window`` / ``stride`` s (defaults as in
        :meth:`clips`) use; the sequence keeps its true length and fps, and the frames
        no window uses repeat a posed frame, so it is only fit for :meth:`clips` /
        :meth:`predict` (which read again if asked for other windows). Mesh files are
        always read whole.

        ``joint_map`` ({their joint: ours}) is for a skeleton of a rig stmt does not know.

        Returns ``(sequence, template)``; the sequence holds the template vertices.
        """
        from stmt import io as stmt_io

        if only_windows:
            window, stride = self._window_stride(window, stride, Path(path))
        posed: list[np.ndarray] = []

        def window_frames_of(num_frames: int, fps: float) -> np.ndarray:
            if num_frames <= 0:
                return np.zeros(0, np.int64)  # the reader reports the empty file
            self._check_windows(num_frames, fps, window, stride, Path(path))
            posed.append(
                np.unique(window_frames(num_frames, fps, window, stride, self.num_frames)[1])
            )
            return posed[-1]

        frames = window_frames_of if only_windows else None

        topo = _topology_without_reading(Path(path), body, body_models)
        if topo is not None:
            rest, faces = topo
            tpl = self.template(faces, rest, Path(path))
            seq = stmt_io.read_sequence(
                path, body=body, body_models=body_models, vertex_ids=tpl.vertex_ids, frames=frames,
                joint_map=joint_map,
            )  # fmt: skip
            if seq.vertex_ids is None or not np.array_equal(seq.vertex_ids, tpl.vertex_ids):
                tpl = self._template_of(seq)
                seq = self._template_vertices_seq(seq, tpl)
        else:
            seq = stmt_io.read_sequence(
                path, body=body, body_models=body_models, joint_map=joint_map
            )
            tpl = self._template_of(seq)
            seq = self._template_vertices_seq(seq, tpl)
        if posed and len(posed[-1]) < seq.num_frames:
            key = id(seq)
            args = {"path": path, "body": body, "body_models": body_models, "joint_map": joint_map}
            self._partial[key] = (weakref.ref(seq), posed[-1], args)
            weakref.finalize(seq, self._partial.pop, key, None)
        return seq, tpl

    def _window_stride(
        self, window: float | None, stride: float | None, source: Path | None
    ) -> tuple[float, float]:
        window = self.window_s if window is None else float(window)
        stride = window / 2 if stride is None else float(stride)
        if not (math.isfinite(window) and math.isfinite(stride)) or (
            window <= 0 or stride <= 0 or stride > window
        ):
            raise InputError(
                source, f"need 0 < stride <= window, got window {window} s, stride {stride} s"
            )
        return window, stride

    def _check_windows(
        self, num_frames: int, fps: float, window: float, stride: float, source: Path | None
    ) -> None:
        """Refuse windows whose clips would pass the limits of :mod:`stmt.limits`
        (counted before any is cut)."""
        from stmt import limits

        duration = num_frames / fps
        count = 1 if duration <= window else math.ceil((duration - window) / stride) + 1
        clip_bytes = count * self.num_frames * self.num_points * 3 * 4
        if count * self.num_frames > limits.max_frames() or clip_bytes > limits.MAX_ARRAY_BYTES:
            raise InputError(
                source,
                f"{count} windows of {window:g} s every {stride:g} s over {duration:.1f} s "
                f"({count * self.num_frames} clip frames, {clip_bytes / 1024**3:.1f} GB) pass the "
                "limits; use a larger --stride",
            )

    def _template_of(self, seq: MeshSequence):
        rest = seq.rest_vertices if seq.rest_vertices is not None else seq.vertices[0]
        return self.template(seq.faces, rest, seq.source)

    @staticmethod
    def _template_vertices_seq(seq: MeshSequence, tpl) -> MeshSequence:
        if seq.vertex_ids is None:
            return seq.subset(tpl.vertex_ids)
        if np.array_equal(seq.vertex_ids, tpl.vertex_ids):
            return seq
        pos = {int(v): i for i, v in enumerate(seq.vertex_ids)}
        try:
            idx = np.array([pos[int(v)] for v in tpl.vertex_ids], dtype=np.int64)
        except KeyError:
            raise InputError(
                seq.source, "the sequence's vertex subset lacks template vertices"
            ) from None
        return dataclasses.replace(seq, vertices=seq.vertices[:, idx], vertex_ids=tpl.vertex_ids)

    # ----------------------------------------------------------------- clips
    def clips(
        self, sequence: MeshSequence, window: float | None = None, stride: float | None = None
    ) -> tuple[np.ndarray, list[tuple[float, float]], Any]:
        """Cut a sequence into normalised model inputs.

        Returns ``(clips (W, T, N, 3) float32, spans [(start_s, end_s)] * W, template)``.
        """
        from stmt.data.transforms import normalize_clip

        window, stride = self._window_stride(window, stride, sequence.source)
        self._check_windows(sequence.num_frames, sequence.fps, window, stride, sequence.source)
        spans, frames = window_frames(
            sequence.num_frames, sequence.fps, window, stride, self.num_frames
        )  # frames: (W, T)
        partial = self._partial.get(id(sequence))
        if (
            partial is not None
            and partial[0]() is sequence
            and not np.isin(frames, partial[1]).all()
        ):  # read() posed the frames of other windows: read again for these
            sequence, _ = self.read(**partial[2], only_windows=True, window=window, stride=stride)
        tpl = self._template_of(sequence)
        seq = self._template_vertices_seq(sequence, tpl)
        clips = seq.vertices[frames]  # (W, T, N, 3)
        clips = np.asarray(normalize_clip(clips), dtype=np.float32)
        return clips, spans, tpl

    def probabilities(
        self, clips: np.ndarray, geodesic: np.ndarray, batch_size: int = 16
    ) -> np.ndarray:
        """Softmax class probabilities (W, C) of clips (W, T, N, 3), ``batch_size`` at a time."""
        import torch

        geo = torch.as_tensor(np.asarray(geodesic, dtype=np.float32), device=self.device)
        out = []
        with torch.inference_mode():
            for i in range(0, len(clips), max(1, int(batch_size))):
                x = torch.as_tensor(clips[i : i + batch_size], device=self.device)
                out.append(torch.softmax(self.model(x, geo).float(), dim=-1).cpu().numpy())
        probs = (
            np.concatenate(out, axis=0) if out else np.zeros((0, len(self.class_names)), np.float32)
        )
        if not np.isfinite(probs).all():
            raise InputError(
                self.source,
                "the model's outputs are NaN or Inf (broken weights, or an input it cannot "
                "take); no label is given",
            )
        return probs

    def prediction(
        self,
        sequence: MeshSequence,
        spans: list[tuple[float, float]],
        probs: np.ndarray,
        top_k: int = 5,
    ) -> Prediction:
        """Assemble a :class:`Prediction` from window spans and their probabilities (W, C)."""
        k = max(1, min(int(top_k), len(self.class_names)))
        return Prediction(
            file=Path(sequence.source),
            windows=[(s, e, _rank(p, self.class_names, k)) for (s, e), p in zip(spans, probs)],
            overall=_rank(probs.mean(axis=0), self.class_names, k),
            duration_s=float(sequence.duration),
            fps=float(sequence.fps),
        )

    def predict(
        self,
        sequence: MeshSequence,
        window: float | None = None,
        stride: float | None = None,
        top_k: int = 5,
        batch_size: int = 16,
    ) -> Prediction:
        """Label a sequence per window and overall (the mean of the window probabilities)."""
        clips, spans, tpl = self.clips(sequence, window, stride)
        probs = self.probabilities(clips, tpl.geodesic, batch_size)
        return self.prediction(sequence, spans, probs, top_k)

    # ----------------------------------------------------------------- attention
    def attention(
        self,
        sequence: MeshSequence,
        window: float | None = None,
        stride: float | None = None,
        batch_size: int = 16,
    ) -> Attention:
        """Per-frame, per-patch attention-rollout relevance (see :class:`Attention`)."""
        import torch

        clips, spans, tpl = self.clips(sequence, window, stride)
        geo = torch.as_tensor(np.asarray(tpl.geodesic, dtype=np.float32), device=self.device)
        rolls = []
        with torch.inference_mode():
            for i in range(0, len(clips), batch_size):
                x = torch.as_tensor(clips[i : i + batch_size], device=self.device)
                rolls.append(self.model.attention_rollout(x, geo).float().cpu().numpy())
        roll = np.concatenate(rolls, axis=0)  # (W, T, P2)
        p2 = roll.shape[-1]
        times = (np.arange(sequence.num_frames) + 0.5) / sequence.fps  # (T_seq,)
        centres = np.array([(s + e) / 2 for s, e in spans])  # (W,)
        win = np.argmin(np.abs(times[:, None] - centres[None, :]), axis=1)  # (T_seq,)
        starts = np.array([s for s, _ in spans])[win]
        lengths = np.array([max(e - s, 1e-9) for s, e in spans])[win]
        bins = np.clip(
            np.floor((times - starts) / lengths * self.num_frames), 0, self.num_frames - 1
        )
        relevance = roll[win, bins.astype(np.int64)]  # (T_seq, P2)
        geodesic = np.asarray(tpl.geodesic, dtype=np.float32)
        patch_of_point = np.argmin(geodesic[:, :p2], axis=1).astype(np.int64)  # (N,)
        return Attention(
            relevance=relevance.astype(np.float32),
            vertex_ids=np.asarray(tpl.vertex_ids, dtype=np.int64),
            patch_of_point=patch_of_point,
            windows=spans,
            window_of_frame=win.astype(np.int64),
        )


def _topology_without_reading(
    path: Path, body: str, body_models
) -> tuple[np.ndarray, np.ndarray] | None:
    """(rest_vertices, faces) of the body a parameter file will be posed on, if known
    before reading it (AMASS, BVH, ASF/AMC); None for mesh files or when the readers
    cannot tell. Lets :meth:`Classifier.read` pose only the template vertices."""
    from stmt import io as stmt_io

    detect = getattr(stmt_io, "detect_format", None)
    topology = getattr(stmt_io, "body_topology", None)
    if detect is None or topology is None:
        return None
    fmt = detect(path)
    if not str(fmt).startswith(("amass", "bvh", "asf")):
        return None
    rest, faces, _name = topology(body=body, body_models=body_models, fmt=fmt, path=path)
    return np.asarray(rest, dtype=np.float32), np.asarray(faces, dtype=np.int64)
