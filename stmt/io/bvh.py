"""BVH motion files: parsed into a :class:`~stmt.motion.SkeletonMotion`, never posed here.

A BVH file has a ``HIERARCHY`` (joints with an ``OFFSET`` from their parent and
``CHANNELS``) and a ``MOTION`` block (``Frames:``, ``Frame Time:``, then one line of
channel values per frame). Rotation channels are Euler angles in degrees applied in
the listed order (``Zrotation Xrotation Yrotation`` gives ``R = Rz @ Rx @ Ry``); the
rest pose has every joint frame aligned with the world. Position channels replace the
joint's offset on their axes (see :func:`bvh_motion`).

Any rig :mod:`stmt.retarget` knows loads as it is (CMU, DAZ and 3ds-Max CMU
conversions, iClone / Character Creator, Bandai-Namco, Mixamo), or any other with
``--joint-map``; that module also detects the units and the up axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stmt import limits
from stmt.errors import InputError
from stmt.io.text import (
    MAX_LINE,  # noqa: F401 - re-exported
    is_number,
    not_finite,
    numbers,
    open_text,
    read_lines,
    whole_number,
)
from stmt.motion import SkeletonMotion


@dataclass
class BVH:
    """A parsed BVH file, in its own units and axes.

    Attributes:
        names: joint names, parents before children (file order).
        parents: (J,) parent index, -1 for the root.
        offsets: (J, 3) offset of each joint from its parent (the root's: its rest position).
        end_offsets: (J, 3) ``End Site`` offset of leaf joints, zeros elsewhere.
        channels: per joint, its channel names (e.g. ``["Zrotation", "Xrotation", "Yrotation"]``).
        frame_time: seconds per frame.
        motion: (T, C) channel values, C = the sum of all joints' channel counts.
        warnings: what reading found odd and dealt with (a frame line more than
            ``Frames:`` says).
    """

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    end_offsets: np.ndarray
    channels: list[list[str]]
    frame_time: float
    motion: np.ndarray
    warnings: tuple[str, ...] = ()

    def rotations(self) -> np.ndarray:
        """(T, J, 3, 3) local rotation of each joint (identity without rotation channels)."""
        t = self.motion.shape[0]
        out = np.broadcast_to(np.eye(3), (t, len(self.names), 3, 3)).copy()
        col = 0
        for j, chans in enumerate(self.channels):
            axes = "".join(c[0].upper() for c in chans if c.lower().endswith("rotation"))
            cols = [col + i for i, c in enumerate(chans) if c.lower().endswith("rotation")]
            if axes:
                out[:, j] = euler_matrices(self.motion[:, cols], axes, degrees=True)
            col += len(chans)
        return out

    def root_positions(self) -> np.ndarray:
        """(T, 3) root position: its OFFSET plus its position channels."""
        pos = np.broadcast_to(self.offsets[0], (self.motion.shape[0], 3)).copy()
        for i, c in enumerate(self.channels[0]):
            if c.lower().endswith("position"):
                pos[:, "xyz".index(c[0].lower())] += self.motion[:, i]
        return pos


def euler_matrices(angles: np.ndarray, axes: str, degrees: bool = True) -> np.ndarray:
    """(..., n) Euler angles about ``axes`` (e.g. "ZXY") -> (..., 3, 3) rotations.

    The rotations compose in the listed order, ``R = R_axes[0] @ R_axes[1] @ ...``
    (intrinsic rotations, the BVH convention).
    """
    a = np.asarray(angles, dtype=np.float64)
    if degrees:
        a = np.deg2rad(a)
    out = np.broadcast_to(np.eye(3), a.shape[:-1] + (3, 3)).copy()
    for k, axis in enumerate(axes.upper()):
        c, s = np.cos(a[..., k]), np.sin(a[..., k])
        r = np.zeros(a.shape[:-1] + (3, 3))
        i = "XYZ".index(axis)
        j, m = (i + 1) % 3, (i + 2) % 3
        r[..., i, i] = 1.0
        r[..., j, j], r[..., j, m] = c, -s
        r[..., m, j], r[..., m, m] = s, c
        out = out @ r
    return out


# ---------------------------------------------------------------------------------- parsing


class _Tokens:
    """Whitespace-separated tokens with their line numbers (braces split off)."""

    def __init__(self, lines: list[tuple[int, str]], path: Path):
        self.path = path
        self.items: list[tuple[str, int]] = []
        for n, line in lines:
            for tok in line.replace("{", " { ").replace("}", " } ").split():
                self.items.append((tok, n))
        self.pos = 0

    def line(self) -> int:
        if self.pos < len(self.items):
            return self.items[self.pos][1]
        return self.items[-1][1] if self.items else 1

    def error(self, message: str) -> InputError:
        return InputError(self.path, f"line {self.line()}: {message}")

    def next(self, what: str) -> str:
        if self.pos >= len(self.items):
            raise self.error(f"unexpected end of file, expected {what}")
        tok = self.items[self.pos][0]
        self.pos += 1
        return tok

    def expect(self, word: str) -> None:
        tok = self.next(repr(word))
        if tok.upper() != word.upper():
            self.pos -= 1
            raise self.error(f"expected {word!r}, found {tok!r}")

    def number(self, what: str) -> float:
        tok = self.next(what)
        if not is_number(tok):  # the exporters' grammar (stmt.io.text), not float()'s
            self.pos -= 1
            if not_finite(tok):
                raise self.error(f"{what} is {tok}")
            raise self.error(f"expected a number for {what}, found {tok!r}")
        return float(tok)

    def peek(self) -> str | None:
        return self.items[self.pos][0] if self.pos < len(self.items) else None

    def rest_of_line(self, what: str) -> str:
        """The tokens up to a brace or the end of the line, joined by single spaces:
        a joint name may have spaces in it (3ds Max writes ``Bip01 L Thigh``)."""
        line = self.line()
        words = [self.next(what)]
        while self.pos < len(self.items) and self.items[self.pos][1] == line:
            tok = self.items[self.pos][0]
            if tok in ("{", "}"):
                break
            words.append(tok)
            self.pos += 1
        return " ".join(words)


_MAX_HEADER_LINES = 100 * limits.MAX_JOINTS  # a joint takes a handful of lines


def parse_bvh(path: str | Path) -> BVH:
    """Read a BVH file as it is (no unit or axis change). Raises InputError with a line.

    The file is read line by line: the frame count and joint count are checked
    against :mod:`stmt.limits` before the motion array is allocated, and the
    hierarchy is parsed with an explicit stack (no recursion on nesting depth)."""
    path = Path(path)
    limits.check_text_size(path)
    try:
        with open_text(path) as f:  # UTF-8, or what its byte-order mark says
            return _parse_bvh(f, path)
    except OSError as e:
        raise InputError(path, f"cannot read the file ({e.strerror})") from None
    except UnicodeError as e:
        raise InputError(path, f"cannot be decoded as text ({e})") from None


def _parse_bvh(f, path: Path) -> BVH:
    lines = read_lines(f, path)
    header: list[tuple[int, str]] = []
    motion_at = None
    for n, line in lines:
        if line.strip().upper() == "MOTION":
            motion_at = n
            break
        header.append((n, line))
        if len(header) > _MAX_HEADER_LINES:
            raise InputError(
                path, f"no MOTION line in the first {_MAX_HEADER_LINES} lines (not a BVH file?)"
            )
    if motion_at is None:
        raise InputError(path, "not a BVH file: no MOTION line after the HIERARCHY")
    tokens = _Tokens(header, path)
    if tokens.peek() is None or tokens.peek().upper() != "HIERARCHY":
        raise InputError(path, "line 1: expected 'HIERARCHY' (not a BVH file)")
    tokens.next("HIERARCHY")
    tokens.expect("ROOT")
    names, parents, offsets, ends, channels = _hierarchy(tokens, path)
    if tokens.peek() is not None:
        raise tokens.error(f"unexpected {tokens.peek()!r} after the root joint's closing brace")

    frames, frame_time = _motion_header(lines, motion_at, path)
    width = sum(len(c) for c in channels)
    limits.check_fps(path, 1.0 / frame_time, f"the frame rate (Frame Time {frame_time:g} s)")
    fps = frame_rate(frame_time)
    limits.check_frames(path, frames, fps)
    if frames == 0:
        raise InputError(path, "the motion has zero frames")
    size = path.stat().st_size  # each value takes a character and a separator at least
    if frames * max(width, 1) * 2 > size:
        raise InputError(
            path, f"'Frames: {frames}' of {width} values each cannot fit in its {size} bytes"
        )
    # one line more than 'Frames:' says is read: some exporters count the frames from the
    # first to the last, one short (Rokoko's, whose files other readers refuse for it)
    motion = np.empty((frames + 1, width), dtype=np.float64)
    count = 0
    for n, line in lines:
        parts = line.split()
        if not parts:
            continue
        if count == frames + 1:
            raise InputError(path, f"line {n}: more frame lines than 'Frames: {frames}'")
        if len(parts) != width:
            raise InputError(path, f"line {n}: expected {width} channel values, found {len(parts)}")
        row = numbers(parts, line)
        if isinstance(row, str) and not not_finite(row):
            raise InputError(path, f"line {n}: non-numeric value {row!r}")
        if isinstance(row, str) or not np.isfinite(row).all():
            raise InputError(path, f"line {n}: NaN or Inf among the channel values")
        motion[count] = row
        count += 1
    warnings: tuple[str, ...] = ()
    if count == frames + 1:
        limits.check_frames(path, count, fps)
        warnings = (
            (
                f"'Frames: {frames}' but {count} frame lines follow (a count one short, as "
                f"some exporters write it): all {count} read"
            ),
        )
    elif count != frames:
        raise InputError(path, f"'Frames: {frames}' but {count} frame lines follow")
    return BVH(
        names=names,
        parents=parents,
        offsets=np.asarray(offsets, dtype=np.float64),
        end_offsets=np.asarray(ends, dtype=np.float64),
        channels=channels,
        frame_time=frame_time,
        motion=motion[:count],
        warnings=warnings,
    )


def _hierarchy(tokens: _Tokens, path: Path):
    """The joints after ``ROOT``: names, parents, offsets, end offsets, channels.

    An explicit stack of open joints replaces recursion, so nesting depth is bounded
    only by :data:`stmt.limits.MAX_JOINTS`."""
    names: list[str] = []
    seen: set[str] = set()
    parents: list[int] = []
    offsets: list[list[float]] = []
    ends: list[list[float]] = []
    channels: list[list[str]] = []

    def open_joint(parent: int) -> int:
        name = tokens.rest_of_line("a joint name")
        if name in seen:
            raise tokens.error(f"joint {name!r} appears twice")
        index = len(names)
        limits.check_joints(path, index + 1)
        names.append(name)
        seen.add(name)
        parents.append(parent)
        ends.append([0.0, 0.0, 0.0])
        tokens.expect("{")
        tokens.expect("OFFSET")
        offsets.append([tokens.number(f"{name} OFFSET") for _ in range(3)])
        chans: list[str] = []
        if (tokens.peek() or "").upper() == "CHANNELS":
            tokens.next("CHANNELS")
            count = tokens.number(f"{name} channel count")
            if count != int(count) or not 0 <= count <= 6:
                raise tokens.error(f"{name}: expected 0 to 6 channels, found {count:g}")
            for _ in range(int(count)):
                c = tokens.next("a channel name")
                if c.lower() not in _CHANNELS:
                    tokens.pos -= 1
                    raise tokens.error(f"{name}: unknown channel {c!r}")
                chans.append(c)
        channels.append(chans)
        return index

    stack = [open_joint(-1)]
    while stack:
        index = stack[-1]
        tok = tokens.next("JOINT, End Site or '}'")
        kind = tok.upper()
        if kind == "}":
            stack.pop()
        elif kind == "JOINT":
            stack.append(open_joint(index))
        elif kind == "END":
            tokens.expect("Site")
            if tokens.peek() != "{":  # a named end site ("End Site LeftToe"): the name is unused
                tokens.rest_of_line("the end site's name")
            tokens.expect("{")
            tokens.expect("OFFSET")
            ends[index] = [tokens.number(f"{names[index]} End Site OFFSET") for _ in range(3)]
            tokens.expect("}")
        else:
            tokens.pos -= 1
            raise tokens.error(f"expected JOINT, End Site or '}}', found {tok!r}")
    return names, parents, offsets, ends, channels


_CHANNELS = {f"{axis}{kind}" for axis in "xyz" for kind in ("position", "rotation")}  # lower case


def _motion_header(lines, motion_at: int, path: Path) -> tuple[int, float]:
    """(frame count, frame time) from the lines after the MOTION line (consumed)."""
    values: dict[str, str] = {}
    n = motion_at
    for key in ("frames:", "frame time:"):
        line = ""
        for n, raw in lines:
            line = raw.strip()
            if line:
                break
        else:
            n += 1
        if not line.lower().startswith(key):
            raise InputError(path, f"line {n}: expected '{key[:-1].title()}: ...'")
        values[key] = line[len(key) :].strip()
    frames = whole_number(values["frames:"])
    if frames is None:
        if values["frames:"].startswith("-") and whole_number(values["frames:"][1:]) is not None:
            raise InputError(path, f"negative frame count {values['frames:']}")
        raise InputError(path, f"line {motion_at + 1}: bad frame count {values['frames:']!r}")
    if not is_number(values["frame time:"]):
        raise InputError(path, f"bad Frame Time {values['frame time:']!r}")
    frame_time = float(values["frame time:"])
    if not (np.isfinite(frame_time) and frame_time > 0):
        raise InputError(path, f"expected a positive Frame Time, found {values['frame time:']}")
    return frames, frame_time


# ---------------------------------------------------------------------------------- reading


def frame_rate(frame_time: float) -> float:
    """1 / frame_time, snapped to the nearest integer when within 0.05 % of it (files
    store e.g. 0.0083333 for 120 frames/s)."""
    fps = 1.0 / frame_time
    return float(round(fps)) if abs(fps - round(fps)) <= 5e-4 * fps else fps


def bvh_motion(path: str | Path) -> SkeletonMotion:
    """Parse a BVH file into a :class:`~stmt.motion.SkeletonMotion` (file units and axes).

    A joint with position channels takes them as its local translation on the axes they
    name (as Blender and MotionBuilder read them: Bandai-Namco files animate every
    joint's position, the CMU conversions only the root's); other joints keep their
    ``OFFSET``. Units and the up axis are left to :mod:`stmt.retarget` to detect.
    """
    path = Path(path)
    bvh = parse_bvh(path)
    t = bvh.motion.shape[0]
    translations = np.broadcast_to(bvh.offsets, (t,) + bvh.offsets.shape).copy()
    col = 0
    for j, chans in enumerate(bvh.channels):
        for i, c in enumerate(chans):
            if c.lower().endswith("position"):
                translations[:, j, "xyz".index(c[0].lower())] = bvh.motion[:, col + i]
        col += len(chans)
    return SkeletonMotion(
        names=tuple(bvh.names),
        parents=tuple(bvh.parents),
        offsets=bvh.offsets,
        end_offsets=bvh.end_offsets,
        rotations=bvh.rotations(),
        translations=translations,
        fps=frame_rate(bvh.frame_time),
        source=path,
        format="bvh",
        warnings=bvh.warnings,
    )
