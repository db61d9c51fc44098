"""Small CMU-skeleton motion files for tests: BVH (cgspeed layout) and ASF/AMC.

Both writers use one skeleton, close to a CMU subject's ``NN.asf``: 30 bones plus the
root, Y up, T-pose facing +Z, lengths in the CMU ASF unit (1/0.45 inch). A BVH joint
sits at the start of its ASF bone, named as in the cgspeed BVH conversion
(``lfemur`` -> ``LeftUpLeg``, ...).

A motion is given as ASF-style degrees of freedom: ``{asf bone: (T, len(dof)) degrees}``
plus the root's ``(T, 6)`` values (tx ty tz in ASF units, rx ry rz degrees). The BVH
writer converts the same motion to ``Zrotation Yrotation Xrotation`` channels, so the
BVH and the ASF/AMC files of one motion describe the same poses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ASF_LENGTH_UNIT = 0.45  # ":units length 0.45": one file unit = 1/0.45 inch
METRES_PER_UNIT = 0.0254 / ASF_LENGTH_UNIT


@dataclass(frozen=True)
class AsfBone:
    name: str
    parent: str
    direction: tuple[float, float, float]
    length: float
    axis: tuple[float, float, float]  # degrees, order XYZ
    dof: tuple[str, ...]


def _left_right(name, parent, direction, length, axis, dof):
    """The left bone and its mirror image (x negated; axis y, z angles negated)."""
    x, y, z = direction
    ax, ay, az = axis
    return [
        AsfBone(f"l{name}", parent.replace("*", "l"), (x, y, z), length, (ax, ay, az), dof),
        AsfBone(f"r{name}", parent.replace("*", "r"), (-x, y, z), length, (ax, -ay, -az), dof),
    ]


def cmu_bones() -> list[AsfBone]:
    """The CMU skeleton's bones (parents first), lengths in ASF units."""
    xyz, x = ("rx", "ry", "rz"), ("rx",)
    bones = []
    bones += _left_right("hipjoint", "root", (0.669, -0.687, 0.285), 2.40, (0, 0, 0), ())
    bones += _left_right("femur", "*hipjoint", (0.342, -0.940, 0.0), 7.18, (0, 0, 20), xyz)
    bones += _left_right("tibia", "*femur", (0.342, -0.940, 0.0), 7.43, (0, 0, 20), x)
    bones += _left_right(
        "foot", "*tibia", (0.094, -0.307, 0.947), 2.18, (-90, 7.3, 20), ("rx", "rz")
    )
    bones += _left_right("toes", "*foot", (0.0, 0.0, 1.0), 1.09, (-90, 7.3, 20), x)
    bones += [
        AsfBone("lowerback", "root", (0.0, 0.999, -0.040), 2.06, (0, 0, 0), xyz),
        AsfBone("upperback", "lowerback", (0.0, 1.0, 0.007), 2.07, (0, 0, 0), xyz),
        AsfBone("thorax", "upperback", (0.0, 1.0, 0.006), 2.07, (0, 0, 0), xyz),
        AsfBone("lowerneck", "thorax", (0.0, 0.961, 0.277), 1.76, (0, 0, 0), xyz),
        AsfBone("upperneck", "lowerneck", (0.0, 0.997, -0.080), 1.76, (0, 0, 0), xyz),
        AsfBone("head", "upperneck", (0.0, 0.992, -0.129), 1.78, (0, 0, 0), xyz),
    ]
    bones += _left_right(
        "clavicle", "thorax", (0.979, 0.205, -0.027), 3.61, (0, 0, -20), ("ry", "rz")
    )
    bones += _left_right("humerus", "*clavicle", (1.0, 0.0, 0.0), 5.00, (0, 0, 90), xyz)
    bones += _left_right("radius", "*humerus", (1.0, 0.0, 0.0), 3.40, (0, 0, 90), x)
    bones += _left_right("wrist", "*radius", (1.0, 0.0, 0.0), 1.70, (0, 0, 90), ("ry",))
    bones += _left_right("hand", "*wrist", (1.0, 0.0, 0.0), 0.72, (0, 0, 90), ("rx", "rz"))
    bones += _left_right("fingers", "*hand", (1.0, 0.0, 0.0), 0.58, (0, 0, 90), x)
    bones += _left_right("thumb", "*wrist", (0.707, 0.0, 0.707), 0.83, (-90, 45, -90), ("rx", "rz"))
    return bones


from stmt.io.asf_amc import ASF_TO_BVH  # the reader's own ASF bone -> BVH joint names

# Standing root: pelvis about 17.7 units (~1.0 m) above the floor (y = 0).
STANDING_ROOT = (0.0, 17.0, 0.0, 0.0, 0.0, 0.0)


def standing_motion(frames: int = 2) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A still standing T-pose: ({bone: zeros (T, dof)}, root (T, 6))."""
    dofs = {b.name: np.zeros((frames, len(b.dof))) for b in cmu_bones() if b.dof}
    return dofs, np.tile(np.asarray(STANDING_ROOT, dtype=np.float64), (frames, 1))


# ---------------------------------------------------------------------------------- ASF/AMC


def write_asf(path: str | Path, drop: tuple[str, ...] = ()) -> Path:
    """Write the CMU skeleton as an ASF file (bones in ``drop`` and below left out)."""
    path = Path(path)
    bones = [b for b in cmu_bones() if not _dropped(b.name, drop)]
    out = [
        "# AST/ASF file generated for tests",
        ":version 1.10",
        ":name VICON",
        ":units",
        "  mass 1.0",
        f"  length {ASF_LENGTH_UNIT}",
        "  angle deg",
        ":documentation",
        "   test skeleton",
        ":root",
        "   order TX TY TZ RX RY RZ",
        "   axis XYZ",
        "   position 0 0 0",
        "   orientation 0 0 0",
        ":bonedata",
    ]
    for i, b in enumerate(bones, start=1):
        out += [
            "  begin",
            f"     id {i}",
            f"     name {b.name}",
            "     direction " + " ".join(f"{v:.6f}" for v in b.direction),
            f"     length {b.length:.6f}",
            "     axis " + " ".join(f"{v:g}" for v in b.axis) + "  XYZ",
        ]
        if b.dof:
            out.append("    dof " + " ".join(b.dof))
            out.append("    limits " + "\n           ".join("(-180.0 180.0)" for _ in b.dof))
        out.append("  end")
    out += [":hierarchy", "  begin"]
    children: dict[str, list[str]] = {}
    for b in bones:
        children.setdefault(b.parent, []).append(b.name)
    for parent, kids in children.items():
        out.append(f"    {parent} " + " ".join(kids))
    out += ["  end", ""]
    path.write_text("\n".join(out))
    return path


def write_amc(
    path: str | Path, dofs: dict[str, np.ndarray], root: np.ndarray, header_asf: str | None = None
) -> Path:
    """Write an AMC motion: ``dofs`` {bone: (T, len(dof)) degrees}, ``root`` (T, 6)."""
    path = Path(path)
    root = np.asarray(root, dtype=np.float64)
    out = [f"#!OML:ASF {header_asf}" if header_asf else "#!OML:ASF skeleton.asf"]
    out += [":FULLY-SPECIFIED", ":DEGREES"]
    for t in range(root.shape[0]):
        out.append(str(t + 1))
        out.append("root " + " ".join(f"{v:.6f}" for v in root[t]))
        for name, values in dofs.items():
            out.append(f"{name} " + " ".join(f"{v:.6f}" for v in np.atleast_1d(values[t])))
    path.write_text("\n".join(out) + "\n")
    return path


def _dropped(name: str, drop: tuple[str, ...]) -> bool:
    parents = {b.name: b.parent for b in cmu_bones()}
    while name in parents:
        if name in drop:
            return True
        name = parents[name]
    return False


# -------------------------------------------------------------------------------------- BVH


def _euler_xyz_first(angles_deg: np.ndarray, axes: str) -> np.ndarray:
    """Rotation for angles about ``axes`` applied first-listed first: R_last ... R_first."""
    from scipy.spatial.transform import Rotation

    # Lower-case axes in scipy are extrinsic: the first listed is applied first.
    return Rotation.from_euler(axes.lower(), angles_deg, degrees=True).as_matrix()


def asf_local_rotation(bone: AsfBone, values: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotation of ``bone`` relative to its parent: C M C^-1 (world axes)."""
    c = _euler_xyz_first(np.asarray(bone.axis, dtype=np.float64), "xyz")
    axes = "".join(d[1] for d in bone.dof)
    m = _euler_xyz_first(np.asarray(values, dtype=np.float64), axes)
    return c @ m @ c.T


def write_bvh(
    path: str | Path,
    dofs: dict[str, np.ndarray] | None = None,
    root: np.ndarray | None = None,
    frames: int = 2,
    fps: float = 120.0,
    unit_scale: float = 1.0,
    drop: tuple[str, ...] = (),
    channel_order: str = "ZYX",
) -> Path:
    """Write a CMU-named BVH of the given ASF-style motion (default: standing still).

    Args:
        unit_scale: file units per ASF unit (1: the CMU BVH unit; ``METRES_PER_UNIT*100``
            writes centimetres).
        drop: ASF bones left out, with everything below them.
        channel_order: the rotation channel order written for every joint.
    """
    from scipy.spatial.transform import Rotation

    path = Path(path)
    if dofs is None or root is None:
        dofs, root = standing_motion(frames)
    root = np.asarray(root, dtype=np.float64)
    t = root.shape[0]
    bones = {b.name: b for b in cmu_bones() if not _dropped(b.name, drop)}
    children: dict[str, list[str]] = {}
    for b in bones.values():
        children.setdefault(b.parent, []).append(b.name)

    order: list[str] = []
    lines = ["HIERARCHY"]
    rot_channels = " ".join(f"{a}rotation" for a in channel_order)

    def vec(v) -> str:
        return " ".join(f"{x * unit_scale:.6f}" for x in v)

    def emit(name: str, depth: int) -> None:
        pad = "  " * depth
        order.append(name)
        if name == "root":
            lines.append(f"ROOT {ASF_TO_BVH[name]}")
            lines.append("{")
            lines.append(f"{pad}  OFFSET 0.000000 0.000000 0.000000")
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {rot_channels}")
        else:
            parent = bones[name].parent
            offset = (
                np.zeros(3)
                if parent == "root"
                else np.asarray(bones[parent].direction) * bones[parent].length
            )
            lines.append(f"{pad}JOINT {ASF_TO_BVH[name]}")
            lines.append(f"{pad}{{")
            lines.append(f"{pad}  OFFSET {vec(offset)}")
            lines.append(f"{pad}  CHANNELS 3 {rot_channels}")
        kids = children.get(name, [])
        for kid in kids:
            emit(kid, depth + 1)
        if not kids and name != "root":
            end = np.asarray(bones[name].direction) * bones[name].length
            lines.extend(
                [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {vec(end)}", f"{pad}  }}"]
            )
        lines.append(f"{pad}}}")

    emit("root", 0)
    columns = []
    for name in order:
        if name == "root":
            c = _euler_xyz_first(np.zeros(3), "xyz")
            local = c @ _euler_xyz_first(root[:, 3:], "xyz") @ c.T
            columns.append(root[:, :3] * unit_scale)
        else:
            bone = bones[name]
            values = dofs.get(name, np.zeros((t, len(bone.dof))))
            local = (
                asf_local_rotation(bone, values)
                if bone.dof
                else np.broadcast_to(np.eye(3), (t, 3, 3))
            )
        # Upper-case axes in scipy are intrinsic: R = R_first @ R_second @ R_third (BVH).
        columns.append(Rotation.from_matrix(local).as_euler(channel_order, degrees=True))
    motion = np.concatenate(columns, axis=1)  # (T, channels)
    lines += ["MOTION", f"Frames: {t}", f"Frame Time: {1.0 / fps:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in motion]
    path.write_text("\n".join(lines) + "\n")
    return path
