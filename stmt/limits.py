"""The limits every input is held to, in one place.

A number in a file or on the command line never decides alone how much memory
is used: readers and commands check it against these limits *before* they
allocate, and refuse it with an :class:`~stmt.errors.InputError` (one line
naming the file or option). The frame cap can be raised for long takes with
``--max-frames`` (``classify``, ``inspect``, ``prepare``) or the
``STMT_MAX_FRAMES`` environment variable; the others are fixed.

- joints in a skeleton (BVH, ASF): at most :data:`MAX_JOINTS`;
- frames in one file, and frames a window, a stride or an fps implies: at most
  :func:`max_frames` (default :data:`DEFAULT_MAX_FRAMES`, 2.3 h at 120 fps);
- frame rate of a file or ``--fps``: between :data:`MIN_FPS` and :data:`MAX_FPS`;
- duration of one file: at most :func:`max_duration_s` (the length that resampled
  at 30 frames/s would reach the frame cap: 9.3 h by default);
- one text file (BVH, ASF, AMC): at most :data:`MAX_TEXT_BYTES`; one array of an
  ``.npz``, once unpacked: at most :data:`MAX_ARRAY_BYTES` (read from the array's
  header before it is decompressed);
- one FBX / glTF file: at most :data:`MAX_MODEL_BYTES`, :data:`MAX_NODES` nodes and
  :data:`MAX_KEYS` animation keys (counted before the keys are read or sampled);
- the small files read whole (:mod:`stmt.fileio`): a joint map, a config, a marker
  at most :data:`MAX_CONFIG_BYTES`; BABEL annotations :data:`MAX_ANNOTATION_BYTES`;
  a checkpoint :data:`MAX_CHECKPOINT_BYTES`; YAML whose aliases expand past
  :data:`MAX_YAML_NODES` values is refused;
- integer options (:func:`whole_number`): in their range before anything is allocated.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from stmt.errors import InputError

MAX_JOINTS = 1000
DEFAULT_MAX_FRAMES = 1_000_000
MAX_MAX_FRAMES = 100_000_000  # the most --max-frames may raise it to (9.6 days at 120 fps)
MIN_FPS = 1.0
MAX_FPS = 1000.0
MAX_ARRAY_BYTES = 2 * 1024**3  # one array of an .npz, once unpacked
MAX_TEXT_BYTES = 2 * 1024**3  # a 2 GB BVH is ~1M frames of a 300-channel rig
MAX_MODEL_BYTES = 2 * 1024**3  # one FBX / glTF / GLB file (and each buffer it names)
MAX_NODES = 100_000  # nodes in one FBX / glTF scene (meshes, cameras, bones, ...)
MAX_KEYS = 50_000_000  # animation keys in one FBX / glTF file, all takes together
RESAMPLE_FPS = 30.0  # the rate the duration cap is measured in
MAX_CONFIG_BYTES = 16 * 1024**2  # a joint map, a YAML config, a marker file
MAX_ANNOTATION_BYTES = 1024**3  # BABEL's train.json is ~40 MB
MAX_CHECKPOINT_BYTES = 8 * 1024**3  # stmt_base with its optimiser state is ~0.4 GB
MAX_YAML_NODES = 1_000_000  # values a YAML document may stand for once aliases expand
# the longest window or clip a checkpoint may record: the default duration cap, whatever
# --max-frames says (a lowered frame cap is about the files, not the checkpoint)
MAX_WINDOW_S = DEFAULT_MAX_FRAMES / RESAMPLE_FPS

_max_frames: int | None = None


def max_frames() -> int:
    """The frame cap: :func:`set_max_frames`, else ``$STMT_MAX_FRAMES``, else the default."""
    if _max_frames is not None:
        return _max_frames
    env = os.environ.get("STMT_MAX_FRAMES")
    if env:
        try:
            value = int(env)
        except ValueError:
            raise InputError(None, f"STMT_MAX_FRAMES must be a whole number, got {env!r}") from None
        if not 1 <= value <= MAX_MAX_FRAMES:
            raise InputError(None, f"STMT_MAX_FRAMES must be 1 to {MAX_MAX_FRAMES:,}, got {value}")
        return value
    return DEFAULT_MAX_FRAMES


def set_max_frames(value: int | None) -> None:
    """Raise (or lower) the frame cap for this process; None restores the default."""
    global _max_frames
    if value is not None and (not isinstance(value, int) or value < 1):
        raise InputError(None, f"--max-frames must be a whole number >= 1, got {value!r}")
    if value is not None and value > MAX_MAX_FRAMES:
        raise InputError(None, f"--max-frames must be at most {MAX_MAX_FRAMES:,}, got {value}")
    _max_frames = value


def max_duration_s() -> float:
    return max_frames() / RESAMPLE_FPS


def check_joints(path: str | Path | None, count: int) -> None:
    if count > MAX_JOINTS:
        raise InputError(path, f"more than {MAX_JOINTS} joints ({count}); not a body skeleton")


def check_fps(path: str | Path | None, fps, what: str = "the frame rate") -> float:
    """``fps`` as a float, if a real number (an int or float, or a numpy array of one:
    not a boolean, a string or a complex number), finite and within [MIN_FPS, MAX_FPS]."""
    kind = getattr(getattr(fps, "dtype", None), "kind", None)
    if kind is not None:
        if getattr(fps, "size", 1) != 1:
            raise InputError(path, f"{what} must be one number, got shape {fps.shape}")
        if kind not in "iuf":
            raise InputError(path, f"{what} must be a real number, got {fps.dtype} {fps!r}")
        fps = fps.item() if hasattr(fps, "item") else fps
    if isinstance(fps, bool) or not isinstance(fps, (int, float)):
        raise InputError(path, f"{what} must be a real number, got {type(fps).__name__} {fps!r}")
    value = float(fps)
    if not (math.isfinite(value) and MIN_FPS <= value <= MAX_FPS):
        raise InputError(
            path, f"{what} is {fps!r}; expected {MIN_FPS:g} to {MAX_FPS:g} frames per second"
        )
    return value


def check_frames(
    path: str | Path | None, frames: float, fps: float | None = None, what: str = ""
) -> None:
    """Refuse a frame count (or the frames something implies) over the cap, and, given
    ``fps``, a duration over :func:`max_duration_s`."""
    cap = max_frames()
    label = what or "the file"
    if not math.isfinite(frames) or frames > cap:
        raise InputError(
            path,
            f"{label} has {frames:.0f} frames, more than the limit of {cap}; "
            "raise it with --max-frames N (or STMT_MAX_FRAMES) if this is a real take",
        )
    if fps is not None and frames / fps > max_duration_s():
        raise InputError(
            path,
            f"{label} lasts {frames / fps:.0f} s, more than the limit of {max_duration_s():.0f} s; "
            "raise it with --max-frames N (or STMT_MAX_FRAMES) if this is a real take",
        )


def check_text_size(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError:
        return  # the reader's own open() reports it
    if size > MAX_TEXT_BYTES:
        raise InputError(
            path,
            f"is {size / 1024**3:.1f} GB, more than the {MAX_TEXT_BYTES / 1024**3:.0f} GB "
            "a MoCap text file may be",
        )


def check_model_size(path: Path) -> int:
    """The size of an FBX / glTF file in bytes, refused past :data:`MAX_MODEL_BYTES`."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise InputError(path, f"cannot read the file ({e.strerror})") from None
    if size > MAX_MODEL_BYTES:
        raise InputError(
            path,
            f"is {size / 1024**3:.1f} GB, more than the {MAX_MODEL_BYTES / 1024**3:.0f} GB "
            "a scene file may be",
        )
    return size


def whole_number(name: str, value, low: int, high: int) -> int:
    """A command-line integer within [low, high], else an InputError naming ``--name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(None, f"--{name} must be a whole number {low:,} to {high:,}, got {value}")
    return value


def positive_number(
    name: str, value, low: float = 0.0, high: float = math.inf, low_inclusive: bool = False
) -> float:
    """A command-line number, finite and in range, else an InputError naming ``--name``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(None, f"--{name} must be a number, got {value!r}") from None
    ok = math.isfinite(x) and (x >= low if low_inclusive else x > low) and x <= high
    if not ok:
        if low == 0 and not low_inclusive:
            bound = "positive"
        else:
            bound = f"{'at least' if low_inclusive else 'more than'} {low:g}"
        bound += f", finite and at most {high:g}" if math.isfinite(high) else " and finite"
        raise InputError(None, f"--{name} must be {bound}, got {value}")
    return x


def check_window_stride(args) -> None:
    """``args.window`` / ``args.stride`` (seconds, None = the default): finite, positive,
    at most the longest duration, and no stride longer than the window (gaps)."""
    for name in ("window", "stride"):
        value = getattr(args, name)
        if value is not None:
            setattr(args, name, positive_number(name, value, high=max_duration_s()))
    if args.window is not None and args.stride is not None and args.stride > args.window:
        raise InputError(
            None, f"--stride {args.stride} must not exceed --window {args.window} (gaps)"
        )
