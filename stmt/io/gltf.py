"""glTF 2.0 (``.gltf`` / ``.glb``, and ``.vrma`` VRM animations): skeletal animation read
over the specification, parsed into a :class:`~stmt.motion.SkeletonMotion`.

What is read: the node tree (``matrix`` or ``translation`` / ``rotation`` /
``scale``), the skins' joints, and each animation's samplers (LINEAR, STEP and
CUBICSPLINE, on ``translation`` / ``rotation`` / ``scale``; morph ``weights``
are ignored), through accessors of any component type (normalised integers
included) and sparse accessors. Each animation is a take (``FILE#NAME``). The
skeleton is every skin joint with its ancestors; a file without skins (a
``.vrma``) uses the animated nodes. glTF is metres and Y up, right-handed.

A VRM animation (``VRMC_vrm_animation``) maps its nodes to humanoid bones
(``hips``, ``leftUpperLeg``, ...) in an extension: those nodes take the bone's
name, which :mod:`stmt.retarget` recognises from their sides and the tree.

Frame rate: glTF keys are seconds, not frames; the take is sampled at the rate
its keys are spaced at (their median spacing, snapped to a whole rate), or at
30 frames/s when the keys are sparser than 10 per second (hand-keyed clips).
Every count, offset and length is checked against the file before an array is
made: a truncated or inconsistent file is one :class:`~stmt.errors.InputError`.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stmt import limits
from stmt.errors import InputError
from stmt.io.scenegraph import (
    Take,
    check_tree,
    pick_take,
    skeleton_motion,
    skeleton_nodes,
    trs_matrices,
)
from stmt.motion import SkeletonMotion

GLB_MAGIC = b"glTF"
_JSON_CHUNK, _BIN_CHUNK = 0x4E4F534A, 0x004E4942
MAX_JSON_BYTES = 256 * 1024**2
DEFAULT_FPS = 30.0
_COMPONENTS = {  # componentType -> (dtype, normalisation divisor for normalized ints)
    5120: (np.int8, 127.0), 5121: (np.uint8, 255.0), 5122: (np.int16, 32767.0),
    5123: (np.uint16, 65535.0), 5125: (np.uint32, None), 5126: (np.float32, None),
}  # fmt: skip
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_PATHS = {"translation": 3, "rotation": 4, "scale": 3}


@dataclass
class GltfFile:
    """A parsed glTF document with its buffers (bytes), before any animation is sampled."""

    path: Path
    doc: dict
    buffers: list[bytes]

    def _list(self, key: str) -> list:
        value = self.doc.get(key, [])
        if not isinstance(value, list):
            raise InputError(self.path, f"'{key}' is not a list")
        return value

    def _item(self, key: str, index, what: str) -> dict:
        items = self._list(key)
        if not isinstance(index, int) or not 0 <= index < len(items):
            raise InputError(
                self.path, f"{what} refers to {key}[{index}], but there are {len(items)}"
            )
        item = items[index]
        if not isinstance(item, dict):
            raise InputError(self.path, f"{key}[{index}] is not an object")
        return item

    # ------------------------------------------------------------------ accessors
    def accessor(self, index, what: str) -> np.ndarray:
        """The accessor's elements as (count, width) float64 (normalised ints scaled)."""
        acc = self._item("accessors", index, what)
        kind, ctype, count = acc.get("type"), acc.get("componentType"), acc.get("count")
        if kind not in _WIDTH or ctype not in _COMPONENTS:
            raise InputError(self.path, f"accessor {index}: unknown type {kind!r}/{ctype!r}")
        if not isinstance(count, int) or count < 0 or count > limits.MAX_KEYS:
            raise InputError(
                self.path,
                f"accessor {index} has count {count!r}; expected 0 to {limits.MAX_KEYS:,}",
            )
        dtype, norm = _COMPONENTS[ctype]
        width = _WIDTH[kind]
        size = np.dtype(dtype).itemsize
        out = np.zeros((count, width))
        if "bufferView" in acc:
            view = self._item("bufferViews", acc["bufferView"], f"accessor {index}")
            data = self._view_bytes(view, acc["bufferView"])
            stride = view.get("byteStride") or width * size
            offset = acc.get("byteOffset", 0)
            if not isinstance(offset, int) or not isinstance(stride, int) or offset < 0:
                raise InputError(self.path, f"accessor {index}: bad byteOffset or byteStride")
            need = offset + (count - 1) * stride + width * size if count else 0
            if need > len(data):
                raise InputError(
                    self.path,
                    f"accessor {index} needs {need} bytes of bufferView {acc['bufferView']}, "
                    f"which has {len(data)} (wrong count or truncated file)",
                )
            if count:
                raw = np.lib.stride_tricks.as_strided(
                    np.frombuffer(data, dtype=np.uint8, count=need - offset, offset=offset),
                    shape=(count, width * size),
                    strides=(stride, 1),
                )
                out = np.ascontiguousarray(raw).view(np.dtype(dtype).newbyteorder("<"))
                out = out.reshape(count, width).astype(np.float64)
        if "sparse" in acc:
            self._sparse(acc["sparse"], index, out, dtype)
        if acc.get("normalized") and norm is not None:
            out = np.maximum(out / norm, -1.0)
        if not np.isfinite(out).all():
            raise InputError(self.path, f"accessor {index} holds NaN or Inf")
        return out

    def _sparse(self, sparse: dict, index: int, out: np.ndarray, dtype) -> None:
        n = sparse.get("count")
        if not isinstance(n, int) or not 0 <= n <= len(out):
            raise InputError(self.path, f"accessor {index}: sparse count {n!r} out of range")
        idx_spec, val_spec = sparse.get("indices", {}), sparse.get("values", {})
        ictype = idx_spec.get("componentType")
        if ictype not in (5121, 5123, 5125):
            raise InputError(self.path, f"accessor {index}: bad sparse index type {ictype!r}")
        parts = []
        for spec, dt, width in (
            (idx_spec, _COMPONENTS[ictype][0], 1),
            (val_spec, dtype, out.shape[1]),
        ):
            view = self._item("bufferViews", spec.get("bufferView"), f"accessor {index} sparse")
            data = self._view_bytes(view, spec.get("bufferView"))
            offset, size = spec.get("byteOffset", 0), np.dtype(dt).itemsize * width * n
            if not isinstance(offset, int) or offset < 0 or offset + size > len(data):
                raise InputError(self.path, f"accessor {index}: sparse data past its bufferView")
            parts.append(np.frombuffer(data, dtype=dt, count=width * n, offset=offset))
        rows = parts[0].astype(np.int64)
        if n and (rows.max() >= len(out)):
            raise InputError(self.path, f"accessor {index}: sparse index past the accessor's count")
        out[rows] = parts[1].reshape(n, out.shape[1])

    def _view_bytes(self, view: dict, index) -> memoryview:
        buf = view.get("buffer")
        if not isinstance(buf, int) or not 0 <= buf < len(self.buffers):
            raise InputError(self.path, f"bufferView {index} refers to a missing buffer {buf!r}")
        start, length = view.get("byteOffset", 0), view.get("byteLength")
        data = self.buffers[buf]
        if not (isinstance(start, int) and isinstance(length, int) and start >= 0 and length >= 0):
            raise InputError(self.path, f"bufferView {index}: bad byteOffset or byteLength")
        if start + length > len(data):
            raise InputError(
                self.path,
                f"bufferView {index} ends at byte {start + length}, past buffer {buf} "
                f"({len(data)} bytes; truncated file?)",
            )
        return memoryview(data)[start : start + length]


# ---------------------------------------------------------------------------- file level


def _load_document(path: Path) -> GltfFile:
    size = limits.check_model_size(path)
    try:
        with path.open("rb") as f:
            head = f.read(12)
            if head[:4] == GLB_MAGIC:
                return _load_glb(path, f, head, size)
            if size > MAX_JSON_BYTES:
                raise InputError(path, f"a .gltf JSON of {size / 1024**2:.0f} MB; the limit is "
                                 f"{MAX_JSON_BYTES // 1024**2} MB")  # fmt: skip
            text = head + f.read()
    except OSError as e:
        raise InputError(path, f"cannot read the file ({e.strerror})") from None
    doc = _parse_json(path, text)
    return GltfFile(path, doc, _external_buffers(path, doc, None))


def _load_glb(path: Path, f, head: bytes, size: int) -> GltfFile:
    _, version, length = struct.unpack("<4sII", head)
    if version != 2:
        raise InputError(path, f"GLB version {version}; only glTF 2.0 is read")
    if length > size:
        raise InputError(
            path, f"the GLB header says {length} bytes, the file has {size} (truncated)"
        )
    doc, binary, pos = None, None, 12
    while pos + 8 <= length:
        chunk_len, chunk_type = struct.unpack("<II", f.read(8))
        pos += 8
        if pos + chunk_len > length:
            raise InputError(path, f"a GLB chunk of {chunk_len} bytes runs past the file's end")
        if chunk_type == _JSON_CHUNK and doc is None:
            if chunk_len > MAX_JSON_BYTES:
                raise InputError(path, f"a GLB JSON chunk of {chunk_len / 1024**2:.0f} MB")
            doc = _parse_json(path, f.read(chunk_len))
        elif chunk_type == _BIN_CHUNK and binary is None:
            binary = f.read(chunk_len)
        else:
            f.seek(chunk_len, 1)
        pos += chunk_len
    if doc is None:
        raise InputError(path, "a GLB file without its JSON chunk")
    return GltfFile(path, doc, _external_buffers(path, doc, binary))


def _parse_json(path: Path, text: bytes) -> dict:
    try:
        doc = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, f"not a glTF file: its JSON cannot be parsed ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("asset"), dict):
        raise InputError(path, "not a glTF file: no 'asset' object in its JSON")
    version = str(doc["asset"].get("version", ""))
    if not version.startswith("2."):
        raise InputError(path, f"glTF version {version or 'unknown'}; only glTF 2.0 is read")
    return doc


def _external_buffers(path: Path, doc: dict, binary: bytes | None) -> list[bytes]:
    out = []
    buffers = doc.get("buffers", [])
    if not isinstance(buffers, list):
        raise InputError(path, "'buffers' is not a list")
    for i, buf in enumerate(buffers):
        uri = buf.get("uri") if isinstance(buf, dict) else None
        if uri is None:
            if i != 0 or binary is None:
                raise InputError(path, f"buffer {i} has no uri and there is no GLB binary chunk")
            data = binary
        elif uri.startswith("data:"):
            try:
                data = base64.b64decode(uri.split(",", 1)[1], validate=True)
            except (IndexError, ValueError):
                raise InputError(path, f"buffer {i}: a data URI that is not base64") from None
        else:
            target = (path.parent / uri).resolve()
            if "://" in uri or Path(uri).is_absolute():
                raise InputError(path, f"buffer {i} points outside the file's folder ({uri!r})")
            limits.check_model_size(target)
            try:
                data = target.read_bytes()
            except OSError as e:
                raise InputError(path, f"buffer {i}: cannot read {uri!r} ({e.strerror})") from None
        declared = buf.get("byteLength") if isinstance(buf, dict) else None
        if isinstance(declared, int) and declared > len(data):
            raise InputError(
                path, f"buffer {i} declares {declared} bytes but holds {len(data)} (truncated?)"
            )
        out.append(data)
    return out


# ---------------------------------------------------------------------------- the scene


@dataclass
class _Scene:
    names: list[str]
    parents: list[int]
    rest_t: np.ndarray  # (N, 3)
    rest_q: np.ndarray  # (N, 4)
    rest_s: np.ndarray  # (N, 3)
    matrix: dict[int, np.ndarray]  # nodes given by a matrix (never animated)
    joints: list[int]  # skeleton nodes, parents first


def _scene(g: GltfFile) -> _Scene:
    nodes = g._list("nodes")
    if len(nodes) > limits.MAX_NODES:
        raise InputError(
            g.path, f"{len(nodes):,} nodes, more than the limit of {limits.MAX_NODES:,}"
        )
    n = len(nodes)
    parents = [-1] * n
    names = []
    rest_t, rest_q, rest_s = np.zeros((n, 3)), np.tile([0.0, 0, 0, 1], (n, 1)), np.ones((n, 3))
    matrix: dict[int, np.ndarray] = {}
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise InputError(g.path, f"nodes[{i}] is not an object")
        names.append(str(node.get("name") or f"node{i}"))
        for c in node.get("children", []):
            if not isinstance(c, int) or not 0 <= c < n:
                raise InputError(g.path, f"node {names[i]!r} has a child {c!r} out of range")
            if parents[c] >= 0 or c == i:
                raise InputError(g.path, f"node {c} has two parents (the node tree has a cycle?)")
            parents[c] = i
        try:
            if "matrix" in node:
                m = np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T  # column-major
                matrix[i] = m
            rest_t[i] = node.get("translation", rest_t[i])
            rest_q[i] = node.get("rotation", rest_q[i])
            rest_s[i] = node.get("scale", rest_s[i])
        except (TypeError, ValueError):
            raise InputError(
                g.path, f"node {names[i]!r}: a transform of the wrong length"
            ) from None
    check_tree(parents, names, g.path)
    _vrm_names(g, names)
    wanted: set[int] = set()
    for si, skin in enumerate(g._list("skins")):
        for j in skin.get("joints", []) if isinstance(skin, dict) else []:
            if not isinstance(j, int) or not 0 <= j < n:
                raise InputError(g.path, f"skin {si} lists joint {j!r}, out of range")
            wanted.add(j)
    if not wanted:  # no skin (a .vrma): the nodes animations move
        for anim in g._list("animations"):
            for ch in anim.get("channels", []) if isinstance(anim, dict) else []:
                target = ch.get("target", {}) if isinstance(ch, dict) else {}
                node = target.get("node")
                if target.get("path") in _PATHS and isinstance(node, int) and 0 <= node < n:
                    wanted.add(node)
    if not wanted:
        raise InputError(g.path, "holds no skeleton (no skin and no animated node)")
    if (
        not np.isfinite(rest_t).all()
        or not np.isfinite(rest_q).all()
        or not np.isfinite(rest_s).all()
    ):
        raise InputError(g.path, "a node transform holds NaN or Inf")
    return _Scene(names, parents, rest_t, rest_q, rest_s, matrix, skeleton_nodes(parents, wanted))


def _vrm_names(g: GltfFile, names: list[str]) -> None:
    """Rename the nodes a VRM animation maps to humanoid bones after those bones."""
    ext = g.doc.get("extensions", {})
    vrm = ext.get("VRMC_vrm_animation") if isinstance(ext, dict) else None
    bones = (vrm or {}).get("humanoid", {}).get("humanBones", {}) if isinstance(vrm, dict) else {}
    if not isinstance(bones, dict):
        return
    for bone, spec in bones.items():
        node = spec.get("node") if isinstance(spec, dict) else None
        if isinstance(node, int) and 0 <= node < len(names):
            names[node] = str(bone)


# ---------------------------------------------------------------------------- animations


@dataclass
class _Channel:
    node: int
    path: str  # translation | rotation | scale
    times: np.ndarray  # (K,)
    values: np.ndarray  # (K, C) or (3K, C) for CUBICSPLINE
    interpolation: str


def _channels(g: GltfFile, index: int, anim: dict, joints: set[int]) -> list[_Channel]:
    samplers = anim.get("samplers", [])
    out = []
    for c, ch in enumerate(anim.get("channels", [])):
        target = ch.get("target", {}) if isinstance(ch, dict) else {}
        node, path = target.get("node"), target.get("path")
        if path not in _PATHS or node not in joints:
            continue  # morph weights, pointers, nodes outside the skeleton
        s = ch.get("sampler")
        if (
            not isinstance(s, int)
            or not 0 <= s < len(samplers)
            or not isinstance(samplers[s], dict)
        ):
            raise InputError(g.path, f"animation {index} channel {c}: sampler {s!r} out of range")
        sampler = samplers[s]
        interp = sampler.get("interpolation", "LINEAR")
        if interp not in ("LINEAR", "STEP", "CUBICSPLINE"):
            raise InputError(g.path, f"animation {index}: unknown interpolation {interp!r}")
        times = g.accessor(sampler.get("input"), f"animation {index} sampler {s}")[:, 0]
        values = g.accessor(sampler.get("output"), f"animation {index} sampler {s}")
        per_key = 3 if interp == "CUBICSPLINE" else 1
        if values.shape[1] != _PATHS[path] or len(values) != per_key * len(times):
            raise InputError(
                g.path,
                f"animation {index} sampler {s}: {len(times)} key times but output of "
                f"{len(values)} x {values.shape[1]} for {interp} {path}",
            )
        if len(times) == 0:
            continue
        if np.any(np.diff(times) < 0):
            raise InputError(g.path, f"animation {index} sampler {s}: key times are not increasing")
        out.append(_Channel(node, path, times, values, interp))
    return out


def _fps(channels: list[_Channel]) -> float:
    """The rate the keys are spaced at, snapped to a whole number (module docstring)."""
    gaps = np.concatenate([np.diff(c.times) for c in channels if len(c.times) > 1] or [[]])
    gaps = gaps[gaps > 1e-6]
    if gaps.size == 0:
        return DEFAULT_FPS
    rate = 1.0 / float(np.median(gaps))
    if rate < 10.0:
        return DEFAULT_FPS
    rate = min(rate, limits.MAX_FPS)
    return float(round(rate)) if abs(rate - round(rate)) <= 0.02 * rate else rate


def _sample(ch: _Channel, t: np.ndarray) -> np.ndarray:
    """(T, C) channel values at times ``t`` (clamped to the keys' span)."""
    times, k = ch.times, len(ch.times)
    values = ch.values[1::3] if ch.interpolation == "CUBICSPLINE" else ch.values
    if k == 1:
        return np.broadcast_to(values[0], (len(t), values.shape[1])).copy()
    # keys are float32: a frame time a rounding error short of a key counts as at it
    tol = 1e-6 + 2e-7 * np.abs(t)
    i = np.clip(np.searchsorted(times, t + tol, side="right") - 1, 0, k - 2)
    dt = times[i + 1] - times[i]
    u = np.clip((t - times[i]) / np.where(dt > 0, dt, 1.0), 0.0, 1.0)[:, None]
    a, b = values[i], values[i + 1]
    if ch.interpolation == "STEP":
        return np.where((t + tol >= times[i + 1])[:, None], b, a)
    if ch.interpolation == "CUBICSPLINE":
        out_tan, in_tan = ch.values[2::3][i], ch.values[0::3][i + 1]
        u2, u3, d = u * u, u * u * u, dt[:, None]
        res = (2 * u3 - 3 * u2 + 1) * a + (u3 - 2 * u2 + u) * d * out_tan
        res += (-2 * u3 + 3 * u2) * b + (u3 - u2) * d * in_tan
        return res
    if ch.path != "rotation":
        return a + u * (b - a)
    # slerp, along the shorter arc
    dot = np.sum(a * b, axis=1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    near = sin < 1e-6
    wa = np.where(near, 1.0 - u, np.sin((1.0 - u) * theta) / np.where(near, 1.0, sin))
    wb = np.where(near, u, np.sin(u * theta) / np.where(near, 1.0, sin))
    return wa * a + wb * b


def _animations(g: GltfFile, scene: _Scene) -> list[tuple[str, list[_Channel]]]:
    joints = set(scene.joints)
    out = []
    for i, anim in enumerate(g._list("animations")):
        if not isinstance(anim, dict):
            raise InputError(g.path, f"animations[{i}] is not an object")
        chans = _channels(g, i, anim, joints - set(scene.matrix))
        if chans:
            out.append((str(anim.get("name") or f"animation {i}"), chans))
    return out


def _takes(anims) -> list[Take]:
    takes = []
    for name, chans in anims:
        start = min(float(c.times[0]) for c in chans)
        end = max(float(c.times[-1]) for c in chans)
        takes.append(Take(name, start, end, _fps(chans)))
    return takes


def _read(path: Path):
    g = _load_document(path)
    scene = _scene(g)
    anims = _animations(g, scene)
    if not anims:
        n = len(g._list("animations"))
        what = (
            f"its {n} animation(s) move no node of its skeleton (morph weights or other "
            "properties only)"
            if n
            else "it has a skeleton but no animation"
        )
        raise InputError(path, f"nothing to read: {what} ({len(scene.joints)} joints)")
    return g, scene, anims


def gltf_takes(path: str | Path) -> list[Take]:
    """The file's animations that move its skeleton, as takes."""
    _, _, anims = _read(Path(path))
    return _takes(anims)


def gltf_motion(
    path: str | Path, take: str | int | None = None, source: Path | None = None
) -> SkeletonMotion:
    """One animation of a glTF file (the first when ``take`` is None) as a skeleton motion
    in metres, Y up; ``source`` (default ``path``) names it in errors and output."""
    path = Path(path)
    source = path if source is None else source
    _, scene, anims = _read(path)
    takes = _takes(anims)
    k = pick_take(takes, take, path)
    info, chans = takes[k], anims[k][1]
    limits.check_fps(source, info.fps)
    limits.check_frames(source, info.frames, info.fps)
    t = info.start + np.arange(info.frames) / info.fps
    joints = scene.joints
    col = {node: i for i, node in enumerate(joints)}
    tr = np.broadcast_to(scene.rest_t[joints], (len(t), len(joints), 3)).copy()
    rot = np.broadcast_to(scene.rest_q[joints], (len(t), len(joints), 4)).copy()
    sc = np.broadcast_to(scene.rest_s[joints], (len(t), len(joints), 3)).copy()
    target = {"translation": tr, "rotation": rot, "scale": sc}
    for ch in chans:
        target[ch.path][:, col[ch.node]] = _sample(ch, t)
    local = trs_matrices(tr, rot, sc)  # (T, J, 4, 4)
    rest = trs_matrices(scene.rest_t[joints], scene.rest_q[joints], scene.rest_s[joints])
    for node, m in scene.matrix.items():
        if node in col:
            local[:, col[node]] = m
            rest[col[node]] = m
    parents = [col[scene.parents[j]] if scene.parents[j] >= 0 else -1 for j in joints]
    return skeleton_motion(
        [scene.names[j] for j in joints], parents, local, rest, info.fps,
        unit=1.0, up="y", source=source, fmt="gltf",
    )  # fmt: skip
