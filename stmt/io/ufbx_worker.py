"""Run as a child process by :mod:`stmt.io.fbx`: load one FBX file with ``ufbx`` and
write what stmt needs as an ``.npz`` to stdout. Only numpy and ufbx are imported.

Why a child process: the ``ufbx`` 0.0.5 Python binding miscounts references to the
scene's elements (one reference short whenever an element is fetched a second time;
the scene drops a reference it never took when it is freed), which crashes the
interpreter once the scene or an element is freed while the other is still held.
Here every element is fetched through :func:`_keep`, which holds it for the life of
the process and adds back the missing reference; the collector is off, nothing is
ever freed, and the process ends with ``os._exit``. A crash or a hang on a malformed
file ends this process only; the parent turns it into one line.

Usage: ``python ufbx_worker.py FILE MODE TAKE MAX_FRAMES``; MODE is "takes" (the
takes only) or "motion" (TAKE: its index). Exit status 0 with the npz on stdout, or 3
with one line of error on stderr.
"""

import ctypes
import gc
import io
import os
import sys

import numpy as np

MAX_NODES = 100_000
MAX_KEYS = 50_000_000
MAX_JOINTS = 1000
_TRS_PROPS = ("Lcl Translation", "Lcl Rotation", "Lcl Scaling")
_GEOMETRY = ("MESH", "CAMERA", "LIGHT", "STEREO_CAMERA", "NURBS_CURVE", "NURBS_SURFACE")

_held: dict[int, object] = {}


def _keep(obj):
    """Hold ``obj`` (a ufbx element) for good; on a second fetch restore the reference
    the binding did not count (module docstring)."""
    if obj is None:
        return None
    if id(obj) in _held:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    else:
        _held[id(obj)] = obj
    return obj


class Refused(Exception):
    pass


def _transform(tr) -> list[float]:
    t, q, s = tr.translation, tr.rotation, tr.scale
    return [t.x, t.y, t.z, q.x, q.y, q.z, q.w, s.x, s.y, s.z]


def _load(path: str):
    import ufbx

    try:
        return ufbx.load_file(
            path,
            target_axes=ufbx.axes_right_handed_y_up,
            space_conversion=ufbx.SpaceConversion.TRANSFORM_ROOT,
            inherit_mode_handling=ufbx.InheritModeHandling.COMPENSATE,
            ignore_geometry=True,
            ignore_embedded=True,
            load_external_files=False,
        )
    except ufbx.UfbxError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Refused(f"ufbx cannot read it: {first}") from None


def _skeleton(scene, nodes):
    """Indices of the nodes that make the skeleton: bones and skin-cluster bones, else
    the nodes the takes animate (mocap on nulls); then all their ancestors."""
    index = {id(n): i for i, n in enumerate(nodes)}
    parents = []
    for n in nodes:
        p = _keep(n.parent)
        parents.append(index[id(p)] if p is not None else -1)
    wanted = {i for i, n in enumerate(nodes) if n.attrib_type.name == "BONE"}
    for cluster in [_keep(c) for c in scene.skin_clusters]:
        b = _keep(cluster.bone_node)
        if b is not None:
            wanted.add(index[id(b)])
    return parents, wanted, index


def _takes(scene, nodes, index):
    """Per stack: (name, key start, key end, animated node indices)."""
    out = []
    for stack in [_keep(s) for s in scene.anim_stacks]:
        lo, hi, moved = np.inf, -np.inf, set()
        for layer in [_keep(x) for x in stack.layers]:
            for ap in layer.anim_props:
                elem = _keep(ap.element)
                if ap.prop_name not in _TRS_PROPS or elem is None or id(elem) not in index:
                    continue
                value = _keep(ap.anim_value)
                for curve in [_keep(c) for c in value.curves]:
                    if curve is None or len(curve.keyframes) == 0:
                        continue
                    lo, hi = min(lo, curve.min_time), max(hi, curve.max_time)
                    moved.add(index[id(elem)])
        out.append((str(stack.name), float(lo), float(hi), moved))
    return out


def main(argv) -> int:
    path, mode, take, max_frames = argv[1], argv[2], int(argv[3]), int(argv[4])
    scene = _load(path)
    if len(scene.nodes) > MAX_NODES:
        raise Refused(f"{len(scene.nodes):,} nodes, more than the limit of {MAX_NODES:,}")
    keys = 0
    for curve in [_keep(c) for c in scene.anim_curves]:
        keys += len(curve.keyframes)
    if keys > MAX_KEYS:
        raise Refused(f"{keys:,} animation keys, more than the limit of {MAX_KEYS:,}")
    nodes = [_keep(n) for n in scene.nodes]
    parents, wanted, index = _skeleton(scene, nodes)
    stacks = _takes(scene, nodes, index)
    if not wanted:  # no bones: nodes the takes animate, meshes and cameras excepted
        for _, _, _, moved in stacks:
            wanted |= {i for i in moved if nodes[i].attrib_type.name not in _GEOMETRY}
    chosen = set()
    for i in wanted:  # and their ancestors, up to the scene root (the axis conversion)
        while i >= 0 and i not in chosen:
            chosen.add(i)
            i = parents[i]
    fps = float(scene.settings.frames_per_second)
    names = np.array([str(n.name) for n in nodes])
    takes = [(n, lo, hi) for n, lo, hi, moved in stacks if moved & wanted and hi >= lo]
    out = {
        "names": names,
        "parents": np.array(parents, dtype=np.int64),
        "wanted": np.array(sorted(wanted), dtype=np.int64),
        "nodes": np.array(sorted(chosen), dtype=np.int64),
        "take_names": np.array([t[0] for t in takes] or [""])[: len(takes)],
        "take_spans": np.array([[lo, hi] for _, lo, hi in takes], dtype=np.float64).reshape(-1, 2),
        "stacks": np.array(len(stacks)),
        "fps": np.array(fps),
        "unit": np.array(float(scene.settings.unit_meters)),
        "up": np.array(str(scene.settings.axes.up.name)),
        "skins": np.array(len(scene.skin_clusters)),
        "keys": np.array(keys),
    }
    if len(chosen) > MAX_JOINTS:
        raise Refused(f"a skeleton of {len(chosen)} nodes, more than the limit of {MAX_JOINTS}")
    if mode == "motion":
        name, lo, hi = takes[take]
        frames = int(np.floor((hi - lo) * fps + 1e-6)) + 1
        if frames > max_frames:
            raise Refused(f"take {name!r} has {frames} frames, more than the limit of {max_frames}")
        stack = _keep(scene.anim_stacks[[s[0] for s in stacks].index(name)])
        anim = stack.anim
        chosen_nodes = [nodes[i] for i in sorted(chosen)]
        local = np.empty((frames, len(chosen), 10))
        for f in range(frames):
            t = lo + f / fps
            local[f] = [_transform(n.evaluate_transform(anim, t)) for n in chosen_nodes]
        out["local"] = local
        out["rest"] = np.array([_transform(n.local_transform) for n in chosen_nodes])
    buf = io.BytesIO()
    np.savez(buf, **out)
    sys.stdout.buffer.write(buf.getvalue())
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    gc.disable()
    try:
        code = main(sys.argv)
    except Refused as e:
        sys.stderr.write(f"{e}\n")
        code = 3
    except Exception as e:  # noqa: BLE001 - anything else the file provokes is one line too
        sys.stderr.write(f"ufbx cannot read it: {type(e).__name__}: {e}\n")
        code = 3
    sys.stderr.flush()
    os._exit(code)
