"""Inference with a trained checkpoint: :class:`Classifier`.

>>> from stmt import Classifier, read_sequence            # doctest: +SKIP
>>> clf = Classifier.from_checkpoint("stmt_tiny.ckpt")     # doctest: +SKIP
>>> clf.predict(read_sequence("walk.npz")).overall[:3]     # doctest: +SKIP
[('walk', 0.81), ('run', 0.07), ('stand', 0.03)]

The classifier keeps no state about the sequences it sees. Like an
inferencer (MMAction2's), it runs in three steps, each a method:

1. :meth:`Classifier.preprocess`: a sequence -> :class:`Inputs`, the model
   input of each of its windows, made by :mod:`stmt.clip` exactly as training
   made its clips (the same grid at the checkpoint's fps, bin-centre frames,
   float16 offsets, normalisation). Without ``window``, a sequence no longer
   than the checkpoint's ``clip_s`` (its longest training sample) is one
   whole-clip window, as training saw such a clip; a longer one is cut into
   windows of ``window_s`` (the checkpoint's median training sample) every
   ``stride`` seconds (default: half a window) covering it, the last aligned
   to the end. A checkpoint from before ``clip_s`` was recorded is always cut
   into windows (a file no longer than one window is one window). A checkpoint
   trained with fixed windows (``fixed_window``) is always cut into windows that
   each cover ``window`` seconds, a shorter file padded in the middle of one, as
   its training clips were.
2. :meth:`Classifier.forward`: the windows of several files through the model
   in batches (files of one body topology share a model call).
3. :meth:`Classifier.postprocess`: softmax probabilities -> a
   :class:`Prediction`: per window, and **overall** as the mean of the window
   probabilities (every window weighs the same).

A calibrated checkpoint (``stmt calibrate``, :mod:`stmt.engine.calibration`)
divides the logits by its temperature before the softmax, and says "unknown"
for a file (or a window) whose top-1 probability is below its threshold
(``unknown_threshold``; 0 turns it off).

Only the template vertices are posed (the template: a farthest point sample of
``num_points`` vertices of the topology's rest mesh, cached on disk by
:func:`stmt.data.template.get_template`). :meth:`Classifier.read` with
``only_windows=True`` also poses only the frames the windows need; the
sequence it returns says which (``MeshSequence.posed``), and
:meth:`Classifier.preprocess` refuses windows that need other frames.

Checkpoints are read with ``torch.load(..., weights_only=True)``: a checkpoint
from the internet cannot run code when it is loaded. Only the bare model is
built (no Lightning import), which keeps ``stmt classify`` quick to start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stmt import clip
from stmt.checkpoint import REQUIRED_HPARAMS  # noqa: F401 - re-exported
from stmt.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from stmt.sequence import MeshSequence


Ranked = list[tuple[str, float]]
# a take shorter than this fraction of the model's window is labelled with a "too short:"
# warning (the model sees one pose stretched over its window, not a motion)
TOO_SHORT = 0.1
NON_FINITE = (
    "the model's outputs are NaN or Inf (broken weights, or an input it cannot take); "
    "no label is given"
)


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
        warnings: lines about input that is legal but odd (from the reader, the body
            or the windows), shown with the label.
        unknown_threshold: a top-1 probability below this says "unknown" (none of the
            classes fits); None: the checkpoint has no such rule.
        too_short: the take is far shorter than the model's window (a "too short:"
            warning): with an "unknown" rule, it is unknown whatever the probabilities.
    """

    file: Path
    windows: list[tuple[float, float, Ranked]]
    overall: Ranked
    duration_s: float = 0.0
    fps: float = 0.0
    warnings: list[str] = field(default_factory=list)
    unknown_threshold: float | None = None
    too_short: bool = False

    @property
    def score(self) -> float:
        """The overall top-1 probability, which the "unknown" rule thresholds."""
        return float(self.overall[0][1])

    @property
    def unknown(self) -> bool:
        """True when none of the classes fits: the top-1 probability is below the rule's
        threshold (always False without one)."""
        return self.is_unknown(self.overall)

    def is_unknown(self, ranked: Ranked) -> bool:
        """Whether a ranked list (overall, or a window's) is "unknown"."""
        if self.unknown_threshold is None:
            return False
        return self.too_short or float(ranked[0][1]) < self.unknown_threshold

    def to_json(self) -> dict[str, Any]:
        """The ``stmt classify --json`` record of this file (see stmt.commands.classify)."""
        return {
            "file": str(self.file),
            "duration_s": round(float(self.duration_s), 4),
            "fps": round(float(self.fps), 4),
            "unknown": self.unknown,
            "score": self.score,
            "overall": [{"label": a, "prob": float(p)} for a, p in self.overall],
            "windows": [
                {
                    "start": round(float(s), 4),
                    "end": round(float(e), 4),
                    "unknown": self.is_unknown(top),
                    "top_k": [{"label": a, "prob": float(p)} for a, p in top],
                }
                for s, e, top in self.windows
            ],
            "warnings": list(self.warnings),
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
@dataclass
class Inputs:
    """One sequence made ready for the model (:meth:`Classifier.preprocess`).

    Attributes:
        source: the sequence's file.
        duration_s: seconds the sequence covers.
        fps: the sequence's own frame rate.
        windows: how it was cut (:class:`stmt.clip.Windows`).
        clips: (W, T, N, 3) float32 normalised model inputs, one per window.
        template: the template of its body topology (its ``geodesic`` goes to the model).
        warnings: the sequence's warnings (:attr:`MeshSequence.warnings`).
        too_short: shorter than :data:`TOO_SHORT` of the model's window.
    """

    source: Path
    duration_s: float
    fps: float
    windows: clip.Windows
    clips: np.ndarray
    template: Any
    warnings: list[str] = field(default_factory=list)
    too_short: bool = False

    @property
    def spans(self) -> list[tuple[float, float]]:
        return self.windows.spans


class Classifier:
    """A trained STMT model ready to label mesh sequences (see the module docstring).

    ``clip_s``: the longest training sample in seconds (a sequence no longer than it
    is one whole-clip window); None for checkpoints that do not record it.
    ``fixed_window``: the checkpoint was trained on clips that each cover ``window_s``
    seconds (:mod:`stmt.clip`): every sequence is cut into such windows.
    """

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
        clip_s: float | None = None,
        fixed_window: bool = False,
        temperature: float = 1.0,
        unknown_threshold: float | None = None,
    ):
        self.model = model.eval()
        self.class_names = list(class_names)
        self.num_frames = int(num_frames)
        self.num_points = int(num_points)
        self.fps = float(fps)
        self.window_s = float(window_s)
        self.clip_s = None if clip_s is None else float(clip_s)
        self.fixed_window = bool(fixed_window)
        self.temperature = float(temperature)  # logits are divided by it before the softmax
        self.unknown_threshold = unknown_threshold  # top-1 probability under it: "unknown"
        self.arch = arch
        self.train_geodesic = geodesic  # (N, N) of the training template, or None
        self.device = device
        self.source = source
        self._templates: dict[str, Any] = {}  # memo of templates per topology (not per sequence)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> Classifier:
        """Rebuild the bare model from an stmt checkpoint (:func:`stmt.checkpoint.load_classifier`)."""
        import torch

        from stmt.checkpoint import load_classifier

        path = Path(path)
        model, hp, geodesic = load_classifier(path)
        calibration = hp.get("calibration") or {}
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
            clip_s=None if hp.get("clip_s") is None else float(hp["clip_s"]),
            fixed_window=bool(hp.get("fixed_window", False)),
            temperature=float(calibration.get("temperature", 1.0)),
            unknown_threshold=calibration.get("unknown_threshold"),
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

    # ----------------------------------------------------------------- windows
    def windows(
        self,
        num_frames: int,
        fps: float,
        window: float | None = None,
        stride: float | None = None,
        source: Path | None = None,
    ) -> clip.Windows:
        """How a sequence of ``num_frames`` at ``fps`` is cut (module docstring, step 1).

        Raises :class:`InputError` for a bad window/stride, or windows whose clips would
        pass the limits of :mod:`stmt.limits` (counted before any is cut)."""
        from stmt import limits

        whole = self.clip_s if window is None and not self.fixed_window else None
        window = self.window_s if window is None else float(window)
        stride = window / 2 if stride is None else float(stride)
        if not (math.isfinite(window) and math.isfinite(stride)) or (
            window <= 0 or stride <= 0 or stride > window
        ):
            raise InputError(
                source, f"need 0 < stride <= window, got window {window} s, stride {stride} s"
            )
        for name, value in (("window", window), ("stride", stride)):
            if value * self.fps < 1 - 1e-9:  # would be rounded up to one frame: say so
                raise InputError(
                    source,
                    f"--{name} {value:g} s is shorter than one frame of the model's "
                    f"{self.fps:g} fps ({1 / self.fps:.4g} s); use a larger --{name}",
                )
        total = clip.grid_length(num_frames, fps, self.fps)
        length, step = clip.window_lengths(self.fps, window, stride)
        count = clip.count_windows(total, length, step)
        if whole is not None and total <= round(whole * self.fps):
            count = 1
        clip_bytes = count * self.num_frames * self.num_points * 3 * 4
        if count * self.num_frames > limits.max_frames() or clip_bytes > limits.MAX_ARRAY_BYTES:
            raise InputError(
                source,
                f"{count} windows of {window:g} s every {stride:g} s over {num_frames / fps:.1f} s "
                f"({count * self.num_frames} clip frames, {clip_bytes / 1024**3:.1f} GB) pass the "
                "limits; use a larger --stride",
            )
        return clip.plan_windows(
            num_frames, fps, self.fps, clip_s=whole, window=window, stride=stride,
            fixed=self.fixed_window,
        )  # fmt: skip

    def frames_needed(
        self, num_frames: int, fps: float, window: float | None = None, stride: float | None = None
    ) -> np.ndarray:
        """Sorted source frames the windows of a sequence of ``num_frames`` at ``fps`` use."""
        grid = self.windows(num_frames, fps, window, stride).grid_frames(self.num_frames)
        return clip.source_frames(grid, fps, self.fps, num_frames)

    # ----------------------------------------------------------------- reading
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
        frames that the windows of ``window`` / ``stride`` (as in :meth:`preprocess`)
        use; the sequence keeps its true length and fps and lists those frames in
        ``posed``, and :meth:`preprocess` refuses other windows. Mesh files are read whole.

        ``joint_map`` ({their joint: ours}) is for a skeleton of a rig stmt does not know.

        Returns ``(sequence, template)``; the sequence holds the template vertices.
        """
        from stmt import io as stmt_io

        path = Path(path)
        posed: list[np.ndarray] = []

        def needed(num_frames: int, fps: float) -> np.ndarray:
            if num_frames <= 0:
                return np.zeros(0, np.int64)  # the reader reports the empty file
            posed.append(self.frames_needed(num_frames, fps, window, stride))
            return posed[-1]

        frames = needed if only_windows else None
        topo = _topology_without_reading(path, body, body_models)
        if topo is not None:
            rest, faces = topo
            tpl = self.template(faces, rest, path)
            seq = stmt_io.read_sequence(
                path, body=body, body_models=body_models, vertex_ids=tpl.vertex_ids, frames=frames,
                joint_map=joint_map,
            )  # fmt: skip
        else:
            seq = stmt_io.read_sequence(
                path, body=body, body_models=body_models, joint_map=joint_map
            )
        tpl = self._template_of(seq)
        seq = self._template_vertices_seq(seq, tpl)
        if posed and len(posed[-1]) < seq.num_frames:
            seq = dataclasses.replace(seq, posed=posed[-1])
        return seq, tpl

    # ----------------------------------------------------------------- the three steps
    def preprocess(
        self, sequence: MeshSequence, window: float | None = None, stride: float | None = None
    ) -> Inputs:
        """Cut a sequence into normalised model inputs (module docstring, step 1)."""
        windows = self.windows(sequence.num_frames, sequence.fps, window, stride, sequence.source)
        grid = windows.grid_frames(self.num_frames)  # (W, T) grid frames
        if sequence.posed is not None:
            need = clip.source_frames(grid, sequence.fps, self.fps, sequence.num_frames)
            if not np.isin(need, sequence.posed).all():
                raise InputError(
                    sequence.source,
                    f"the sequence was posed at {len(sequence.posed)} of its "
                    f"{sequence.num_frames} frames only, not at all the frames these windows "
                    "use; read it with the same window and stride, or whole",
                )
        from stmt.io.mesh import check_plausible

        tpl = self._template_of(sequence)
        seq = self._template_vertices_seq(sequence, tpl)
        warnings = list(sequence.warnings) + check_plausible(seq)  # or InputError: no body
        too_short = sequence.duration < TOO_SHORT * self.window_s
        if too_short:
            warnings.append(
                f"too short: {sequence.duration:.3g} s is less than {TOO_SHORT:.0%} of the "
                f"model's {self.window_s:g} s window; the label is little more than a guess"
            )
        return Inputs(
            source=Path(sequence.source),
            duration_s=float(sequence.duration),
            fps=float(sequence.fps),
            windows=windows,
            clips=clip.clip_inputs(seq.vertices, seq.fps, self.fps, grid),
            template=tpl,
            warnings=warnings,
            too_short=too_short,
        )

    def forward(self, items: list[Inputs], batch_size: int = 16) -> list[np.ndarray]:
        """Softmax probabilities (W_i, C) of each item's windows; the windows of items of
        one topology go through the model together, ``batch_size`` at a time. Not checked
        for NaN/Inf here (:meth:`postprocess` does, per item)."""
        out: list[np.ndarray | None] = [None] * len(items)
        groups: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(item.template.key, []).append(i)
        for members in groups.values():
            clips = np.concatenate([items[i].clips for i in members], axis=0)  # (sum W, T, N, 3)
            probs = self._softmax(clips, items[members[0]].template.geodesic, batch_size)
            at = 0
            for i in members:
                out[i] = probs[at : at + len(items[i].clips)]
                at += len(items[i].clips)
        return out

    def postprocess(self, item: Inputs, probs: np.ndarray, top_k: int = 5) -> Prediction:
        """A :class:`Prediction` of one item's window probabilities (W, C).

        Raises :class:`InputError` naming the file when they are NaN or Inf."""
        if not np.isfinite(probs).all():
            raise InputError(item.source, NON_FINITE)
        k = max(1, min(int(top_k), len(self.class_names)))
        return Prediction(
            file=item.source,
            windows=[(s, e, _rank(p, self.class_names, k)) for (s, e), p in zip(item.spans, probs)],
            overall=_rank(probs.mean(axis=0), self.class_names, k),
            duration_s=item.duration_s,
            fps=item.fps,
            warnings=list(item.warnings),
            unknown_threshold=self.unknown_threshold or None,  # 0 turns the rule off
            too_short=item.too_short,
        )

    def predict(
        self,
        sequence: MeshSequence,
        window: float | None = None,
        stride: float | None = None,
        top_k: int = 5,
        batch_size: int = 16,
    ) -> Prediction:
        """Label a sequence per window and overall: preprocess -> forward -> postprocess."""
        item = self.preprocess(sequence, window, stride)
        return self.postprocess(item, self.forward([item], batch_size)[0], top_k)

    def _batched(self, fn, clips: np.ndarray, geodesic: np.ndarray, batch_size: int) -> list:
        """``fn(x, geodesic)`` as numpy float32 on ``clips`` (W, T, N, 3), ``batch_size`` at a time."""
        import torch

        geo = torch.as_tensor(np.asarray(geodesic, dtype=np.float32), device=self.device)
        out = []
        with torch.inference_mode():
            for i in range(0, len(clips), max(1, int(batch_size))):
                x = torch.as_tensor(clips[i : i + batch_size], device=self.device)
                out.append(fn(x, geo).float().cpu().numpy())
        return out

    def _softmax(self, clips: np.ndarray, geodesic: np.ndarray, batch_size: int) -> np.ndarray:
        import torch

        out = self._batched(
            lambda x, g: torch.softmax(self.model(x, g).float() / self.temperature, dim=-1),
            clips,
            geodesic,
            batch_size,
        )
        if not out:
            return np.zeros((0, len(self.class_names)), np.float32)
        return np.concatenate(out, axis=0)

    def probabilities(
        self, clips: np.ndarray, geodesic: np.ndarray, batch_size: int = 16
    ) -> np.ndarray:
        """Softmax class probabilities (W, C) of clips (W, T, N, 3), ``batch_size`` at a time;
        :class:`InputError` when they are NaN or Inf."""
        probs = self._softmax(clips, geodesic, batch_size)
        if not np.isfinite(probs).all():
            raise InputError(self.source, NON_FINITE)
        return probs

    # ----------------------------------------------------------------- attention
    def attention(
        self,
        sequence: MeshSequence,
        window: float | None = None,
        stride: float | None = None,
        batch_size: int = 16,
    ) -> Attention:
        """Per-frame, per-patch attention-rollout relevance (see :class:`Attention`)."""
        item = self.preprocess(sequence, window, stride)
        tpl, spans = item.template, item.spans
        rolls = self._batched(self.model.attention_rollout, item.clips, tpl.geodesic, batch_size)
        roll = np.concatenate(rolls, axis=0)  # (W, T, P2)
        p2 = roll.shape[-1]
        times = (np.arange(sequence.num_frames) + 0.5) / sequence.fps  # (T_seq,)
        win = clip.nearest_window(times, spans)  # (T_seq,)
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
            window_of_frame=win,
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
    if not str(fmt).startswith(("amass", "bvh", "asf", "joint-csv", "fbx", "gltf")):
        return None
    rest, faces, _name = topology(body=body, body_models=body_models, fmt=fmt, path=path)
    return np.asarray(rest, dtype=np.float32), np.asarray(faces, dtype=np.int64)
