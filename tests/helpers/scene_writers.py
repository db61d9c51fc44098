"""Write a :class:`~stmt.motion.SkeletonMotion` as an ASCII FBX 7.4 or a glTF 2.0 file
(test fixtures and round trips; not part of stmt).

FBX: every joint is a ``LimbNode`` model with a ``PreRotation`` (its rest orientation,
as Maya's joint orient) and Euler ``Lcl Rotation`` curves (order XYZ, ``R = Rz Ry Rx``)
keyed at every frame; a joint whose translation moves gets ``Lcl Translation`` curves.
Several takes become several animation stacks. Units, up axis, frame rate (custom
rates included), a wrapper node above the root (Blender's ``Armature``) and a stated
take span that differs from the keys (a Unity export) are options.

glTF: nodes with ``translation`` / ``rotation`` / ``scale``, one skin over all joints,
one animation per take (LINEAR, STEP or CUBICSPLINE samplers), as ``.glb`` or as
``.gltf`` with its buffer in a data URI; optionally a ``VRMC_vrm_animation`` humanoid
map.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from stmt.motion import SkeletonMotion

KTIME = 46186158000  # FBX time units per second
_TIME_MODES = {120: 1, 100: 2, 60: 3, 50: 4, 48: 5, 30: 6, 24: 11, 1000: 12, 96: 15, 72: 16}
_Y_TO_Z_UP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # +90 degrees about X


@dataclass
class FbxTake:
    name: str
    motion: SkeletonMotion
    start_s: float = 0.0  # time of the first key
    stated_span_s: tuple[float, float] | None = None  # LocalStart/LocalStop if not the keys'


def _euler_xyz(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) FBX XYZ Euler degrees (R = Rz Ry Rx), unwrapped in time."""
    zyx = Rotation.from_matrix(r.reshape(-1, 3, 3)).as_euler("ZYX", degrees=True)
    xyz = zyx[:, ::-1].reshape(r.shape[:-2] + (3,))
    return np.rad2deg(np.unwrap(np.deg2rad(xyz), axis=0)) if xyz.ndim == 3 else xyz


def _world_change(m: SkeletonMotion, w: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Root rotations / translations with the world turned by ``w`` and scaled."""
    rot = m.rotations.copy()
    trans = m.translations * scale
    rot[:, 0] = w @ m.rotations[:, 0]
    trans[:, 0] = trans[:, 0] @ w.T
    return rot, trans


def _fmt(values) -> str:
    return ",".join(f"{v:.9g}" for v in np.asarray(values).reshape(-1))


def write_fbx_ascii(
    path: Path,
    takes: list[FbxTake],
    *,
    fps: float | None = None,
    up: str = "y",
    unit_scale_factor: float = 1.0,
    length_scale: float = 1.0,
    pre_rotation_seed: int | None = 0,
    wrapper: tuple[str, tuple[float, float, float], float] | None = None,
) -> Path:
    """Write ``takes`` (motions on one skeleton) as an ASCII FBX 7.4 file.

    Args:
        fps: the file's frame rate (default: the first motion's); not one of FBX's
            named rates -> ``TimeMode`` custom with ``CustomFrameRate``.
        up: "y" or "z": the file's up axis (the motion, Y up, is turned to it).
        unit_scale_factor: ``UnitScaleFactor`` (centimetres per file unit).
        length_scale: file units per unit of the motion.
        pre_rotation_seed: random rest orientations (``PreRotation``) per joint; None: none.
        wrapper: (name, XYZ Euler degrees, uniform scale) of a null node above the root
            (the motion's root is compensated, so world positions are unchanged).
    """
    first = takes[0].motion
    names, parents = first.names, first.parents
    fps = float(fps or first.fps)
    j = len(names)
    rng = np.random.default_rng(pre_rotation_seed)
    if pre_rotation_seed is None:
        q = np.broadcast_to(np.eye(3), (j, 3, 3))
    else:
        q = Rotation.random(j, random_state=rng).as_matrix()  # joint frame in the BVH frame
    w = _Y_TO_Z_UP if up == "z" else np.eye(3)
    wrap_r, wrap_s = np.eye(3), 1.0
    if wrapper is not None:
        wrap_r = Rotation.from_euler("ZYX", wrapper[1][::-1], degrees=True).as_matrix()
        wrap_s = float(wrapper[2])
    parent_q = np.stack([q[p] if p >= 0 else np.eye(3) for p in parents])
    pre = np.swapaxes(parent_q, 1, 2) @ q  # (J, 3, 3) PreRotation = Q_p^T Q_j

    def local(m: SkeletonMotion) -> tuple[np.ndarray, np.ndarray]:
        rot, trans = _world_change(m, w, length_scale)
        # above the root: the wrapper (scale s, rotation W): compensate the root
        rot[:, 0] = wrap_r.T @ rot[:, 0]
        trans = trans / wrap_s  # the wrapper's scale reaches every offset below it
        trans[:, 0] = trans[:, 0] @ wrap_r
        lcl = np.swapaxes(q, 1, 2)[None] @ rot @ q[None]  # Q_j^T R_j Q_j
        tr = np.einsum("jba,tjb->tja", parent_q, trans)  # Q_p^T t_j
        tr[:, 0] = trans[:, 0]
        return lcl, tr

    ids = iter(range(100000, 10**9))
    model_id = [next(ids) for _ in range(j)]
    objects, conns = [], []
    wrap_id = None
    if wrapper is not None:
        wrap_id = next(ids)
        e = _euler_xyz(wrap_r)
        objects.append(
            f'\tModel: {wrap_id}, "Model::{wrapper[0]}", "Null" {{\n\t\tVersion: 232\n'
            f"\t\tProperties70:  {{\n"
            f'\t\t\tP: "Lcl Rotation", "Lcl Rotation", "", "A",{_fmt(e)}\n'
            f'\t\t\tP: "Lcl Scaling", "Lcl Scaling", "", "A",{_fmt([wrap_s] * 3)}\n'
            f"\t\t}}\n\t}}"
        )
        conns.append(f'\tC: "OO",{wrap_id},0')
    _, tr0 = local(first)
    rest_t = first.offsets * length_scale / wrap_s
    rest_t = np.einsum("jba,jb->ja", parent_q, rest_t)
    rest_t[0] = tr0[0, 0]
    for k, name in enumerate(names):
        attr = next(ids)
        objects.append(
            f'\tNodeAttribute: {attr}, "NodeAttribute::{name}", "LimbNode" {{\n'
            f'\t\tTypeFlags: "Skeleton"\n\t}}'
        )
        objects.append(
            f'\tModel: {model_id[k]}, "Model::{name}", "LimbNode" {{\n\t\tVersion: 232\n'
            f"\t\tProperties70:  {{\n"
            f'\t\t\tP: "RotationActive", "bool", "", "",1\n'
            f'\t\t\tP: "PreRotation", "Vector3D", "Vector", "",{_fmt(_euler_xyz(pre[k]))}\n'
            f'\t\t\tP: "Lcl Translation", "Lcl Translation", "", "A",{_fmt(rest_t[k])}\n'
            f"\t\t}}\n\t}}"
        )
        conns.append(f'\tC: "OO",{attr},{model_id[k]}')
        p = parents[k]
        above = model_id[p] if p >= 0 else (wrap_id if wrap_id is not None else 0)
        conns.append(f'\tC: "OO",{model_id[k]},{above}')
    for take in takes:
        lcl, tr = local(take.motion)
        t = take.motion.num_frames
        times = np.round((take.start_s + np.arange(t) / fps) * KTIME).astype(np.int64)
        span = take.stated_span_s or (take.start_s, take.start_s + (t - 1) / fps)
        stack, layer = next(ids), next(ids)
        objects.append(
            f'\tAnimationStack: {stack}, "AnimStack::{take.name}", "" {{\n'
            f"\t\tProperties70:  {{\n"
            f'\t\t\tP: "LocalStart", "KTime", "Time", "",{int(span[0] * KTIME)}\n'
            f'\t\t\tP: "LocalStop", "KTime", "Time", "",{int(span[1] * KTIME)}\n'
            f"\t\t}}\n\t}}"
        )
        objects.append(f'\tAnimationLayer: {layer}, "AnimLayer::BaseLayer", "" {{\n\t}}')
        conns.append(f'\tC: "OO",{layer},{stack}')
        euler = _euler_xyz(lcl)  # (T, J, 3)
        for k in range(j):
            curves = [("R", "Lcl Rotation", euler[:, k])]
            if np.ptp(tr[:, k], axis=0).max() > 1e-9:
                curves.append(("T", "Lcl Translation", tr[:, k]))
            for short, prop, values in curves:
                node = next(ids)
                objects.append(
                    f'\tAnimationCurveNode: {node}, "AnimCurveNode::{short}", "" {{\n'
                    f"\t\tProperties70:  {{\n"
                    + "".join(
                        f'\t\t\tP: "d|{a}", "Number", "", "A",{values[0, i]:.9g}\n'
                        for i, a in enumerate("XYZ")
                    )
                    + "\t\t}\n\t}"
                )
                conns.append(f'\tC: "OO",{node},{layer}')
                conns.append(f'\tC: "OP",{node},{model_id[k]}, "{prop}"')
                for i, a in enumerate("XYZ"):
                    curve = next(ids)
                    objects.append(
                        f'\tAnimationCurve: {curve}, "AnimCurve::", "" {{\n'
                        f"\t\tDefault: {values[0, i]:.9g}\n\t\tKeyVer: 4009\n"
                        f"\t\tKeyTime: *{t} {{\n\t\t\ta: {_fmt(times)}\n\t\t}}\n"
                        f"\t\tKeyValueFloat: *{t} {{\n\t\t\ta: {_fmt(values[:, i])}\n\t\t}}\n"
                        f"\t\tKeyAttrFlags: *1 {{\n\t\t\ta: 260\n\t\t}}\n"
                        f"\t\tKeyAttrDataFloat: *4 {{\n\t\t\ta: 0,0,0,0\n\t\t}}\n"
                        f"\t\tKeyAttrRefCount: *1 {{\n\t\t\ta: {t}\n\t\t}}\n\t}}"
                    )
                    conns.append(f'\tC: "OP",{curve},{node}, "d|{a}"')
    mode = _TIME_MODES.get(int(fps)) if float(fps).is_integer() else None
    up_axis, front, front_sign = (1, 2, 1) if up == "y" else (2, 1, -1)
    settings = [
        ("UpAxis", "int", "Integer", up_axis), ("UpAxisSign", "int", "Integer", 1),
        ("FrontAxis", "int", "Integer", front), ("FrontAxisSign", "int", "Integer", front_sign),
        ("CoordAxis", "int", "Integer", 0), ("CoordAxisSign", "int", "Integer", 1),
        ("UnitScaleFactor", "double", "Number", unit_scale_factor),
        ("TimeMode", "enum", "", mode if mode is not None else 14),
        ("CustomFrameRate", "double", "Number", fps),
    ]  # fmt: skip
    text = [
        "; FBX 7.4.0 project file",
        "; written by stmt's tests (tests/helpers/scene_writers.py)",
        (
            "FBXHeaderExtension:  {\n\tFBXHeaderVersion: 1003\n\tFBXVersion: 7400\n"
            '\tCreator: "stmt tests"\n}'
        ),
        "GlobalSettings:  {\n\tVersion: 1000\n\tProperties70:  {\n"
        + "".join(f'\t\tP: "{n}", "{t}", "{c}", "",{v:.9g}\n' for n, t, c, v in settings)
        + "\t}\n}",
        "Objects:  {\n" + "\n".join(objects) + "\n}",
        "Connections:  {\n" + "\n".join(conns) + "\n}",
    ]
    path = Path(path)
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ glTF


def write_gltf(
    path: Path,
    takes: list[tuple[str, SkeletonMotion]],
    *,
    unit: float = 1.0,
    interpolation: str = "LINEAR",
    binary: bool | None = None,
    vrm_bones: dict[str, str] | None = None,
    skin: bool = True,
) -> Path:
    """Write ``takes`` [(name, motion)] on one skeleton as glTF (``.glb`` when ``path``
    ends so or ``binary``). ``unit``: metres per unit of the motion. ``vrm_bones``:
    {joint name: VRM humanoid bone} for a ``VRMC_vrm_animation`` extension."""
    path = Path(path)
    binary = path.suffix.lower() in (".glb", ".vrma") if binary is None else binary
    first = takes[0][1]
    names, parents = first.names, first.parents
    blob = bytearray()
    views, accessors = [], []

    def add(array: np.ndarray, kind: str, minmax: bool = False) -> int:
        data = np.ascontiguousarray(array, dtype=np.float32)
        while len(blob) % 4:
            blob.append(0)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": data.nbytes})
        blob.extend(data.tobytes())
        acc = {"bufferView": len(views) - 1, "componentType": 5126,
               "count": int(data.shape[0]), "type": kind}  # fmt: skip
        if minmax:
            acc["min"], acc["max"] = [float(data.min())], [float(data.max())]
        accessors.append(acc)
        return len(accessors) - 1

    def quats(r: np.ndarray) -> np.ndarray:
        return Rotation.from_matrix(r.reshape(-1, 3, 3)).as_quat().reshape(r.shape[:-2] + (4,))

    nodes = []
    for k, name in enumerate(names):
        node = {
            "name": name,
            "translation": [float(x) for x in first.translations[0, k] * unit],
            "rotation": [float(x) for x in quats(first.rotations[0, k])],
        }
        kids = [c for c, p in enumerate(parents) if p == k]
        if kids:
            node["children"] = kids
        nodes.append(node)
    doc: dict = {"asset": {"version": "2.0", "generator": "stmt tests"}, "nodes": nodes,
                 "scenes": [{"nodes": [0]}], "scene": 0}  # fmt: skip
    if skin:
        pos, glob = first.forward_kinematics()
        world = np.zeros((len(names), 4, 4))
        world[:, :3, :3], world[:, :3, 3], world[:, 3, 3] = glob[0], pos[0] * unit, 1.0
        inv = np.linalg.inv(world).transpose(0, 2, 1).reshape(len(names), 16)  # column-major
        doc["skins"] = [
            {"joints": list(range(len(names))), "inverseBindMatrices": add(inv, "MAT4")}
        ]
    doc["animations"] = []
    for name, m in takes:
        t = np.arange(m.num_frames) / m.fps
        channels, samplers = [], []
        for k in range(len(names)):
            series = [("rotation", quats(m.rotations[:, k]), "VEC4")]
            if np.ptp(m.translations[:, k], axis=0).max() > 1e-9:
                series.append(("translation", m.translations[:, k] * unit, "VEC3"))
            for target, values, kind in series:
                if target == "rotation":  # the shorter way between keys
                    flip = np.cumsum(np.r_[0, np.sum(values[1:] * values[:-1], 1) < 0]) % 2
                    values = np.where(flip[:, None] == 1, -values, values)
                if interpolation == "CUBICSPLINE":  # zero tangents: passes through the keys
                    zero = np.zeros_like(values)
                    values = np.stack([zero, values, zero], axis=1).reshape(-1, values.shape[1])
                samplers.append({"input": add(t[:, None], "SCALAR", True),
                                 "output": add(values, kind), "interpolation": interpolation})  # fmt: skip
                channels.append(
                    {"sampler": len(samplers) - 1, "target": {"node": k, "path": target}}
                )
        doc["animations"].append({"name": name, "channels": channels, "samplers": samplers})
    if vrm_bones:
        bones = {bone: {"node": names.index(j)} for j, bone in vrm_bones.items() if j in names}
        doc["extensionsUsed"] = ["VRMC_vrm_animation"]
        doc["extensions"] = {"VRMC_vrm_animation": {"specVersion": "1.0",
                                                     "humanoid": {"humanBones": bones}}}  # fmt: skip
    doc["bufferViews"], doc["accessors"] = views, accessors
    if binary:
        doc["buffers"] = [{"byteLength": len(blob)}]
        js = json.dumps(doc).encode()
        js += b" " * (-len(js) % 4)
        blob += b"\0" * (-len(blob) % 4)
        out = struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(js) + 8 + len(blob))
        out += struct.pack("<II", len(js), 0x4E4F534A) + js
        out += struct.pack("<II", len(blob), 0x004E4942) + bytes(blob)
        path.write_bytes(out)
    else:
        uri = "data:application/octet-stream;base64," + base64.b64encode(bytes(blob)).decode()
        doc["buffers"] = [{"byteLength": len(blob), "uri": uri}]
        path.write_text(json.dumps(doc), encoding="utf-8")
    return path
