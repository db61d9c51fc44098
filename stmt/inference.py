"""Inference with a trained checkpoint: :class:`Classifier`, a straight pipeline.

>>> from stmt import Classifier, read_sequence            # doctest: +SKIP
>>> clf = Classifier.from_checkpoint("stmt_tiny.ckpt")     # doctest: +SKIP
>>> clf.predict(read_sequence("walk.npz")).overall[:3]     # doctest: +SKIP
[('walk', 0.81), ('run', 0.07), ('stand', 0.03)]

The classifier keeps no state about the files it sees. Like an inferencer
(MMAction2's), it takes a file along one line, each step once:

1. **read** (:func:`stmt.reading.read`): the format detected and the file parsed into
   a motion, nothing posed yet;
2. **plan**: the windows the checkpoint's :class:`~stmt.clip.ClipSettings` cut it
   into (:meth:`stmt.clip.ClipSettings.windows`). Without ``window``, a file no
   longer than the checkpoint's ``clip_s`` (its longest training sample) is one
   whole-clip window, as training saw such a clip; a longer one is cut into windows
   of ``window_s`` (the checkpoint's median training sample) every ``stride``
   seconds (default: half a window) covering it, the last aligned to the end. A
   checkpoint without ``clip_s`` always cuts windows; one trained with fixed windows
   (``fixed_window``) cuts every file into windows that each cover ``window_s``, a
   shorter file padded in the middle of one, as its training clips were;
3. **pose** (:func:`stmt.body.pose_motion`): only the vertices of the template of the
   motion's topology (a farthest point sample of ``num_points`` vertices of its rest
   mesh, :func:`stmt.template.get_template`; its key computed once per file, the
   template kept per topology) and only the frames the windows use;
4. **preprocess**: the windows' model inputs, made by :mod:`stmt.clip` exactly as
   training made its clips (the same grid at the checkpoint's fps, bin-centre
   frames, float16 offsets, normalisation): an :class:`Inputs`;
5. **forward** (:meth:`Classifier.forward`): the windows of several files through the
   model in batches (files of one topology share a model call): logits;
6. **postprocess** (:meth:`Classifier.postprocess`): logits -> softmax probabilities
   -> a :class:`Prediction`, per window and **overall** as the mean of the window
   probabilities (every window weighs the same).

A checkpoint whose members were trained on windows of several lengths (``scales``,
:func:`stmt.checkpoint.window_scales`) plans, poses and preprocesses the windows of
each length (the posing once, for the frames all of them use); forward runs each
length's clips through that length's members; postprocess first mixes their logits
into the windows of the checkpoint's own length (:func:`stmt.clip.scale_mix`), which
are the windows the prediction lists.

:meth:`Classifier.read` is steps 1-4 for a file; :meth:`Classifier.preprocess` steps
2 and 4 for a sequence read already (the whole of it posed); :meth:`Classifier.predict`
labels such a sequence. :meth:`Classifier.attention` maps the attention rollout of the
same inputs onto the frames (the viewer shows labels and attention of one
preprocessing).

A calibrated checkpoint (``stmt calibrate``, :mod:`stmt.engine.calibration`)
divides the logits by its temperature before the softmax, and says "unknown"
for a file (or a window) whose top-1 probability is below its threshold
(``unknown_threshold``; 0 turns it off).

Checkpoints are read with ``torch.load(..., weights_only=True)``: a checkpoint
from the internet cannot run code when it is loaded. Only the bare model is
built (no Lightning import), which keeps ``stmt classify`` quick to start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stmt import clip, reading
from stmt.checkpoint import load_model, window_scales
from stmt.clip import ClipSettings
from stmt.errors import InputError
from stmt.io.detect import input_kind
from stmt.io.mesh import check_plausible
from stmt.sequence import MeshSequence
from stmt.template import Template, get_template, template_key

if TYPE_CHECKING:  # pragma: no cover
    import torch


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


@dataclass
class AttentionMap:
    """Where the model looks, per frame of a sequence (:meth:`Classifier.attention`).

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


@dataclass
class Inputs:
    """One sequence made ready for the model (steps 1-4 of the module docstring).

    Attributes:
        source: the sequence's file.
        duration_s: seconds the sequence covers.
        fps: the sequence's own frame rate.
        num_frames: the sequence's own frame count.
        windows: how it was cut (:class:`stmt.clip.Windows`).
        clips: (W, T, N, 3) float32 normalised model inputs, one per window.
        template: the template of its body topology (its ``geodesic`` goes to the model).
        warnings: the sequence's warnings (:attr:`MeshSequence.warnings`) and the
            plausibility checks'.
        too_short: shorter than :data:`TOO_SHORT` of the model's window.
        scale: (len(clips),) int64 window length of each clip (0: the checkpoint's
            own, k: its k-th other, :attr:`Classifier.scales`); None: all 0.
        mix: (W, len(clips)) how the clips' logits make the W windows' (the clips of
            other lengths mixed in, :func:`stmt.clip.scale_mix`); None: one clip each.
    """

    source: Path
    duration_s: float
    fps: float
    num_frames: int
    windows: clip.Windows
    clips: np.ndarray
    template: Template
    warnings: list[str] = field(default_factory=list)
    too_short: bool = False
    kind: str = "mocap"  # the input kind (:func:`stmt.io.detect.input_kind`)
    scale: np.ndarray | None = None
    mix: np.ndarray | None = None

    @property
    def spans(self) -> list[tuple[float, float]]:
        return self.windows.spans

    @property
    def clip_scale(self) -> np.ndarray:
        """(len(clips),) int64 window length of each clip (:attr:`scale`, all 0 without)."""
        return np.zeros(len(self.clips), np.int64) if self.scale is None else self.scale


def _rank(probs: np.ndarray, names: list[str], k: int) -> Ranked:
    order = np.argsort(-probs, kind="stable")[:k]
    return [(names[i], float(probs[i])) for i in order]


class Classifier:
    """A trained STMT model ready to label MoCap files and mesh sequences (module docstring).

    ``clip``: how the checkpoint's clips were made (:class:`~stmt.clip.ClipSettings`);
    ``temperature``, ``unknown_threshold`` (``unknown_thresholds``: per input kind): its
    calibration (1 and None: none); ``scales``: ``(settings, model)`` of members trained
    on windows of other lengths, each cutting the file its own way, their logits mixed
    into the windows of ``clip`` (:func:`stmt.clip.scale_mix`)."""

    def __init__(
        self,
        model: torch.nn.Module,
        clip: ClipSettings,
        *,
        arch: str = "",
        device: str = "cpu",
        source: Path | None = None,
        temperature: float = 1.0,
        unknown_threshold: float | None = None,
        unknown_thresholds: dict[str, float] | None = None,
        scales: list[tuple[ClipSettings, torch.nn.Module]] = (),
    ):
        self.model, self.clip = model.eval(), clip
        self.scales = [(settings, m.eval()) for settings, m in scales]
        self.arch = arch
        self.device = device
        self.source = source
        self.temperature = float(temperature)  # logits are divided by it before the softmax
        self.unknown_threshold = unknown_threshold  # top-1 probability under it: "unknown"
        self.unknown_thresholds = dict(unknown_thresholds or {})  # ...of an input kind
        self._templates: dict[str, Template] = {}  # one per topology (not per file)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> Classifier:
        """Rebuild the bare model from an stmt checkpoint (:func:`stmt.checkpoint.load_model`)."""
        path = Path(path)
        model, hp, settings = load_model(path)
        calibration = hp.get("calibration") or {}
        lengths, model = window_scales(hp, path), model.to(device)
        models = model.groups([n for _, n in lengths]) if len(lengths) > 1 else [model]
        return cls(
            models[0], settings, arch=str(hp["arch"]), device=device, source=path,
            temperature=float(calibration.get("temperature", 1.0)),
            unknown_threshold=calibration.get("unknown_threshold"),
            unknown_thresholds=calibration.get("unknown_thresholds"),
            scales=[(dataclasses.replace(settings, window_s=w), m)
                    for (w, _), m in zip(lengths[1:], models[1:])],
        )  # fmt: skip

    def threshold_for(self, kind: str) -> float | None:
        """The "unknown" threshold of an input kind (None or 0: no rule)."""
        return self.unknown_thresholds.get(kind, self.unknown_threshold)

    # the clip settings most callers ask for
    class_names = property(lambda self: list(self.clip.class_names))
    num_frames = property(lambda self: self.clip.num_frames)
    num_points = property(lambda self: self.clip.num_points)
    fps = property(lambda self: self.clip.fps)
    window_s = property(lambda self: self.clip.window_s)
    clip_s = property(lambda self: self.clip.clip_s)
    fixed_window = property(lambda self: self.clip.fixed_window)

    # ----------------------------------------------------------------- steps 1-4
    def read(
        self,
        path: str | Path,
        *,
        body: str = "auto",
        body_models: str | Path | None = None,
        window: float | None = None,
        stride: float | None = None,
        joint_map: dict[str, str] | None = None,
        fmt: str | None = None,
    ) -> Inputs:
        """The model inputs of a MoCap file: read, plan, pose, preprocess (module
        docstring), each once. Parameter files pose only the template vertices and the
        frames the windows of ``window`` / ``stride`` use; mesh files are read whole.

        ``joint_map`` ({their joint: ours}) is for a skeleton of a rig stmt does not
        know; ``fmt`` the file's format when the caller detected it already."""
        path = Path(path)
        motion = reading.read(path, body, fmt)
        windows = self.clip.windows(motion.num_frames, motion.fps, window, stride, path)
        extra = self.scale_windows(motion.num_frames, motion.fps, path)
        rest, faces = reading.topology(motion, body, body_models)
        tpl = self.template(faces, rest, path, _rest_is_first_frame(motion))
        frames = _source_frames([windows, *(w for _, w in extra)], self.num_frames, motion)
        seq = reading.pose_motion(
            motion, body=body, body_models=body_models, vertex_ids=tpl.vertex_ids, frames=frames,
            joint_map=joint_map,
        )  # fmt: skip
        return make_inputs(seq, windows, tpl, self.clip, extra)

    def scale_windows(
        self, num_frames: int, fps: float, source: Path | None = None
    ) -> list[tuple[ClipSettings, clip.Windows]]:
        """How each of :attr:`scales` cuts a sequence (its own window length and stride)."""
        return [(c, c.windows(num_frames, fps, None, None, source)) for c, _ in self.scales]

    def preprocess(
        self, sequence: MeshSequence, window: float | None = None, stride: float | None = None
    ) -> Inputs:
        """The model inputs of a sequence read already (steps 2 and 4).

        Raises :class:`InputError` when the sequence was posed at some frames only
        (``MeshSequence.posed``) and these windows need others."""
        windows = self.clip.windows(
            sequence.num_frames, sequence.fps, window, stride, sequence.source
        )
        extra = self.scale_windows(sequence.num_frames, sequence.fps, sequence.source)
        _check_posed(sequence, [windows, *(w for _, w in extra)], self.num_frames)
        rest = sequence.vertices[0] if sequence.rest_vertices is None else sequence.rest_vertices
        tpl = self.template(sequence.faces, rest, sequence.source, _rest_is_first_frame(sequence))
        return make_inputs(_template_vertices(sequence, tpl), windows, tpl, self.clip, extra)

    def template(
        self,
        faces: np.ndarray | None,
        rest_vertices: np.ndarray,
        source: Path | None = None,
        first_frame: bool = False,
    ) -> Template:
        """The template (vertex ids, geodesic) of one topology, kept for the life of the
        classifier. ``faces`` None (point data): graph distances on the rest points
        (:mod:`stmt.template`). ``first_frame``: ``rest_vertices`` is a mesh sequence's
        first frame, not a body's rest mesh (:func:`stmt.template.template_key`)."""
        faces = None if faces is None else np.ascontiguousarray(faces, dtype=np.int64)
        rest = np.ascontiguousarray(rest_vertices, dtype=np.float32)
        key = template_key(faces, rest, self.num_points, first_frame)
        if key not in self._templates:
            if rest.shape[0] < self.num_points:
                need = f"the mesh has {rest.shape[0]} vertices, the model needs {self.num_points}"
                raise InputError(source, need)
            self._templates[key] = get_template(faces, rest, self.num_points, key=key)
        return self._templates[key]

    # ----------------------------------------------------------------- steps 5 and 6
    def forward(self, items: list[Inputs], batch_size: int = 16) -> list[np.ndarray]:
        """Logits (W_i, C) of each item's clips, each clip through the members of its
        window length (:attr:`Inputs.scale`); the clips of items of one topology and length
        go through them together, ``batch_size`` at a time. Not checked for NaN/Inf here
        (:meth:`postprocess` does, per item)."""
        models = [self.model, *(m for _, m in self.scales)]
        return _run_clips(models, items, len(self.class_names), batch_size, self.device)

    def postprocess(self, item: Inputs, logits: np.ndarray, top_k: int = 5) -> Prediction:
        """A :class:`Prediction` of one item's clips' logits (:meth:`forward`): mixed into
        its windows' (:attr:`Inputs.mix`), divided by the temperature, softmax.

        Raises :class:`InputError` naming the file when they are NaN or Inf."""
        if not np.isfinite(logits).all():
            raise InputError(item.source, NON_FINITE)
        if item.mix is not None:
            logits = (item.mix @ logits).astype(np.float32)
        probs = _softmax(logits, self.temperature)
        names = self.class_names
        k = max(1, min(int(top_k), len(names)))
        return Prediction(
            file=item.source,
            windows=[(s, e, _rank(p, names, k)) for (s, e), p in zip(item.spans, probs)],
            overall=_rank(probs.mean(axis=0), names, k),
            duration_s=item.duration_s,
            fps=item.fps,
            warnings=list(item.warnings),
            unknown_threshold=self.threshold_for(item.kind) or None,  # 0 turns the rule off
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

    def probabilities(self, clips: np.ndarray, geodesic: np.ndarray, batch_size: int = 16):
        """Softmax class probabilities (W, C) of clips (W, T, N, 3) of the checkpoint's own
        window length, ``batch_size`` at a time; :class:`InputError` when NaN or Inf."""
        logits = _batched(self.model, clips, geodesic, batch_size, self.device)
        probs = _softmax(
            np.concatenate(logits or [np.zeros((0, len(self.class_names)))]), self.temperature
        )
        if not np.isfinite(probs).all():
            raise InputError(self.source, NON_FINITE)
        return probs

    # ----------------------------------------------------------------- attention
    def attention(self, item: Inputs, batch_size: int = 16) -> AttentionMap:
        """Per-frame, per-patch attention-rollout relevance of a preprocessed sequence
        (see :class:`AttentionMap`), of the members of the checkpoint's own window length."""
        rollout = _batched(
            self.model.attention_rollout, item.clips[: len(item.windows)],
            item.template.geodesic, batch_size, self.device,
        )  # fmt: skip
        return attention_map(item, np.concatenate(rollout, axis=0), self.num_frames)


def _rest_is_first_frame(motion) -> bool:
    """Whether a motion's template is made from its own first frame (a mesh sequence read as
    it is, or one without a body's rest mesh), not from a body's rest mesh."""
    return isinstance(motion, MeshSequence) and (
        motion.body == "mesh" or motion.rest_vertices is None
    )


def make_inputs(
    seq: MeshSequence,
    windows: clip.Windows,
    tpl: Template,
    settings: ClipSettings,
    extra: list[tuple[ClipSettings, clip.Windows]] = (),
) -> Inputs:
    """Step 4: the clips of ``windows`` of ``seq`` (its template vertices only), made as
    the settings' training clips were, then those of ``extra`` (other window lengths'
    settings and windows, :meth:`Classifier.scale_windows`); the plausibility warnings
    (or an InputError: no body) and a "too short:" one."""
    warnings = list(seq.warnings) + check_plausible(seq)  # or InputError: no body
    too_short = seq.duration < TOO_SHORT * settings.window_s
    if too_short:
        warnings.append(
            f"too short: {seq.duration:.3g} s is less than {TOO_SHORT:.0%} of the "
            f"model's {settings.window_s:g} s window; the label is little more than a guess"
        )
    cuts = [(settings, windows), *extra]
    clips = [
        clip.clip_inputs(seq.vertices, seq.fps, c.fps, w.grid_frames(c.num_frames)) for c, w in cuts
    ]  # (W_k, T, N, 3) each
    return Inputs(
        source=Path(seq.source),
        duration_s=float(seq.duration),
        fps=float(seq.fps),
        num_frames=seq.num_frames,
        windows=windows,
        clips=np.concatenate(clips, axis=0) if extra else clips[0],
        template=tpl,
        warnings=warnings,
        too_short=too_short,
        kind=input_kind(seq.format),
        scale=np.repeat(np.arange(len(cuts)), [len(w) for _, w in cuts]) if extra else None,
        mix=clip.scale_mix(windows.spans, [w.spans for _, w in extra]) if extra else None,
    )


def attention_map(item: Inputs, rollout: np.ndarray, num_frames: int) -> AttentionMap:
    """The windows' rollout (W, T, P2) of ``item`` mapped onto the sequence's frames: each
    frame takes the window whose centre is nearest and that window's time bin holding it."""
    tpl, spans = item.template, item.spans
    p2 = rollout.shape[-1]
    times = (np.arange(item.num_frames) + 0.5) / item.fps  # (T_seq,)
    win = clip.nearest_window(times, spans)  # (T_seq,)
    starts = np.array([s for s, _ in spans])[win]
    lengths = np.array([max(e - s, 1e-9) for s, e in spans])[win]
    bins = np.clip(np.floor((times - starts) / lengths * num_frames), 0, num_frames - 1)
    relevance = rollout[win, bins.astype(np.int64)]  # (T_seq, P2)
    geodesic = np.asarray(tpl.geodesic, dtype=np.float32)
    patch_of_point = np.argmin(geodesic[:, :p2], axis=1).astype(np.int64)  # (N,)
    return AttentionMap(
        relevance=relevance.astype(np.float32),
        vertex_ids=np.asarray(tpl.vertex_ids, dtype=np.int64),
        patch_of_point=patch_of_point,
        windows=spans,
        window_of_frame=win,
    )


def _run_clips(
    models: list, items: list[Inputs], num_classes: int, batch_size: int, device: str
) -> list[np.ndarray]:
    """:meth:`Classifier.forward` with ``models`` (one per window length)."""
    out = [np.zeros((len(it.clips), num_classes), np.float32) for it in items]
    groups: dict[tuple[str, int], list[tuple[int, np.ndarray]]] = {}
    for i, item in enumerate(items):
        scale = item.clip_scale
        for k in np.unique(scale):
            rows = np.flatnonzero(scale == k)
            groups.setdefault((item.template.key, int(k)), []).append((i, rows))
    for (_, k), members in groups.items():
        clips = np.concatenate([items[i].clips[rows] for i, rows in members], axis=0)
        geodesic = items[members[0][0]].template.geodesic
        logits = np.concatenate(_batched(models[k], clips, geodesic, batch_size, device), axis=0)
        at = 0
        for i, rows in members:
            out[i][rows] = logits[at : at + len(rows)]
            at += len(rows)
    return out


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """(W, C) float32 softmax of ``logits / temperature`` (torch's, float32)."""
    import torch

    x = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    return torch.softmax(x / temperature, dim=-1).numpy()


def _batched(fn, clips: np.ndarray, geodesic: np.ndarray, batch_size: int, device: str) -> list:
    """``fn(x, geodesic)`` as numpy float32 on ``clips`` (W, T, N, 3), ``batch_size`` at a
    time, without gradients."""
    import torch

    geo = torch.as_tensor(np.asarray(geodesic, dtype=np.float32), device=device)
    out = []
    with torch.inference_mode():
        for i in range(0, len(clips), max(1, int(batch_size))):
            x = torch.as_tensor(clips[i : i + batch_size], device=device)
            out.append(fn(x, geo).float().cpu().numpy())
    return out


def _source_frames(cuts: list[clip.Windows], num_frames: int, motion) -> np.ndarray:
    """Sorted source frames of ``motion`` the clips of ``num_frames`` frames of every one
    of ``cuts`` use: what to pose."""
    frames = [w.source_frames(num_frames, motion.fps, motion.num_frames) for w in cuts]
    return frames[0] if len(frames) == 1 else np.unique(np.concatenate(frames))


def _check_posed(sequence: MeshSequence, cuts: list[clip.Windows], num_frames: int) -> None:
    """InputError when ``sequence`` was posed at some frames only and the clips of
    ``num_frames`` frames of ``cuts`` need others."""
    if sequence.posed is None:
        return
    need = _source_frames(cuts, num_frames, sequence)
    if not np.isin(need, sequence.posed).all():
        raise InputError(
            sequence.source,
            f"the sequence was posed at {len(sequence.posed)} of its {sequence.num_frames} "
            "frames only, not at all the frames these windows use; read it with the same "
            "window and stride, or whole",
        )


def _template_vertices(seq: MeshSequence, tpl: Template) -> MeshSequence:
    """``seq`` restricted to the template's vertices (it may hold them already, or more)."""
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
