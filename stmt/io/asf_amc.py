"""Acclaim ASF/AMC motion (the CMU mocap database, HDM05): parsed, never posed here.

The ``.amc`` file holds the motion; its skeleton is the ``.asf`` beside it. In the
CMU layout ``subjects/NN/NN.asf`` goes with ``subjects/NN/NN_MM.amc``, so for
``NN_MM.amc`` the reader tries ``NN.asf``, then ``NN_MM.asf``, then the file the AMC
header names (``#!OML:ASF ...``), then the only ``.asf`` in the folder.

ASF semantics (as in the CMU tools): each bone has a rest ``direction`` and ``length``
in world axes and an ``axis`` frame ``C`` (Euler angles, e.g. ``XYZ``: ``C = Rz Ry Rx``).
An AMC frame gives each bone's degrees of freedom, ``M`` (``rx ry rz``: ``M = Rz Ry Rx``);
the bone's rotation relative to its parent, in world-aligned axes, is ``C M C^-1``.
Lengths are in ``1/length`` inches (``:units length 0.45`` in CMU files); angles in
degrees unless ``:units angle rad``. The world is Y up; CMU motion is 120 frames/s.

The motion keeps the ASF bone names; :mod:`stmt.retarget`'s "acclaim" rig maps them
(``lfemur`` -> ``LeftUpLeg``, ``thorax`` -> ``Spine1``, ...; a joint sits at the start
of its ASF bone). :data:`ASF_TO_BVH` gives the CMU BVH names of the same bones.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stmt import limits
from stmt.errors import InputError
from stmt.io.bvh import euler_matrices
from stmt.io.text import not_finite, numbers, open_text, read_lines, whole_number
from stmt.motion import SkeletonMotion

CMU_FPS = 120.0

# ASF bone -> CMU BVH joint (as in the cgspeed BVH conversion of the CMU database).
ASF_TO_BVH = {
    "root": "Hips",
    "lhipjoint": "LHipJoint", "lfemur": "LeftUpLeg", "ltibia": "LeftLeg",
    "lfoot": "LeftFoot", "ltoes": "LeftToeBase",
    "rhipjoint": "RHipJoint", "rfemur": "RightUpLeg", "rtibia": "RightLeg",
    "rfoot": "RightFoot", "rtoes": "RightToeBase",
    "lowerback": "LowerBack", "upperback": "Spine", "thorax": "Spine1",
    "lowerneck": "Neck", "upperneck": "Neck1", "head": "Head",
    "lclavicle": "LeftShoulder", "lhumerus": "LeftArm", "lradius": "LeftForeArm",
    "lwrist": "LeftHand", "lhand": "LeftFingerBase", "lfingers": "LeftHandIndex1",
    "lthumb": "LThumb",
    "rclavicle": "RightShoulder", "rhumerus": "RightArm", "rradius": "RightForeArm",
    "rwrist": "RightHand", "rhand": "RightFingerBase", "rfingers": "RightHandIndex1",
    "rthumb": "RThumb",
}  # fmt: skip

_INCH = 0.0254


@dataclass
class Bone:
    name: str
    direction: np.ndarray  # (3,) unit vector, world axes
    length: float  # file units
    axis: np.ndarray  # (3,) angles of the bone frame C
    axis_order: str  # e.g. "XYZ"
    dof: list[str] = field(default_factory=list)  # e.g. ["rx", "ry", "rz"]


@dataclass
class ASF:
    """A parsed ASF skeleton, in its own units.

    Attributes:
        length_unit: metres per file length unit.
        degrees: angles are in degrees (else radians).
        root_order: the AMC root channels, e.g. ["TX", "TY", "TZ", "RX", "RY", "RZ"].
        root_axis_order, root_position, root_orientation: the root's frame.
        bones: the bones by name (without the root).
        children: parent name -> child names, from ``:hierarchy``.
    """

    length_unit: float
    degrees: bool
    root_order: list[str]
    root_axis_order: str
    root_position: np.ndarray
    root_orientation: np.ndarray
    bones: dict[str, Bone]
    children: dict[str, list[str]]

    def order(self) -> list[tuple[str, str | None]]:
        """(bone, parent) pairs, the root first, parents before children."""
        out: list[tuple[str, str | None]] = [("root", None)]
        seen = {"root"}
        i = 0
        while i < len(out):
            name = out[i][0]
            for c in self.children.get(name, []):
                if c not in seen:  # parse_asf refuses cycles; this only keeps order() finite
                    seen.add(c)
                    out.append((c, name))
            i += 1
        return out


def _error(path: Path, n: int, message: str) -> InputError:
    return InputError(path, f"line {n}: {message}")


def _values(
    path: Path, n: int, parts: list[str], count: int, what: str, text: str | None = None
) -> list[float]:
    """The ``count`` numbers ``parts`` (the words of ``text``, when given: the line is
    then checked in one pass, which is what keeps AMC frames fast)."""
    if len(parts) != count:
        raise _error(path, n, f"expected {count} numbers for {what}, found {len(parts)}")
    values = numbers(parts, text)  # the exporters' grammar (stmt.io.text), not float()'s
    if isinstance(values, str):
        if not_finite(values):
            raise _error(path, n, f"NaN or Inf in {what}")
        raise _error(path, n, f"non-numeric value in {what}: {values!r}")
    if not all(map(math.isfinite, values)):  # a literal beyond float's range (1e999)
        raise _error(path, n, f"NaN or Inf in {what}")
    return values


def _floats(path: Path, n: int, parts: list[str], count: int, what: str) -> np.ndarray:
    return np.array(_values(path, n, parts, count, what), dtype=np.float64)


_ROOT_CHANNELS = ("TX", "TY", "TZ", "RX", "RY", "RZ")
_TURN = 2 * np.pi  # a joint angle in radians beyond a full turn is one written in degrees


def _angle_unit(word: str) -> bool | None:
    """True for degrees (``deg``, ``degrees``), False for radians, None for neither."""
    word = word.lower()
    if word in ("deg", "degs", "degree", "degrees"):
        return True
    if word in ("rad", "rads", "radian", "radians"):
        return False
    return None


def amc_angle_unit(path: Path) -> bool | None:
    """The angle unit an AMC file declares in its header (``:DEGREES`` -> True,
    ``:RADIANS`` -> False), None when it says neither (the ASF's unit then holds)."""
    with open_text(path) as f:
        for n, raw in read_lines(f, path):
            line = raw.strip()
            if line.startswith(":"):
                unit = _angle_unit(line[1:])
                if unit is not None:
                    return unit
            elif line and not line.startswith("#") or n > 100:
                return None  # the frames begin: the header is over
    return None


def check_angle_units(
    asf_path: Path, asf: ASF, amc_path: Path, values: dict[str, np.ndarray], amc_degrees: bool
) -> None:
    """Refuse angles a declared unit cannot hold: a file that declares radians (the ASF's
    ``:units angle rad``, an AMC's ``:RADIANS``) but has a bone axis or a joint angle
    beyond a full turn (the root, which may turn round and round, aside) was written in
    degrees. One InputError naming the file, the bone and the value."""
    if not asf.degrees:
        for name, bone in [("root", None), *asf.bones.items()]:
            axis = asf.root_orientation if bone is None else bone.axis
            if np.abs(axis).max(initial=0) > _TURN:
                raise InputError(
                    asf_path,
                    f"declares angles in radians (':units angle rad') but the axis of bone "
                    f"{name!r} is {' '.join(f'{a:g}' for a in axis)}, which only degrees can "
                    "be; fix its ':units angle' line",
                )
    if not amc_degrees:
        for name, v in values.items():
            bone = asf.bones.get(name)
            if bone is None:  # the root
                continue
            rot = [k for k, d in enumerate(bone.dof) if d.startswith("r")]
            peak = float(np.abs(v[:, rot]).max(initial=0)) if rot else 0.0
            if peak > _TURN:
                where = (
                    "its header's :RADIANS"
                    if amc_angle_unit(amc_path) is False
                    else (f"its skeleton {asf_path.name}'s ':units angle rad'")
                )
                raise InputError(
                    amc_path,
                    f"angles are declared in radians ({where}) but bone {name!r} turns by "
                    f"{peak:.3g}, which only degrees can be; fix the declaration",
                )


def _axis_order(path: Path, n: int, text: str, bone: str) -> str:
    """An Euler axis order such as ``XYZ``: one to three distinct letters X, Y, Z."""
    order = text.upper()
    if not (1 <= len(order) <= 3 and set(order) <= set("XYZ") and len(set(order)) == len(order)):
        raise _error(path, n, f"axis order {text!r} of {bone!r}: expected e.g. XYZ")
    return order


def parse_asf(path: str | Path) -> ASF:
    """Read an ASF skeleton. Raises InputError naming the line on malformed input."""
    path = Path(path)
    limits.check_text_size(path)
    try:
        with open_text(path) as f:  # UTF-8, or what its byte-order mark says
            return _parse_asf(f, path)
    except OSError as e:
        raise InputError(path, f"cannot read the ASF skeleton ({e.strerror})") from None


_SECTIONS = (":units", ":documentation", ":root", ":bonedata", ":hierarchy", ":skin")


def _parse_asf(f, path: Path) -> ASF:
    """The ASF of the lines of ``f``: each section's lines read by its reader of
    :class:`_AsfReader`, then the skeleton checked (:meth:`_AsfReader.skeleton`)."""
    reader = _AsfReader(path)
    section = None
    for n, raw in read_lines(f, path):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        key = parts[0].lower()
        if key.startswith(":"):
            section, reader.in_limits = key, False
            if key not in (":name", ":version", *_SECTIONS):
                raise _error(path, n, f"unknown ASF section {parts[0]!r}")
            continue
        read = {":units": reader.units, ":root": reader.root, ":bonedata": reader.bonedata,
                ":hierarchy": reader.hierarchy}.get(section)  # fmt: skip
        if read is not None:
            read(key, parts, n)
    return reader.skeleton()


class _AsfReader:
    """What the sections of an ASF file say, line by line (:func:`_parse_asf`)."""

    def __init__(self, path: Path):
        self.path = path
        self.length, self.degrees = 1.0, True
        self.root_order = ["TX", "TY", "TZ", "RX", "RY", "RZ"]
        self.root_axis, self.root_pos, self.root_orient = "XYZ", np.zeros(3), np.zeros(3)
        self.bones: dict[str, Bone] = {}
        self.children: dict[str, list[str]] = {}
        self.parent_of: dict[str, tuple[str, int]] = {}  # bone -> (parent, :hierarchy line)
        self.bone: Bone | None = None
        self.in_limits = False

    def units(self, key: str, parts: list[str], n: int) -> None:
        path = self.path
        if key == "length" and len(parts) == 2:
            self.length = float(_floats(path, n, parts[1:], 1, "length")[0])
            if self.length <= 0:
                raise _error(path, n, f"length unit must be positive, found {self.length}")
        elif key == "angle" and len(parts) == 2:
            self.degrees = _angle_unit(parts[1])
            if self.degrees is None:
                raise _error(path, n, f"angle unit {parts[1]!r}: expected deg or rad")

    def root(self, key: str, parts: list[str], n: int) -> None:
        path = self.path
        if key == "order":
            self.root_order = [p.upper() for p in parts[1:]]
            bad = [p for p in self.root_order if p not in _ROOT_CHANNELS]
            if bad or len(set(self.root_order)) != len(self.root_order):
                raise _error(path, n, f"root order {' '.join(parts[1:])!r}: expected distinct "
                             "channels among TX TY TZ RX RY RZ")  # fmt: skip
        elif key == "axis" and len(parts) == 2:
            self.root_axis = _axis_order(path, n, parts[1], "root")
        elif key == "position":
            self.root_pos = _floats(path, n, parts[1:], 3, "root position")
        elif key == "orientation":
            self.root_orient = _floats(path, n, parts[1:], 3, "root orientation")

    def bonedata(self, key: str, parts: list[str], n: int) -> None:
        path, bone = self.path, self.bone
        if key == "begin":
            self.bone = Bone("", np.zeros(3), 0.0, np.zeros(3), "XYZ")
        elif key == "end":
            if bone is None or not bone.name:
                raise _error(path, n, "bone block without a name")
            self.bones[bone.name] = bone
            limits.check_joints(path, len(self.bones) + 1)
            self.bone, self.in_limits = None, False
        elif bone is None:
            raise _error(path, n, f"expected 'begin' in :bonedata, found {parts[0]!r}")
        elif key == "name" and len(parts) == 2:
            bone.name = parts[1]
        elif key == "direction":
            d = _floats(path, n, parts[1:], 3, "direction")
            norm = np.linalg.norm(d)
            bone.direction = d / norm if norm > 0 else d
        elif key == "length":
            bone.length = float(_floats(path, n, parts[1:], 1, "length")[0])
        elif key == "axis":
            bone.axis = _floats(path, n, parts[1:4], 3, "axis")
            bone.axis_order = _axis_order(path, n, parts[4], bone.name) if len(parts) > 4 else "XYZ"
        elif key == "dof":
            bone.dof = [p.lower() for p in parts[1:]]
            bad = [d for d in bone.dof if d not in ("rx", "ry", "rz", "tx", "ty", "tz", "l")]
            if bad:
                raise _error(path, n, f"unknown dof {bad[0]!r} for bone {bone.name!r}")
        elif key == "limits" or self.in_limits:
            self.in_limits = True  # limits are not needed to replay a motion

    def hierarchy(self, key: str, parts: list[str], n: int) -> None:
        if key in ("begin", "end"):
            return
        for kid in parts[1:]:
            if kid == "root":
                raise _error(self.path, n, f"bone 'root' listed as a child of {parts[0]!r}")
            if kid in self.parent_of:
                first, at = self.parent_of[kid]
                raise _error(
                    self.path,
                    n,
                    f"bone {kid!r} has two parents in :hierarchy, {first!r} (line {at}) "
                    f"and {parts[0]!r}",
                )
            self.parent_of[kid] = (parts[0], n)
        self.children.setdefault(parts[0], []).extend(parts[1:])

    def skeleton(self) -> ASF:
        """The ASF read, its bones and :hierarchy checked to form one tree from the root."""
        path, bones = self.path, self.bones
        if not bones:
            raise InputError(path, "no :bonedata bones found (not an ASF skeleton file?)")
        known = set(bones) | {"root"}
        for parent, kids in self.children.items():
            for name in [parent, *kids]:
                if name not in known:
                    raise InputError(path, f":hierarchy names bone {name!r}, which :bonedata lacks")
        asf = ASF(
            length_unit=_INCH / self.length,
            degrees=self.degrees,
            root_order=self.root_order,
            root_axis_order=self.root_axis,
            root_position=self.root_pos,
            root_orientation=self.root_orient,
            bones=bones,
            children=self.children,
        )
        self._check_connected(asf)
        return asf

    def _check_connected(self, asf: ASF) -> None:
        reached = {b for b, _ in asf.order()}
        lost = sorted(set(self.bones) - reached)
        parent_of = self.parent_of
        for name in lost:  # each bone has one parent at most: a lost bone may sit on a cycle
            walk, b = [], name
            while b in parent_of and b not in walk:
                walk.append(b)
                b = parent_of[b][0]
            if b in walk:
                loop = walk[walk.index(b) :] + [b]
                raise InputError(
                    self.path,
                    f"line {parent_of[b][1]}: :hierarchy has a cycle through bone {b!r} "
                    f"({' -> '.join(reversed(loop))})",
                )
        if lost:
            raise InputError(
                self.path, f":hierarchy does not connect bones {', '.join(lost)} to the root"
            )


def parse_amc(path: str | Path, asf: ASF, fps: float = CMU_FPS) -> dict[str, np.ndarray]:
    """Read AMC frames: bone name -> (T, number of values) in file units and angles.

    Read line by line into compact buffers; the frame count is held to
    :mod:`stmt.limits` (at ``fps``) as the frames come in."""
    path = Path(path)
    limits.check_text_size(path)
    width = {name: len(b.dof) for name, b in asf.bones.items()}
    width["root"] = len(asf.root_order)
    cap = limits.max_frames()
    values = {name: array("d") for name, w in width.items() if w}
    frames = 0
    in_frame: set[str] = set()

    def close_frame(n: int) -> None:
        for name, w in width.items():
            if w and name not in in_frame:
                raise InputError(path, f"frame {frames} lacks bone {name!r}")

    try:
        with open_text(path) as f:
            for n, raw in read_lines(f, path):
                line = raw.strip()
                if not line or line.startswith(("#", ":")):
                    continue
                parts = line.split()
                if len(parts) == 1 and whole_number(parts[0]) is not None:
                    if whole_number(parts[0]) != frames + 1:
                        raise _error(path, n, f"expected frame {frames + 1}, found {parts[0]}")
                    if frames:
                        close_frame(n)
                    frames += 1
                    if frames > cap:
                        limits.check_frames(path, frames)
                    if frames / fps > limits.max_duration_s():
                        limits.check_frames(path, frames, fps)
                    in_frame.clear()
                    continue
                if not frames:
                    raise _error(path, n, f"expected a frame number, found {parts[0]!r}")
                name = parts[0]
                if name not in width:
                    raise _error(path, n, f"bone {name!r} is not in the ASF skeleton")
                if name in in_frame:
                    raise _error(path, n, f"bone {name!r} appears twice in frame {frames}")
                in_frame.add(name)
                rest = line[len(name) :]  # the numbers after the bone's name
                row = _values(path, n, parts[1:], width[name], f"bone {name}", rest)
                if width[name]:
                    values[name].extend(row)
    except OSError as e:
        raise InputError(path, f"cannot read the AMC motion ({e.strerror})") from None
    if not frames:
        raise InputError(path, "no frames found (not an AMC motion file?)")
    close_frame(0)
    return {
        name: np.frombuffer(buf, dtype=np.float64).reshape(frames, width[name])  # (T, w)
        for name, buf in values.items()
    }


def find_asf(amc_path: Path) -> Path:
    """The ASF skeleton of an AMC file (see the module docstring), else InputError."""
    folder, stem = amc_path.parent, amc_path.stem
    tried = []
    if "_" in stem:
        tried.append(folder / f"{stem.split('_', 1)[0]}.asf")
    # HDM05: HDM_mm_<motion>_<nnn>_120.amc goes with HDM_mm.asf (shorter prefixes last).
    parts = stem.split("_")
    tried.extend(folder / f"{'_'.join(parts[:k])}.asf" for k in range(len(parts) - 1, 1, -1))
    tried.append(folder / f"{stem}.asf")
    try:
        with open_text(amc_path) as f:
            head = [f.readline(4096) for _ in range(5)]
        for line in head:
            if line.upper().startswith("#!OML:ASF"):
                named = line.split(maxsplit=1)[1].strip() if len(line.split()) > 1 else ""
                name = named.replace("\\", "/").rsplit("/", 1)[-1]
                if name:
                    tried.append(folder / name)
    except OSError as e:
        raise InputError(amc_path, f"cannot read the AMC motion ({e.strerror})") from None
    for candidate in tried:
        if candidate.is_file():
            return candidate
    found = sorted(folder.glob("*.asf")) + sorted(folder.glob("*.ASF"))
    if len(found) == 1:
        return found[0]
    others = f"; {len(found)} .asf files in the folder, so none is chosen" if found else ""
    raise InputError(
        amc_path,
        "no ASF skeleton found for this AMC motion; tried "
        + ", ".join(str(p) for p in dict.fromkeys(tried))
        + others
        + " (put the .asf beside the .amc, e.g. 01.asf for 01_02.amc)",
    )


def _rotation(values: np.ndarray, axes: str, degrees: bool) -> np.ndarray:
    """(T, n) angles about ``axes``, the first listed applied first -> (T, 3, 3)."""
    # R = R_last ... R_first is the intrinsic product in reversed order.
    return euler_matrices(values[:, ::-1], axes[::-1], degrees=degrees)


def amc_motion(
    path: str | Path, asf_path: str | Path | None = None, fps: float = CMU_FPS
) -> SkeletonMotion:
    """Parse an AMC motion with its ASF skeleton into a :class:`~stmt.motion.SkeletonMotion`
    (ASF bone names, the ASF's length unit, Y up).

    Args:
        path: the ``.amc`` file.
        asf_path: its ``.asf`` skeleton; default: found beside it (module docstring).
        fps: frames per second (AMC files do not store it; CMU and HDM05 motion is 120).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such AMC file")
    asf_file = Path(asf_path) if asf_path is not None else find_asf(path)
    if not asf_file.is_file():
        raise InputError(path, f"its ASF skeleton {asf_file} does not exist")
    fps = limits.check_fps(path, fps, "fps")
    asf = parse_asf(asf_file)
    values = parse_amc(path, asf, fps)
    declared = amc_angle_unit(path)
    amc_degrees = asf.degrees if declared is None else declared  # the AMC's own, else the ASF's
    check_angle_units(asf_file, asf, path, values, amc_degrees)
    order = asf.order()
    names = [b for b, _ in order]
    index = {b: i for i, b in enumerate(names)}
    t = next(iter(values.values())).shape[0] if values else 1

    offsets = np.zeros((len(names), 3))
    ends = np.zeros((len(names), 3))
    local = np.broadcast_to(np.eye(3), (t, len(names), 3, 3)).copy()
    for i, (name, parent) in enumerate(order):
        if name == "root":
            offsets[i] = asf.root_position
            c = _rotation(asf.root_orientation[None], asf.root_axis_order, asf.degrees)[0]
            rot_cols = [k for k, ch in enumerate(asf.root_order) if ch.startswith("R")]
            if rot_cols and "root" in values:
                axes = "".join(asf.root_order[k][1] for k in rot_cols)
                m = _rotation(values["root"][:, rot_cols], axes, amc_degrees)
                local[:, i] = c @ m @ c.T
            continue
        bone = asf.bones[name]
        if parent != "root":  # a joint sits where its parent bone ends
            up = asf.bones[parent]
            offsets[i] = up.direction * up.length
        if not asf.children.get(name):
            ends[i] = bone.direction * bone.length
        rot_dof = [k for k, d in enumerate(bone.dof) if d.startswith("r")]
        if rot_dof and name in values:
            axes = "".join(bone.dof[k][1].upper() for k in rot_dof)
            c = _rotation(bone.axis[None], bone.axis_order, asf.degrees)[0]
            m = _rotation(values[name][:, rot_dof], axes, amc_degrees)
            local[:, i] = c @ m @ c.T
    translations = np.broadcast_to(offsets, (t,) + offsets.shape).copy()
    if "root" in values:
        for k, ch in enumerate(asf.root_order):
            if ch.startswith("T"):
                translations[:, 0, "XYZ".index(ch[1])] = values["root"][:, k]
    return SkeletonMotion(
        names=tuple(names),
        parents=tuple(-1 if p is None else index[p] for _, p in order),
        offsets=offsets,
        end_offsets=ends,
        rotations=local,
        translations=translations,
        fps=float(fps),
        unit=asf.length_unit,
        up="y",
        source=path,
        format="asf-amc",
    )
