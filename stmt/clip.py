"""The one clip pipeline: sequence -> windows -> frame indices -> normalised model input.

Training (:class:`stmt.data.datamodule.STMTDataModule`), inference
(:class:`stmt.inference.Classifier`) and the viewer use these functions and no
copies of them, so a clip ``stmt classify`` shows the model is made the way
the clips it was trained on were. How a model's clips are made travels as one
object, :class:`ClipSettings`: the data module produces it, the training CLI links
it into the model once, the checkpoint stores it, inference reads it.

1. **Grid.** Clips are cut on a grid of the checkpoint's (the cache's) frame
   rate ``fps``: grid frame k is the file at time k / fps, linearly
   interpolated between its own two nearest frames (:func:`grid_sources`);
   ``stmt prepare`` resamples every file with :func:`resample`. A grid frame
   is kept as float16 offsets from its mean point plus a float32 centre
   (:func:`to_cache_form`), as the cache stores it.
2. **Windows.** A training sample is a span of grid frames (a whole realmix
   clip, or a labelled segment of at most ``chunk_s``). With **fixed windows**
   (``STMTDataModule(window=True)``, recorded in the checkpoint as
   ``fixed_window``) every clip instead covers ``window_s`` seconds whatever
   the sample's length, so the model sees motion at one time scale: a longer
   sample gives a window at a random place (training) or its centre window
   (evaluation), a shorter one sits in the middle of the window with its first
   and last frames held before and after it; inference cuts files into such
   windows, a short file padded the same way. Otherwise, at inference
   (:func:`plan_windows`), without an explicit window a file no longer than
   ``clip_s`` (the longest training sample) is one window spanning all of
   it, as training saw such a clip; a longer file, or any file when a window
   is asked for, is cut into windows of ``window`` seconds every ``stride``
   seconds that cover it (the last aligned to the end).
3. **Frames.** A span of L grid frames gives T clip frames: the centres of T
   equal bins (evaluation and inference), or one uniform draw in each bin
   (training) (:func:`bin_frames`); a span shorter than T repeats frames.
   Training may first draw a shorter part of a sample and a playback speed
   (:func:`draw_spans`): a cropped part shorter than the window is padded in it
   exactly as a short file is at inference, so a held pose at a clip's ends no
   longer says which source (which clip length) it came from.
4. **Normalisation** (:func:`normalise`): subtract the centre of the clip's
   bounding box in x and y and its lowest z (the floor goes to z = 0), divide
   by the body height (the largest per-frame vertical extent over the clip,
   so a squat is not scaled up to standing size), then apply an optional
   augmentation matrix; all of it one affine map per clip, computed from
   per-frame bounds (:func:`frame_bounds`) without a reduction over points.
5. **Which window a time belongs to** (:func:`nearest_window`): the one whose
   centre is nearest, for per-frame labels and attention in the viewer.
6. **Several window lengths** (:func:`scale_mix`): an ensemble whose members were
   trained on windows of other lengths too (``scales`` in the checkpoint) cuts a
   file once per length; each window of the checkpoint's own length takes the
   mean, over lengths, of the logits of the windows of that length nearest to it.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stmt import limits
from stmt.errors import InputError

EPS_HEIGHT = 1e-6  # lower bound on the body height a clip is divided by


# --------------------------------------------------------------------------- the settings
@dataclass(frozen=True)
class ClipSettings:
    """How a model's clips are made: one typed object from the cache to inference.

    :class:`stmt.data.datamodule.STMTDataModule` produces it (``clip_settings``),
    ``stmt fit`` links it into the model once, the checkpoint stores it
    (``hyper_parameters["clip"]``, :mod:`stmt.checkpoint`) and
    :class:`stmt.inference.Classifier` cuts files by it (:meth:`windows`).

    Attributes:
        class_names: the classes, in the order of the model's outputs (empty for a
            pretrained encoder).
        num_frames: T, frames per clip.
        num_points: N, template vertices per frame.
        fps: the frame rate of the grid clips are cut on (step 1).
        window_s: seconds a window covers (step 2).
        clip_s: seconds of the longest training sample: a file no longer than it is one
            whole clip at inference; None: files are always cut into windows.
        fixed_window: every clip covers ``window_s`` seconds (step 2).
    """

    class_names: tuple[str, ...] = ()
    num_frames: int = 24
    num_points: int = 256
    fps: float = 30.0
    window_s: float = 0.8
    clip_s: float | None = None
    fixed_window: bool = False

    def __post_init__(self) -> None:  # plain types, whatever the caller passed
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        for name, kind in (("num_frames", int), ("num_points", int), ("fps", float),
                           ("window_s", float), ("fixed_window", bool)):  # fmt: skip
            object.__setattr__(self, name, kind(getattr(self, name)))
        if self.clip_s is not None:
            object.__setattr__(self, "clip_s", float(self.clip_s))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, as a checkpoint stores it."""
        out = asdict(self)
        out["class_names"] = list(self.class_names)
        return out

    def windows(
        self,
        num_frames: int,
        src_fps: float,
        window: float | None = None,
        stride: float | None = None,
        source: Path | None = None,
    ) -> Windows:
        """How a sequence of ``num_frames`` at ``src_fps`` is cut for a model of these
        settings: without ``window``, a sequence no longer than ``clip_s`` is one whole
        clip, a longer one windows of ``window_s`` every ``stride`` seconds (default:
        half a window); with fixed windows always windows (:func:`plan_windows`).

        Raises :class:`InputError` for a bad window/stride, or windows whose clips would
        pass the limits of :mod:`stmt.limits` (counted before any is cut)."""
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
        total = grid_length(num_frames, src_fps, self.fps)
        length, step = window_lengths(self.fps, window, stride)
        count = count_windows(total, length, step)
        if whole is not None and total <= round(whole * self.fps):
            count = 1
        clip_bytes = count * self.num_frames * self.num_points * 3 * 4
        if count * self.num_frames > limits.max_frames() or clip_bytes > limits.MAX_ARRAY_BYTES:
            raise InputError(
                source,
                f"{count} windows of {window:g} s every {stride:g} s over "
                f"{num_frames / src_fps:.1f} s ({count * self.num_frames} clip frames, "
                f"{clip_bytes / 1024**3:.1f} GB) pass the limits; use a larger --stride",
            )
        return plan_windows(
            num_frames, src_fps, self.fps, clip_s=whole, window=window, stride=stride,
            fixed=self.fixed_window,
        )  # fmt: skip


# --------------------------------------------------------------------------- 1. grid
def grid_length(num_frames: int, src_fps: float, fps: float) -> int:
    """Grid frames of a file of ``num_frames`` at ``src_fps`` resampled to ``fps``:
    floor((num_frames - 1) * fps / src_fps) + 1 (all of them at the same rate)."""
    if abs(src_fps - fps) < 1e-6:
        return int(num_frames)
    return int(np.floor((num_frames - 1) * fps / src_fps + 1e-9)) + 1


def grid_sources(
    grid: np.ndarray, src_fps: float, fps: float, num_frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The source frames grid frames are interpolated from.

    Returns ``(lo, hi, w)`` of ``grid``'s shape: grid frame g is
    ``source[lo] * (1 - w) + source[hi] * w`` (w float32)."""
    grid = np.asarray(grid, dtype=np.int64)
    if abs(src_fps - fps) < 1e-6:
        return grid, grid, np.zeros(grid.shape, np.float32)
    pos = grid * (src_fps / fps)  # source frame positions
    lo = np.clip(np.floor(pos).astype(np.int64), 0, num_frames - 1)
    hi = np.minimum(lo + 1, num_frames - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def source_frames(grid: np.ndarray, src_fps: float, fps: float, num_frames: int) -> np.ndarray:
    """Sorted unique source frames that ``grid`` frames need (what to pose)."""
    lo, hi, _ = grid_sources(grid, src_fps, fps, num_frames)
    return np.union1d(lo.reshape(-1), hi.reshape(-1))


def frames_at(vertices: np.ndarray, grid: np.ndarray, src_fps: float, fps: float) -> np.ndarray:
    """Grid frames ``grid (K,)`` of ``vertices (T_src, N, 3)`` at ``src_fps``: (K, N, 3) float32."""
    lo, hi, w = grid_sources(grid, src_fps, fps, len(vertices))
    if abs(src_fps - fps) < 1e-6:
        return np.asarray(vertices[lo], dtype=np.float32)
    w = w[:, None, None]  # (K, 1, 1)
    return (vertices[lo] * (1 - w) + vertices[hi] * w).astype(np.float32)


def resample(vertices: np.ndarray, src_fps: float, fps: float) -> np.ndarray:
    """(T, N, 3) at ``src_fps`` -> every grid frame (T', N, 3) at ``fps`` (the same
    array when the rates agree)."""
    if abs(src_fps - fps) < 1e-6:
        return vertices
    n = grid_length(len(vertices), src_fps, fps)
    return frames_at(vertices, np.arange(n), src_fps, fps)


def frame_bounds(offsets: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(T, 2, 3) float32 per-frame min/max of ``offsets`` (T, N, 3) + ``centres`` (T, 3):
    what the cache keeps beside the frames, so a clip is normalised without a
    reduction over its points (step 4)."""
    world = offsets.astype(np.float32) + centres[:, None, :]  # (T, N, 3)
    return np.stack([world.min(axis=1), world.max(axis=1)], axis=1)


def to_cache_form(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, N, 3) float32 -> float16 offsets (K, N, 3) from the frame's mean point and
    float32 centres (K, 3): how the cache keeps frames, and so how clips are made."""
    centres = frames.mean(axis=1).astype(np.float32)  # (K, 3)
    return (frames - centres[:, None, :]).astype(np.float16), centres


# --------------------------------------------------------------------------- 2. windows
@dataclass(frozen=True)
class Windows:
    """Spans of grid frames a sequence is cut into.

    Attributes:
        start: (W,) int64 first grid frame of each window.
        length: (W,) int64 grid frames in each window.
        fps: the grid's frame rate.
        duration: seconds the sequence covers (the last window ends there).
    """

    start: np.ndarray
    length: np.ndarray
    fps: float
    duration: float
    span: int = 0  # > 0: fixed windows of this many grid frames (see bin_frames)

    def __len__(self) -> int:
        return len(self.start)

    @property
    def spans(self) -> list[tuple[float, float]]:
        """[(start_s, end_s)] per window; the last ends at ``duration``."""
        ends = np.minimum((self.start + self.length) / self.fps, self.duration)
        ends[-1] = self.duration
        return [(float(s / self.fps), float(e)) for s, e in zip(self.start, ends)]

    def grid_frames(self, num_frames: int) -> np.ndarray:
        """(W, num_frames) grid frames of each window's clip: bin centres."""
        return bin_frames(self.length, num_frames, window=self.span) + self.start[:, None]

    def source_frames(self, num_frames: int, src_fps: float, src_frames: int) -> np.ndarray:
        """Sorted source frames (of a sequence of ``src_frames`` at ``src_fps``) the
        clips of ``num_frames`` frames of these windows use: what to pose."""
        return source_frames(self.grid_frames(num_frames), src_fps, self.fps, src_frames)


def window_starts(total: int, length: int, stride: int) -> np.ndarray:
    """Starts of windows of ``length`` frames every ``stride`` frames covering ``total``
    frames; the last one aligned to the end; one window when ``total <= length``."""
    if total <= length:
        return np.zeros(1, np.int64)
    starts = list(range(0, total - length, stride))
    if starts[-1] != total - length:
        starts.append(total - length)
    return np.asarray(starts, dtype=np.int64)


def count_windows(total: int, length: int, stride: int) -> int:
    """``len(window_starts(total, length, stride))`` without building them."""
    if total <= length:
        return 1
    return -(-(total - length) // stride) + 1


def window_lengths(fps: float, window: float, stride: float) -> tuple[int, int]:
    """Grid frames of a window and of a stride of ``window`` / ``stride`` seconds (>= 1)."""
    return max(1, round(window * fps)), max(1, round(stride * fps))


def plan_windows(
    num_frames: int,
    src_fps: float,
    fps: float,
    *,
    clip_s: float | None,
    window: float,
    stride: float,
    fixed: bool = False,
) -> Windows:
    """How a sequence of ``num_frames`` at ``src_fps`` is cut (module docstring, step 2).

    ``clip_s`` None: always windows of ``window`` s every ``stride`` s; else a sequence
    whose grid is no longer than ``clip_s`` seconds is one whole-clip window.
    ``fixed``: every window's clip covers ``window`` s (a shorter file padded), as a
    checkpoint trained with fixed windows saw its clips; ``clip_s`` is not used.
    """
    n = grid_length(num_frames, src_fps, fps)
    duration = num_frames / src_fps
    length, step = window_lengths(fps, window, stride)
    if not fixed and clip_s is not None and n <= round(clip_s * fps):
        return Windows(np.zeros(1, np.int64), np.array([n]), fps, duration)
    starts = window_starts(n, length, step)
    lengths = np.full(len(starts), min(length, n), np.int64)
    return Windows(starts, lengths, fps, duration, span=length if fixed else 0)


# --------------------------------------------------------------------------- 3. frames
def bin_frames(
    length: np.ndarray,
    num_frames: int,
    rng: np.random.Generator | None = None,
    window: float | np.ndarray = 0,
) -> np.ndarray:
    """(B, T) frame indices within spans of ``length`` (B,) frames.

    ``rng`` None: the centre of each of T equal bins; given: one uniform draw in each.
    ``window`` 0: the bins cover the span. ``window`` > 0 (fixed windows, module
    docstring): they cover ``window`` frames placed in the span, at a uniformly random
    start (``rng``) or centred, or, for a span shorter than that, around it with
    indices outside it held at its first / last frame. ``window`` may be one value
    per span (B,) (a playback speed drawn per clip: :func:`draw_spans`).
    """
    length = np.asarray(length, dtype=np.int64)[:, None]  # (B, 1)
    B = length.shape[0]
    window = np.broadcast_to(np.asarray(window, dtype=np.float64).reshape(-1, 1), (B, 1))
    fixed = bool(np.all(window > 0))
    cover = length.astype(np.float64) if not fixed else window
    edges = np.arange(num_frames, dtype=np.float64)[None, :]  # (1, T)
    u = 0.5 if rng is None else rng.random((B, num_frames))
    pos = (edges + u) * cover / num_frames  # (B, T) in [0, cover)
    if fixed:
        slack = length - window  # > 0: room to move; < 0: padding
        place = 0.5 if rng is None else rng.random((B, 1))
        pos += np.where(slack > 0, np.floor(place * (slack + 1)), np.round(slack / 2))
        return np.clip(np.floor(pos).astype(np.int64), 0, length - 1)
    return np.minimum(pos.astype(np.int64), length - 1)


def draw_spans(
    length: np.ndarray,
    window: int,
    rng: np.random.Generator,
    crop: float = 0.0,
    crop_min: float = 0.5,
    speed: tuple[float, float] = (1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A training draw of which part of each sample a fixed-window clip shows.

    Args:
        length: (B,) grid frames of each sample.
        window: grid frames a clip covers (fixed windows).
        rng: the draw's generator.
        crop: probability of keeping only a part of the sample: a uniformly placed span
            of U(crop_min, 1) times min(length, window) frames (at least one), so a long
            sample gives a short part padded in the window as a short file is.
        speed: a playback speed drawn log-uniformly in this range per clip: the clip
            covers window * speed frames of the sample (faster or slower motion).

    Returns:
        ``(start, length, cover)``: (B,) int64 first frame of the part within its
        sample, (B,) int64 its frames, (B,) float64 frames the clip covers (the
        ``window`` argument of :func:`bin_frames`).
    """
    length = np.asarray(length, dtype=np.int64)
    B = len(length)
    lo, hi = speed
    cover = np.full(B, float(window))
    if hi > lo:
        cover *= np.exp(rng.uniform(np.log(lo), np.log(hi), B))
    elif lo != 1.0:
        cover *= lo
    start = np.zeros(B, np.int64)
    part = length.copy()
    if crop > 0:
        cut = rng.random(B) < crop
        most = np.minimum(length, np.round(cover).astype(np.int64))
        want = np.maximum(1, np.round(rng.uniform(crop_min, 1.0, B) * most)).astype(np.int64)
        part = np.where(cut, np.minimum(want, length), length)
        start = np.where(cut, np.floor(rng.random(B) * (length - part + 1)), 0).astype(np.int64)
    return start, part, cover


# --------------------------------------------------------------------------- 4. normalisation
def normalise(offsets, centres, bounds, matrices=None):
    """Normalised model input (B, T, N, 3) float32 torch tensor (module docstring, step 4).

    Args:
        offsets: (B, T, N, 3) points minus their frame's centre (tensor, any float dtype).
        centres: (B, T, 3) frame centres (tensor or array).
        bounds: (B, T, 2, 3) per-frame min and max of the points (tensor or array).
        matrices: optional (B, 3, 3) augmentation (column vectors: v' = M v), applied
            after the normalisation.
    """
    import torch

    cen = torch.as_tensor(centres, dtype=torch.float32)
    bnd = torch.as_tensor(bounds, dtype=torch.float32)
    B, T = cen.shape[:2]
    lo, hi = bnd[:, :, 0].amin(dim=1), bnd[:, :, 1].amax(dim=1)  # (B, 3)
    origin = torch.stack([(lo[:, 0] + hi[:, 0]) / 2, (lo[:, 1] + hi[:, 1]) / 2, lo[:, 2]], -1)
    height = (bnd[:, :, 1, 2] - bnd[:, :, 0, 2]).amax(dim=1).clamp_min(EPS_HEIGHT)  # (B,)
    m = torch.eye(3).expand(B, 3, 3) / height[:, None, None]  # (B, 3, 3), rows: x_row @ m
    if matrices is not None:
        m = m @ torch.as_tensor(matrices, dtype=torch.float32).transpose(1, 2)
    shift = (cen - origin[:, None, :]) @ m  # (B, T, 3)
    off = offsets.float() if hasattr(offsets, "float") else torch.from_numpy(offsets).float()
    N = off.shape[-2]
    # x @ m computed as (m^T @ x^T)^T: on a CPU about twice as fast as bmm(x, m) for an
    # inner size of 3 (torch 2.13, one thread); the add writes the result back contiguous
    prod = torch.bmm(m.transpose(1, 2), off.reshape(B, T * N, 3).transpose(1, 2))  # (B, 3, T*N)
    out = torch.empty(B, T, N, 3)
    return torch.add(prod.transpose(1, 2).view(B, T, N, 3), shift[:, :, None, :], out=out)


def clip_inputs(vertices: np.ndarray, src_fps: float, fps: float, grid: np.ndarray) -> np.ndarray:
    """Model inputs (W, T, N, 3) float32 of a sequence's ``vertices (T_src, N, 3)`` at
    the grid frames ``grid (W, T)``: made as a training clip of a cache is."""
    W, T = grid.shape
    frames = frames_at(vertices, grid.reshape(-1), src_fps, fps)  # (W*T, N, 3)
    offsets, centres = to_cache_form(frames)
    bounds = frame_bounds(offsets, centres)  # (W*T, 2, 3)
    N = offsets.shape[1]
    out = normalise(
        offsets.reshape(W, T, N, 3), centres.reshape(W, T, 3), bounds.reshape(W, T, 2, 3)
    )
    return out.numpy()


# --------------------------------------------------------------------------- 5. per-time windows
def window_cuts(spans: list[tuple[float, float]], duration: float) -> np.ndarray:
    """(W + 1,) times splitting [0, duration] among windows: each instant goes to the
    window whose centre is nearest (cuts halfway between consecutive centres)."""
    centres = window_centres(spans)
    return np.concatenate([[0.0], (centres[:-1] + centres[1:]) / 2, [float(duration)]])


def window_centres(spans: list[tuple[float, float]]) -> np.ndarray:
    """(W,) float64 centre time of each window."""
    return np.array([(s + e) / 2 for s, e in spans], dtype=np.float64)


def nearest_window(times: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    """(K,) int64 index of the window whose centre is nearest to each time (the earlier
    one on a tie)."""
    inner = window_cuts(spans, 0.0)[1:-1]
    return np.searchsorted(inner, np.asarray(times, dtype=np.float64), side="left").astype(np.int64)


def scale_mix(
    primary: list[tuple[float, float]], others: list[list[tuple[float, float]]]
) -> np.ndarray:
    """(W, W + sum(W_k)) weights that mix the outputs of one file's windows at several
    window lengths into its ``primary`` windows' (step 6).

    Rows are the primary windows; columns the primary windows, then each of the
    ``others`` lengths' windows, in order. Row i takes the mean over lengths of: its
    own window; the windows of each other length whose centre is nearest to window i's
    among the primary windows (when none is, the one window of that length whose
    centre is nearest to window i's). Each row sums to 1."""
    w, centres = len(primary), window_centres(primary)
    mix = np.zeros((w, w + sum(len(o) for o in others)), np.float64)
    share = 1.0 / (1 + len(others))
    mix[np.arange(w), np.arange(w)] = share
    at = w
    for spans in others:
        owner = nearest_window(window_centres(spans), primary)  # (W_k,) primary window of each
        for i in range(w):
            mine = np.flatnonzero(owner == i)
            if not mine.size:
                mine = nearest_window(centres[i : i + 1], spans)
            mix[i, at + mine] = share / mine.size
        at += len(spans)
    return mix
