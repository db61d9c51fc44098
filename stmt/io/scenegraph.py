"""What the FBX and glTF readers share: takes, and a scene graph turned into a skeleton.

Both formats hold a tree of nodes, each with a local transform (translation,
rotation, scale) that animations change over time, and any number of
animations (FBX takes / stacks, glTF ``animations``). A reader samples one
animation at the file's frame rate into per-frame local transforms of the
skeleton's nodes; :func:`skeleton_motion` composes them down the tree into
world transforms and re-expresses those in the convention of
:class:`~stmt.motion.SkeletonMotion` (rest frames aligned with the world,
``G_j = G_parent @ R_j``, ``p_j = p_parent + G_parent @ t_j``), so the joint
positions are exactly the file's and :mod:`stmt.retarget` retargets them like
any BVH. Scale is kept in the positions (a parent scaled by 0.01 shrinks its
children's offsets) and dropped from the rotations.

A take of a file with several is addressed as ``FILE#TAKE``
(``walk.fbx#Take 001``): :func:`split_take` takes such a path apart, and the
readers name it as the sequence's source, so that ``stmt classify`` reports
each take as its own entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stmt import limits
from stmt.errors import InputError
from stmt.motion import SkeletonMotion

TAKE_SEP = "#"


@dataclass(frozen=True)
class Take:
    """One animation of a file: its name and the span its keys cover (seconds)."""

    name: str
    start: float
    end: float
    fps: float

    @property
    def frames(self) -> int:
        return frame_count(self.start, self.end, self.fps)

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


def frame_count(start: float, end: float, fps: float) -> int:
    """Frames sampled at ``fps`` from ``start`` to ``end`` inclusive (at least 1)."""
    return int(np.floor((end - start) * fps + 1e-6)) + 1


def split_take(path: str | Path) -> tuple[Path, str | None]:
    """``(file, take)`` of ``FILE#TAKE``; ``(path, None)`` for a path that exists as it is
    or names no take. Only the last ``#`` separates (take names may hold one)."""
    text = str(path)
    if TAKE_SEP not in text or Path(text).exists():
        return Path(text), None
    head, _, take = text.rpartition(TAKE_SEP)
    if not head or not Path(head).is_file():
        return Path(text), None
    return Path(head), take


def take_path(path: str | Path, take: str) -> Path:
    """The ``FILE#TAKE`` path of one take."""
    return Path(f"{path}{TAKE_SEP}{take}")


def pick_take(takes: list[Take], take: str | int | None, path: Path) -> int:
    """Index of the take named ``take`` (or at that index, counting from 0, when no
    take has that name); the first take when ``take`` is None."""
    if not takes:
        raise InputError(path, "holds no animation (no take animates its skeleton)")
    if take is None:
        return 0
    names = [t.name for t in takes]
    if str(take) in names:
        return names.index(str(take))
    text = str(take).strip()
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(takes):
        return int(text)
    listed = ", ".join(f"{i}: {n!r}" for i, n in enumerate(names[:20]))
    raise InputError(path, f"no take {take!r}; its takes are {listed}{' ...' * (len(names) > 20)}")


# ------------------------------------------------------------------------------ rotations


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (x, y, z, w), normalised here -> (..., 3, 3) rotations."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    q = q / np.where(n > 1e-12, n, 1.0)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    out = np.empty(q.shape[:-1] + (3, 3))
    out[..., 0, 0] = 1 - 2 * (y * y + z * z)
    out[..., 0, 1] = 2 * (x * y - z * w)
    out[..., 0, 2] = 2 * (x * z + y * w)
    out[..., 1, 0] = 2 * (x * y + z * w)
    out[..., 1, 1] = 1 - 2 * (x * x + z * z)
    out[..., 1, 2] = 2 * (y * z - x * w)
    out[..., 2, 0] = 2 * (x * z - y * w)
    out[..., 2, 1] = 2 * (y * z + x * w)
    out[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return out


def trs_matrices(t: np.ndarray, q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(..., 3) translation, (..., 4) quaternion, (..., 3) scale -> (..., 4, 4) ``T R S``."""
    m = np.zeros(np.shape(t)[:-1] + (4, 4))
    m[..., :3, :3] = quat_to_matrix(q) * np.asarray(s)[..., None, :]
    m[..., :3, 3] = t
    m[..., 3, 3] = 1.0
    return m


def _rotation_part(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) nearest rotation to each (scaled) matrix: the polar factor, with a
    mirrored one (negative scale) turned back into a proper rotation."""
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    flip = np.linalg.det(r) < 0
    if flip.any():
        u = u.copy()
        u[flip, :, -1] *= -1
        r = u @ vt
    return r


# ------------------------------------------------------------------------------ skeleton


def check_tree(parents: list[int], names: list[str], path: Path) -> list[int]:
    """An order of the nodes with every parent before its children; InputError for a
    parent index out of range or a cycle in the node tree."""
    n = len(parents)
    children: list[list[int]] = [[] for _ in range(n)]
    roots = []
    for i, p in enumerate(parents):
        if p < 0:
            roots.append(i)
        elif p >= n:
            raise InputError(path, f"node {names[i]!r} has parent {p}, but there are {n} nodes")
        else:
            children[p].append(i)
    order, stack = [], list(reversed(roots))
    while stack:
        i = stack.pop()
        order.append(i)
        stack.extend(reversed(children[i]))
    if len(order) != n:
        bad = next(names[i] for i in range(n) if i not in set(order))
        raise InputError(path, f"the node tree has a cycle (through node {bad!r})")
    return order


def skeleton_nodes(parents: list[int], wanted: set[int]) -> list[int]:
    """``wanted`` nodes and all their ancestors, parents first (``parents`` must be a
    checked tree, see :func:`check_tree`)."""
    keep = set()
    for j in wanted:
        while j >= 0 and j not in keep:
            keep.add(j)
            j = parents[j]
    depth = {}
    for j in keep:
        d, k = 0, j
        while parents[k] >= 0:
            d, k = d + 1, parents[k]
        depth[j] = d
    return sorted(keep, key=lambda j: (depth[j], j))


def skeleton_motion(
    names: list[str],
    parents: list[int],
    local: np.ndarray,
    rest: np.ndarray,
    fps: float,
    *,
    above: np.ndarray | None = None,
    unit: float | None,
    up: str | None,
    source: Path,
    fmt: str,
) -> SkeletonMotion:
    """Per-frame local node transforms -> :class:`SkeletonMotion`.

    Args:
        names, parents: the skeleton's nodes, parents first (``parents[j] < j``; several
            roots are joined under a ``<scene>`` root).
        local: (T, J, 4, 4) each node's transform relative to its parent, per frame.
        rest: (J, 4, 4) the same in the file's rest (bind or unanimated) pose.
        above: (4, 4) the transform of whatever lies above the skeleton's roots (an
            axis conversion), identity when None.
        unit, up, source, fmt: as :class:`SkeletonMotion` has them.
    """
    names, parents = list(names), list(parents)
    if sum(p < 0 for p in parents) > 1:
        names = ["<scene>", *names]
        parents = [-1, *[p + 1 for p in parents]]
        local = np.concatenate([np.broadcast_to(np.eye(4), local[:, :1].shape), local], axis=1)
        rest = np.concatenate([np.eye(4)[None], rest], axis=0)
    limits.check_joints(source, len(names))
    top = np.eye(4) if above is None else np.asarray(above, dtype=np.float64)

    def world(mats: np.ndarray) -> np.ndarray:  # (T, J, 4, 4) -> the same in the world
        out = np.empty_like(mats)
        for j, p in enumerate(parents):
            out[:, j] = (top if p < 0 else out[:, p]) @ mats[:, j]
        return out

    def to_skeleton(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rot = _rotation_part(w[..., :3, :3])  # (T, J, 3, 3) joint frames in the world
        pos = w[..., :3, 3]  # (T, J, 3)
        r, t = np.empty_like(rot), np.empty_like(pos)
        for j, p in enumerate(parents):
            if p < 0:
                r[:, j], t[:, j] = rot[:, j], pos[:, j]
            else:
                gp = np.swapaxes(rot[:, p], -1, -2)
                r[:, j] = gp @ rot[:, j]
                t[:, j] = np.einsum("tij,tj->ti", gp, pos[:, j] - pos[:, p])
        return r, t

    rotations, translations = to_skeleton(world(np.asarray(local, dtype=np.float64)))
    _, offsets = to_skeleton(world(np.asarray(rest, dtype=np.float64)[None]))
    if not (np.isfinite(rotations).all() and np.isfinite(translations).all()):
        raise InputError(source, "the animation has NaN or Inf transforms")
    return SkeletonMotion(
        names=tuple(names),
        parents=tuple(parents),
        offsets=offsets[0],
        end_offsets=np.zeros((len(names), 3)),
        rotations=rotations,
        translations=translations,
        fps=float(fps),
        unit=unit,
        up=up,
        source=source,
        format=fmt,
    )
