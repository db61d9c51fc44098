"""Joint-position CSV files (Kinect and other trackers): parsed into
:class:`~stmt.motion.JointPositions`, never posed here.

A header row names the columns; a joint is three columns ``<joint>X``, ``<joint>Y``,
``<joint>Z`` (also ``<joint>_x``, ``<joint>.x``, ``<joint> x``, any case). A time column
(``Timestamp``, ``Time`` or ``t``; milliseconds when its steps are longer than one
unit, else seconds) gives the frame times: frames that arrive unevenly, as a depth
camera's do, are resampled linearly to a steady rate (the mean step, as a whole number
of frames per second when within 5 % of one); of frames with the same time stamp the
last is kept. Other columns (a subject id, an action name) are
ignored. Units and the up axis are detected by :mod:`stmt.retarget` (Kinect writes
metres, Y up); its joint names (v1 and v2) are a rig it knows.

    Timestamp,HipCenterX,HipCenterY,HipCenterZ,SpineX,SpineY,SpineZ,...
    1469182474370,0.0123,-0.2541,2.8877,0.0154,0.0852,2.9310,...
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from stmt import limits
from stmt.errors import InputError
from stmt.io.text import is_number, not_finite, open_text, read_lines
from stmt.motion import JointPositions

_AXIS = re.compile(r"^(?P<joint>.+?)[ _.]?(?P<axis>[xyzXYZ])$")
_TIME = ("timestamp", "time", "t", "time_s", "time_ms")
MIN_JOINTS = 10  # fewer named joint triplets: not a skeleton file


def joint_columns(header: list[str]) -> tuple[list[str], np.ndarray, int | None]:
    """``(joint names, (J, 3) column indices of x, y, z, time column or None)`` of a header."""
    axes: dict[str, dict[str, int]] = {}
    order: list[str] = []
    time = None
    for i, raw in enumerate(header):
        name = raw.strip()
        if name.lower() in _TIME and time is None:
            time = i
            continue
        m = _AXIS.match(name)
        if not m:
            continue
        joint = m.group("joint").strip()
        if joint not in axes:
            axes[joint] = {}
            order.append(joint)
        axes[joint].setdefault(m.group("axis").lower(), i)
    names = [j for j in order if len(axes[j]) == 3]
    cols = np.array([[axes[j][a] for a in "xyz"] for j in names], dtype=np.int64).reshape(-1, 3)
    return names, cols, time


def looks_like_joint_csv(path: Path) -> bool:
    """True when the first line of ``path`` names at least :data:`MIN_JOINTS` joints."""
    try:
        with open_text(path) as f:
            first = f.readline(1 << 16)
    except OSError:
        return False
    names, _, _ = joint_columns(next(csv.reader([first]), []))
    return len(names) >= MIN_JOINTS


def read_joint_csv(path: str | Path) -> JointPositions:
    """Parse a joint-position CSV (module docstring). Raises InputError naming the file
    and the line for anything it cannot use."""
    path = Path(path)
    limits.check_text_size(path)
    try:
        with open_text(path) as f:
            rows = csv.reader(line for _, line in read_lines(f, path))
            header = next(rows, None)
            if header is None:
                raise InputError(path, "the file is empty; expected a header of joint columns")
            names, cols, time_col = joint_columns(header)
            if len(names) < MIN_JOINTS:
                raise InputError(
                    path,
                    f"line 1: found {len(names)} joints (columns <joint>X, <joint>Y, <joint>Z); "
                    f"expected a skeleton of at least {MIN_JOINTS}",
                )
            limits.check_joints(path, len(names))
            if time_col is None:
                raise InputError(
                    path, "no time column (Timestamp, Time or t): the frame rate is unknown"
                )
            needed = [time_col, *cols.reshape(-1).tolist()]
            times, values = [], []
            for n, row in enumerate(rows, start=2):
                if not row or not "".join(row).strip():
                    continue
                if len(times) >= limits.max_frames():
                    raise InputError(path, f"more than {limits.max_frames():,} frames")
                if len(row) <= max(needed):
                    raise InputError(
                        path, f"line {n}: {len(row)} fields, the header has {len(header)}"
                    )
                words = [row[i].strip() for i in needed]
                bad = next((w for w in words if not is_number(w)), None)
                if bad is not None and not_finite(bad):
                    raise InputError(path, f"line {n}: NaN or Inf among the values")
                if bad is not None:
                    raise InputError(path, f"line {n}: non-numeric value {bad!r}")
                nums = [float(w) for w in words]
                times.append(nums[0])
                values.append(nums[1:])
    except OSError as e:
        raise InputError(path, f"cannot read the file ({e.strerror})") from None
    except csv.Error as e:
        raise InputError(path, f"not a readable CSV file ({e})") from None
    if len(times) < 2:
        raise InputError(path, f"{len(times)} frame(s); a motion needs at least 2")
    t = np.asarray(times, dtype=np.float64)
    positions = np.asarray(values, dtype=np.float64).reshape(len(t), len(names), 3)
    fps, positions = _steady(path, t, positions)
    return JointPositions(tuple(names), positions, fps, source=path, format="joint-csv")


def _steady(path: Path, t: np.ndarray, positions: np.ndarray) -> tuple[float, np.ndarray]:
    """Frames at uneven times ``t`` -> (fps, frames at a steady rate), linearly resampled."""
    step = np.diff(t)
    if (step < 0).any():
        n = int(np.argmax(step < 0)) + 3  # the file line of the later frame
        raise InputError(path, f"line {n}: the time goes back")
    # the rate from every frame (a late frame stamped as the next one still counts), which
    # uneven steps do not bias as they do one step
    mean = float(t[-1] - t[0]) / (len(t) - 1)
    keep = np.append(step > 0, True)  # a frame repeating a time stamp: keep the later one
    t, positions, step = t[keep], positions[keep], np.diff(t[keep])
    if len(t) < 2:
        raise InputError(path, "every frame has the same time stamp")
    scale = 1e-3 if float(np.median(step)) > 1.0 else 1.0  # milliseconds or seconds
    rate = 1.0 / (mean * scale)
    fps = float(round(rate)) if abs(rate - round(rate)) <= 0.05 * rate else rate
    limits.check_fps(path, fps, f"the frame rate ({fps:g} frames/s from the time column)")
    t_s = (t - t[0]) * scale
    count = int(np.floor(t_s[-1] * fps + 1e-9)) + 1
    grid = np.arange(count) / fps
    limits.check_frames(path, count, fps)
    hi = np.clip(np.searchsorted(t_s, grid, side="right"), 1, len(t_s) - 1)
    lo = hi - 1
    w = ((grid - t_s[lo]) / (t_s[hi] - t_s[lo]))[:, None, None]  # (K, 1, 1)
    return fps, positions[lo] * (1 - w) + positions[hi] * w
