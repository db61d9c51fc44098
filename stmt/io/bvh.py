"""BVH motion files (e.g. the CMU mocap conversions), posed on the free anny body.

A BVH file has a ``HIERARCHY`` (joints with an ``OFFSET`` from their parent and
``CHANNELS``) and a ``MOTION`` block (``Frames:``, ``Frame Time:``, then one line of
channel values per frame). Rotation channels are Euler angles in degrees applied in
the listed order (``Zrotation Xrotation Yrotation`` gives ``R = Rz @ Rx @ Ry``); the
rest pose has every joint frame aligned with the world. Position channels count only
on the root (elsewhere they are ignored: bone lengths stay the skeleton's).

The skeleton's joint names must be the CMU ones anny's ``cmu_mb`` rig carries
(``Hips``, ``LeftUpLeg``, ``LeftLeg``, ... see :data:`stmt.body.anny.CMU_REQUIRED_JOINTS`).
Units are detected from the rest skeleton's height (metres, centimetres, millimetres,
inches, feet, or the CMU ASF unit of 1/0.45 inch used by the CMU BVH conversions); the
up axis (Y in almost every BVH) from the direction hips -> head. The result is in
metres, Z up, as every :class:`~stmt.sequence.MeshSequence`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stmt.errors import InputError
from stmt.sequence import MeshSequence

if TYPE_CHECKING:
    from stmt.io import Frames

# Candidate length units (metres per file unit), tried against a human's height.
UNITS = {
    "m": 1.0,
    "cm": 0.01,
    "mm": 0.001,
    "inch": 0.0254,
    "foot": 0.3048,
    "cmu": 0.0254 / 0.45,  # CMU ASF "length 0.45": one unit = 1/0.45 inch
}
_TYPICAL_SPAN_M = 1.6  # rest-pose vertical extent of the joints (incl. end sites), metres


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
    """

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    end_offsets: np.ndarray
    channels: list[list[str]]
    frame_time: float
    motion: np.ndarray

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

    def __init__(self, lines: list[str], path: Path):
        self.path = path
        self.items: list[tuple[str, int]] = []
        for n, line in enumerate(lines, start=1):
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
        try:
            value = float(tok)
        except ValueError:
            self.pos -= 1
            raise self.error(f"expected a number for {what}, found {tok!r}") from None
        if not np.isfinite(value):
            self.pos -= 1
            raise self.error(f"{what} is {tok}")
        return value

    def peek(self) -> str | None:
        return self.items[self.pos][0] if self.pos < len(self.items) else None


def parse_bvh(path: str | Path) -> BVH:
    """Read a BVH file as it is (no unit or axis change). Raises InputError with a line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(path, f"cannot read the file ({e.strerror})") from None
    lines = text.splitlines()
    motion_at = next((i for i, s in enumerate(lines) if s.strip().upper() == "MOTION"), None)
    if motion_at is None:
        raise InputError(path, "not a BVH file: no MOTION line after the HIERARCHY")
    tokens = _Tokens(lines[:motion_at], path)
    if tokens.peek() is None or tokens.peek().upper() != "HIERARCHY":
        raise InputError(path, "line 1: expected 'HIERARCHY' (not a BVH file)")
    tokens.next("HIERARCHY")
    tokens.expect("ROOT")

    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    ends: list[list[float]] = []
    channels: list[list[str]] = []

    def joint(parent: int) -> None:
        name = tokens.next("a joint name")
        if name in names:
            raise tokens.error(f"joint {name!r} appears twice")
        index = len(names)
        names.append(name)
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
        while True:
            tok = tokens.next("JOINT, End Site or '}'")
            kind = tok.upper()
            if kind == "}":
                return
            if kind == "JOINT":
                joint(index)
            elif kind == "END":
                tokens.expect("Site")
                tokens.expect("{")
                tokens.expect("OFFSET")
                ends[index] = [tokens.number(f"{name} End Site OFFSET") for _ in range(3)]
                tokens.expect("}")
            else:
                tokens.pos -= 1
                raise tokens.error(f"expected JOINT, End Site or '}}', found {tok!r}")

    joint(-1)
    if tokens.peek() is not None:
        raise tokens.error(f"unexpected {tokens.peek()!r} after the root joint's closing brace")

    frames, frame_time, first = _motion_header(lines, motion_at, path)
    width = sum(len(c) for c in channels)
    rows = []
    for n in range(first, len(lines)):
        parts = lines[n].split()
        if not parts:
            continue
        if len(parts) != width:
            raise InputError(
                path, f"line {n + 1}: expected {width} channel values, found {len(parts)}"
            )
        try:
            row = [float(x) for x in parts]
        except ValueError:
            bad = next(x for x in parts if not _is_float(x))
            raise InputError(path, f"line {n + 1}: non-numeric value {bad!r}") from None
        if not np.isfinite(row).all():
            raise InputError(path, f"line {n + 1}: NaN or Inf among the channel values")
        rows.append(row)
    if len(rows) != frames:
        raise InputError(path, f"'Frames: {frames}' but {len(rows)} frame lines follow")
    if frames == 0:
        raise InputError(path, "the motion has zero frames")
    return BVH(
        names=names,
        parents=parents,
        offsets=np.asarray(offsets, dtype=np.float64),
        end_offsets=np.asarray(ends, dtype=np.float64),
        channels=channels,
        frame_time=frame_time,
        motion=np.asarray(rows, dtype=np.float64).reshape(frames, width),
    )


_CHANNELS = {f"{axis}{kind}" for axis in "xyz" for kind in ("position", "rotation")}  # lower case


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _motion_header(lines: list[str], motion_at: int, path: Path) -> tuple[int, float, int]:
    """(frame count, frame time, index of the first frame line) after the MOTION line."""
    values: dict[str, str] = {}
    n = motion_at + 1
    for key in ("frames:", "frame time:"):
        while n < len(lines) and not lines[n].strip():
            n += 1
        line = lines[n].strip() if n < len(lines) else ""
        if not line.lower().startswith(key):
            raise InputError(path, f"line {n + 1}: expected '{key[:-1].title()}: ...'")
        values[key] = line[len(key) :].strip()
        n += 1
    try:
        frames = int(values["frames:"])
    except ValueError:
        raise InputError(
            path, f"line {motion_at + 2}: bad frame count {values['frames:']!r}"
        ) from None
    try:
        frame_time = float(values["frame time:"])
    except ValueError:
        raise InputError(path, f"bad Frame Time {values['frame time:']!r}") from None
    if frames < 0:
        raise InputError(path, f"negative frame count {frames}")
    if not (np.isfinite(frame_time) and frame_time > 0):
        raise InputError(path, f"expected a positive Frame Time, found {values['frame time:']}")
    return frames, frame_time, n


# ---------------------------------------------------------------------------------- reading


def detect_unit(span: float) -> tuple[str, float]:
    """The length unit making a rest skeleton of vertical extent ``span`` human-sized."""
    if not span > 0:
        return "m", 1.0
    name = min(UNITS, key=lambda u: abs(np.log(span * UNITS[u] / _TYPICAL_SPAN_M)))
    return name, UNITS[name]


def skeleton_up_axis(names, positions: np.ndarray, source: Path) -> str:
    """ "y" or "z": the axis the rest skeleton stands along (from its hips to its head)."""
    from stmt.body.anny import cmu_bone_map

    bone_map = cmu_bone_map(names)
    if "Hips" not in bone_map or "Head" not in bone_map:
        return "y"  # the missing-joints error comes later, with the full list
    up = (
        positions[list(names).index(bone_map["Head"])]
        - positions[list(names).index(bone_map["Hips"])]
    )
    axis = int(np.argmax(np.abs(up)))
    if up[axis] > 0 and axis in (1, 2):
        return "yz"[axis - 1]
    raise InputError(
        source,
        "the rest pose does not stand upright along +Y or +Z (hips -> head is "
        f"{np.round(up, 3).tolist()})",
    )


def frame_rate(frame_time: float) -> float:
    """1 / frame_time, snapped to the nearest integer when within 0.05 % of it (files
    store e.g. 0.0083333 for 120 frames/s)."""
    fps = 1.0 / frame_time
    return float(round(fps)) if abs(fps - round(fps)) <= 5e-4 * fps else fps


def read_bvh(
    path: str | Path, vertex_ids: np.ndarray | None = None, frames: Frames | None = None
) -> MeshSequence:
    """Read a BVH file with a CMU-named skeleton and pose the anny body with it.

    Args:
        path: the ``.bvh`` file.
        vertex_ids: (N,) ids into anny's full mesh to pose only those vertices.
        frames: pose only these frames (see :func:`stmt.io.read_sequence`).

    Returns:
        A :class:`MeshSequence` (format "bvh", body "anny"), metres, Z up, with the
        anny bone heads as ``joints``.
    """
    from stmt.body.anny import Skeleton, bone_labels, pose_from_cmu, rest_mesh
    from stmt.body.smpl import check_vertex_ids

    path = Path(path)
    bvh = parse_bvh(path)
    rest = Skeleton(
        tuple(bvh.names), tuple(bvh.parents), bvh.offsets, bvh.end_offsets
    ).rest_positions()
    tips = rest + bvh.end_offsets
    up = skeleton_up_axis(bvh.names, rest, path)
    axis = "yz".index(up) + 1
    span = float(np.ptp(np.concatenate([rest[:, axis], tips[:, axis]])))
    _, scale = detect_unit(span)
    skeleton = Skeleton(
        names=tuple(bvh.names),
        parents=tuple(bvh.parents),
        offsets=bvh.offsets * scale,
        end_offsets=bvh.end_offsets * scale,
        up=up,
    )
    rest_vertices, faces = rest_mesh()
    ids = check_vertex_ids(vertex_ids, len(rest_vertices), path)
    from stmt.io import fill_frames, select_frames

    rotations, root = bvh.rotations(), bvh.root_positions() * scale
    total = len(rotations)
    sel = select_frames(frames, total, frame_rate(bvh.frame_time))
    if sel is not None:
        rotations, root = rotations[sel], root[sel]
    vertices, joints = pose_from_cmu(
        skeleton,
        rotations,
        root,
        world_up=up,
        vertex_ids=ids,
        source=path,
    )
    vertices, joints = fill_frames(vertices, sel, total), fill_frames(joints, sel, total)
    return MeshSequence(
        vertices=vertices,
        faces=faces,
        fps=frame_rate(bvh.frame_time),
        body="anny",
        source=path,
        format="bvh",
        joints=joints,
        rest_vertices=rest_vertices,
        vertex_ids=ids,
        joint_names=list(bone_labels()),
    )
