"""FBX (binary and ASCII, 6.x-7.x): skeletal animation read with the ``ufbx`` C library,
parsed into a :class:`~stmt.motion.SkeletonMotion`.

``ufbx`` resolves what FBX makes hard (pre/post rotations, pivots, rotation orders,
inherit modes, the file's axes, curve interpolation); the ``ufbx`` binding is an
optional extra (``pip install 'stmt[formats]'``). Of the three bindings on PyPI,
``ufbx`` is by the library's author and ships manylinux wheels; ``pyufbx`` and
``pufbx`` are sdists that need Cython and a C compiler at install time (``pufbx``
calls itself alpha). The one flaw of ``ufbx`` 0.0.5 (it crashes when a scene is
freed while an element fetched from it is still held) is kept out of this process:
:mod:`stmt.io.ufbx_worker` loads the file in a child process and hands back plain
arrays, so a crash or a hang on a malformed file is one line here, never a dead
interpreter.

What is read: the skeleton (bone nodes and skin-cluster bones, or the nodes a take
animates when a file has no bones, with all their ancestors up to the scene root,
which holds the axis conversion), and each take (animation stack) sampled at the
file's frame rate (its ``TimeMode`` / ``CustomFrameRate``) over the span its keys
cover, which is not always the take's stated span (a Unity export states 0-0.77 s
for keys at 2.9-19.2 s). Units stay the file's (``UnitScaleFactor``, stated to
:mod:`stmt.retarget`); axes are converted by ufbx to right-handed Y up.
"""

from __future__ import annotations

import importlib.util
import io
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stmt import limits
from stmt.errors import InputError
from stmt.io.scenegraph import Take, pick_take, skeleton_motion, skeleton_nodes, trs_matrices
from stmt.motion import SkeletonMotion

FBX_BINARY_MAGIC = b"Kaydara FBX Binary"
EXTRA = "pip install 'stmt[formats]'"
_WORKER = Path(__file__).with_name("ufbx_worker.py")
_TIMEOUT_S = 600.0  # a real take evaluates in seconds; this only stops a hang


@dataclass
class _Scan:
    names: list[str]
    parents: list[int]
    nodes: list[int]  # the skeleton's nodes, parents first
    takes: list[Take]
    stacks: int
    fps: float
    unit: float
    up: str
    skins: int
    keys: int


def _run(path: Path, mode: str, take: int = 0) -> dict:
    """Run the worker on ``path``; its arrays, or the InputError it ends in."""
    if importlib.util.find_spec("ufbx") is None:
        raise InputError(path, f"reading FBX needs the ufbx package: {EXTRA}")
    limits.check_model_size(path)
    cmd = [sys.executable, str(_WORKER), str(path), mode, str(take), str(limits.max_frames())]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise InputError(path, f"ufbx did not finish reading it in {_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        if done.returncode < 0:
            try:
                name = signal.Signals(-done.returncode).name
            except ValueError:
                name = f"signal {-done.returncode}"
            raise InputError(path, f"ufbx crashed reading it ({name}); a malformed FBX file?")
        text = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(path, text[-1] if text else f"ufbx failed (exit {done.returncode})")
    try:
        with np.load(io.BytesIO(done.stdout), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - a worker that printed something else
        raise InputError(path, f"the FBX reader returned no data ({type(e).__name__})") from None


def _scan(path: Path, data: dict) -> _Scan:
    fps = float(data["fps"])
    names = [str(n) or "<scene root>" for n in data["names"]]
    parents = [int(p) for p in data["parents"]]
    spans = data["take_spans"]
    takes = [Take(str(n), float(a), float(b), fps) for n, (a, b) in zip(data["take_names"], spans)]
    return _Scan(
        names=names,
        parents=parents,
        nodes=skeleton_nodes(parents, {int(i) for i in data["nodes"]}),
        takes=takes,
        stacks=int(data["stacks"]),
        fps=fps,
        unit=float(data["unit"]),
        up=str(data["up"]),
        skins=int(data["skins"]),
        keys=int(data["keys"]),
    )


def _usable(path: Path, scan: _Scan) -> None:
    """InputError for a file with nothing to classify: no skeleton, or no take moving it."""
    if not scan.nodes or len(scan.nodes) == 1:
        raise InputError(
            path, "nothing to read: the file has no skeleton (no bones, no animated nodes)"
        )
    if not scan.takes:
        what = (
            f"its {scan.stacks} take(s) move no node of its skeleton (morph or other properties "
            "only)"
            if scan.keys
            else "it has a skeleton but no animation (no keys)"
        )
        raise InputError(path, f"nothing to read: {what} ({len(scan.nodes)} nodes)")


def fbx_takes(path: str | Path) -> list[Take]:
    """The file's takes (animation stacks) that move its skeleton."""
    path = Path(path)
    scan = _scan(path, _run(path, "takes"))
    _usable(path, scan)
    return scan.takes


def fbx_motion(
    path: str | Path, take: str | int | None = None, source: Path | None = None
) -> SkeletonMotion:
    """One take of an FBX file (the first when ``take`` is None) as a skeleton motion in
    the file's units (stated), Y up; ``source`` (default ``path``) names it."""
    path = Path(path)
    source = path if source is None else source
    scan = _scan(path, _run(path, "takes"))
    _usable(path, scan)
    k = pick_take(scan.takes, take, path)
    info = scan.takes[k]
    limits.check_fps(source, info.fps, f"the frame rate ({info.fps:g}, from the file's TimeMode)")
    limits.check_frames(source, info.frames, info.fps)
    data = _run(path, "motion", k)
    local, rest = data["local"], data["rest"]  # (T, N, 10), (N, 10): t, q (xyzw), s
    order = [int(i) for i in data["nodes"]]
    if sorted(order) != sorted(scan.nodes) or local.shape[1:] != (len(order), 10):
        raise InputError(path, "the FBX reader returned an inconsistent skeleton")
    if not (np.isfinite(local).all() and np.isfinite(rest).all()):
        raise InputError(source, f"take {info.name!r} has NaN or Inf transforms")
    col = {node: i for i, node in enumerate(order)}
    sel = [col[n] for n in scan.nodes]  # parents first
    pos = {n: i for i, n in enumerate(scan.nodes)}
    parents = [pos.get(scan.parents[n], -1) for n in scan.nodes]
    local, rest = local[:, sel], rest[sel]
    return skeleton_motion(
        [scan.names[n] for n in scan.nodes], parents,
        trs_matrices(local[..., :3], local[..., 3:7], local[..., 7:]),
        trs_matrices(rest[:, :3], rest[:, 3:7], rest[:, 7:]),
        info.fps, unit=scan.unit, up="y", source=source, fmt="fbx",
    )  # fmt: skip
