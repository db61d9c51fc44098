"""Small sample MoCap files, one per supported format (``stmt synth --samples``).

Three motions from the synthetic generator (:mod:`stmt.data.synth`), each a
different action, written in the three formats a newcomer may have:

- ``walk.npz``: AMASS SMPL+H ``.npz``, exactly as ``stmt synth`` writes its clips
  (``poses`` (T, 156), ``trans``, ``betas``, ``gender``, ``mocap_framerate``, ``dmpls``);
  read on the free anny body.
- ``jump.bvh``: BVH with the CMU skeleton (cgspeed joint names, Y up, CMU units), the
  SMPL motion written as CMU joint rotations (see :func:`smpl_to_cmu`).
- ``wave_mesh.npz``: a mesh sequence (``vertices`` (T, V, 3) float16, ``faces`` int32,
  ``fps``) of anny's full mesh posed with the motion, at 15 frames/s.
- ``README.md``: what each file is and how it was made.

The motions come from a test-split subject of the default synthetic dataset (unseen
in training), each with its own fixed random stream, so the same ``seed`` writes
the same files.

BVH conversion. The CMU skeleton written here has SMPL's rest offsets (those anny's
SMPL retargeting uses, :func:`stmt.body.anny.smpl_skeleton`) under the CMU names, so a
SMPL joint's local rotation is the matching CMU joint's local rotation (both rest
poses are T-poses with joint frames along the world axes, Y up, facing +Z). Joints
without a SMPL partner (``LHipJoint``, ``RHipJoint``, ``Neck1``) keep the identity;
``Neck1`` sits halfway between neck and head. The root rotation is AMASS's world
rotation with the Z-up turn undone: the BVH world is Y up, and stmt's BVH reader
maps it back with (x, y, z) -> (x, -z, y). Read back, the BVH poses anny like the
AMASS file of the same motion (tested in ``tests/test_samples.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stmt.body.anny import SMPL_JOINT_NAMES, pose_from_smpl, rest_mesh, smpl_skeleton
from stmt.data import synth
from stmt.fileio import atomic_text, atomic_write, new_folder
from stmt.motion import axis_angle_to_matrix
from stmt.retarget import UNITS

MESH_FPS = 15.0  # the mesh sample keeps every second synth frame (30 -> 15 frames/s)

# CMU BVH joints (cgspeed names), parents first: (name, parent, SMPL joint or None).
_CMU_JOINTS: tuple[tuple[str, str | None, str | None], ...] = (
    ("Hips", None, "pelvis"),
    ("LHipJoint", "Hips", None),
    ("LeftUpLeg", "LHipJoint", "left_hip"),
    ("LeftLeg", "LeftUpLeg", "left_knee"),
    ("LeftFoot", "LeftLeg", "left_ankle"),
    ("LeftToeBase", "LeftFoot", "left_foot"),
    ("RHipJoint", "Hips", None),
    ("RightUpLeg", "RHipJoint", "right_hip"),
    ("RightLeg", "RightUpLeg", "right_knee"),
    ("RightFoot", "RightLeg", "right_ankle"),
    ("RightToeBase", "RightFoot", "right_foot"),
    ("LowerBack", "Hips", "spine1"),
    ("Spine", "LowerBack", "spine2"),
    ("Spine1", "Spine", "spine3"),
    ("Neck", "Spine1", "neck"),
    ("Neck1", "Neck", None),
    ("Head", "Neck1", "head"),
    ("LeftShoulder", "Spine1", "left_collar"),
    ("LeftArm", "LeftShoulder", "left_shoulder"),
    ("LeftForeArm", "LeftArm", "left_elbow"),
    ("LeftHand", "LeftForeArm", "left_wrist"),
    ("RightShoulder", "Spine1", "right_collar"),
    ("RightArm", "RightShoulder", "right_shoulder"),
    ("RightForeArm", "RightArm", "right_elbow"),
    ("RightHand", "RightForeArm", "right_wrist"),
)

# Y-up world -> Z-up world, (x, y, z) -> (x, -z, y): what stmt's BVH reader applies.
_Y_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class Sample:
    """One sample file: its name, true action, format and how long it lasts."""

    file: str
    action: str
    format: str
    frames: int
    fps: float
    description: str

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


# ------------------------------------------------------------------------------ BVH


def write_bvh(
    path: Path,
    names: list[str],
    parents: list[int],
    offsets: np.ndarray,
    end_offsets: np.ndarray,
    local: np.ndarray,
    root_positions: np.ndarray,
    fps: float,
) -> Path:
    """Write a BVH file (atomically) from local joint rotations.

    Args:
        names, parents: joints, parents first (``parents[0] == -1``).
        offsets: (J, 3) each joint's rest offset from its parent, file units.
        end_offsets: (J, 3) ``End Site`` offset of each leaf joint, file units.
        local: (T, J, 3, 3) rotation of each joint relative to its parent in the
            world-aligned rest frame (``G_j = G_parent @ R_j``, rest = identities).
        root_positions: (T, 3) the root joint's position, file units.
        fps: frames per second.

    Every joint gets ``Zrotation Yrotation Xrotation`` channels (R = Rz @ Ry @ Rx, as the
    CMU conversions); the root also ``Xposition Yposition Zposition`` first.
    """
    from scipy.spatial.transform import Rotation

    t, j = local.shape[:2]
    children: dict[int, list[int]] = {}
    for c, p in enumerate(parents):
        children.setdefault(p, []).append(c)
    lines = ["HIERARCHY"]

    def vec(v) -> str:
        return " ".join(f"{x:.6f}" for x in v)

    def emit(c: int, depth: int) -> None:
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if c == 0 else 'JOINT'} {names[c]}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {vec(offsets[c])}")
        pos = "Xposition Yposition Zposition " if c == 0 else ""
        lines.append(f"{pad}  CHANNELS {6 if c == 0 else 3} {pos}Zrotation Yrotation Xrotation")
        for kid in children.get(c, []):
            emit(kid, depth + 1)
        if c not in children:
            end = vec(end_offsets[c])
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {end}", f"{pad}  }}"])
        lines.append(pad + "}")

    emit(0, 0)
    # Upper-case axes are intrinsic in scipy: "ZYX" gives R = Rz @ Ry @ Rx, the BVH order.
    euler = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler("ZYX", degrees=True)
    euler = euler.reshape(t, j * 3)  # (T, J*3), joints in file order (parents first = DFS)
    order = []

    def dfs(c: int) -> None:
        order.append(c)
        for kid in children.get(c, []):
            dfs(kid)

    dfs(0)
    cols = [root_positions] + [euler[:, 3 * c : 3 * c + 3] for c in order]
    motion = np.concatenate(cols, axis=1)  # (T, 3 + 3 J)
    lines += ["MOTION", f"Frames: {t}", f"Frame Time: {1.0 / fps:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in motion]
    text = "\n".join(lines) + "\n"
    atomic_text(path, text)
    return path


def cmu_skeleton() -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """The CMU-named skeleton with SMPL's rest offsets: (names, parents, offsets (J, 3)
    metres, end_offsets (J, 3) metres), Y up, facing +Z. The root offset is zero (its
    position goes in the motion channels)."""
    smpl = smpl_skeleton()
    index = {n: i for i, n in enumerate(smpl.names)}
    names = [n for n, _, _ in _CMU_JOINTS]
    parents = [-1 if p is None else names.index(p) for _, p, _ in _CMU_JOINTS]
    offsets = np.zeros((len(names), 3))
    ends = np.zeros((len(names), 3))
    for c, (name, _, joint) in enumerate(_CMU_JOINTS):
        if joint is not None and c > 0:
            offsets[c] = smpl.offsets[index[joint]]
            ends[c] = smpl.end_offsets[index[joint]]
    half_neck = 0.5 * smpl.offsets[index["head"]]  # Neck1 halfway between neck and head
    offsets[names.index("Neck1")] = half_neck
    offsets[names.index("Head")] = half_neck
    return names, parents, offsets, ends


def smpl_to_cmu(poses: np.ndarray, trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AMASS SMPL parameters -> CMU joint rotations of :func:`cmu_skeleton`.

    Args:
        poses: (T, >=66) AMASS axis-angles (root orientation, then 21 body joints).
        trans: (T, 3) AMASS translation, metres, Z up.

    Returns:
        local: (T, J, 3, 3) local rotations in :func:`cmu_skeleton`'s joint order.
        root: (T, 3) the Hips position in the Y-up BVH world, metres.
    """
    t = poses.shape[0]
    smpl_local = axis_angle_to_matrix(np.asarray(poses, np.float64)[:, :66].reshape(t, 22, 3))
    local = np.broadcast_to(np.eye(3), (t, len(_CMU_JOINTS), 3, 3)).copy()
    for c, (_, _, joint) in enumerate(_CMU_JOINTS):
        if joint is not None:
            local[:, c] = smpl_local[:, SMPL_JOINT_NAMES.index(joint)]
    local[:, 0] = _Y_TO_Z_UP.T @ local[:, 0]  # AMASS Z-up world -> BVH Y-up world
    pelvis = np.asarray(trans, np.float64) + smpl_skeleton().offsets[0]  # (T, 3), as SMPL
    return local, pelvis @ _Y_TO_Z_UP  # row-vector form of _Y_TO_Z_UP.T @ p


def write_cmu_bvh(path: Path, poses: np.ndarray, trans: np.ndarray, fps: float) -> Path:
    """Write AMASS SMPL parameters as a CMU-skeleton BVH in CMU units (1/0.45 inch)."""
    names, parents, offsets, ends = cmu_skeleton()
    local, root = smpl_to_cmu(poses, trans)
    unit = UNITS["cmu"]  # metres per file unit
    return write_bvh(path, names, parents, offsets / unit, ends / unit, local, root / unit, fps)


# --------------------------------------------------------------------------- samples


# Sample action -> (shortest, longest) seconds, and whether it is placed at the origin
# (the float16 mesh sample: smallest coordinates, finest float16 steps).
SAMPLE_ACTIONS: dict[str, tuple[float, float, bool]] = {
    "walk": (3.5, 5.0, False),
    "jump": (3.0, 5.0, False),
    "wave": (2.6, 3.0, True),  # 15 fps full mesh: ~2.9 MB
}


def sample_motion(action: str, seed: int = 0):
    """The synth clip of a sample ``action`` (a key of :data:`SAMPLE_ACTIONS`).

    The subject is the first test-split subject of the default synthetic dataset
    (``stmt synth --seed SEED``, 20 subjects). The clip's random stream is
    ``[seed, 7000 + class index, k]`` with the first ``k`` whose clip lasts within the
    action's range (the dataset's clips use ``[seed, class index, i]``: no clip repeats).

    Returns:
        poses (T, 156) float32, trans (T, 3) float32 (AMASS, 30 fps) and the Subject.
    """
    min_s, max_s, origin = SAMPLE_ACTIONS[action]
    people = synth.make_subjects(20, np.random.default_rng(seed))
    subject = next(p for p in people if p.split == "test")
    cls = synth.SYNTH_CLASSES.index(action)
    for k in range(1000):
        rng = np.random.default_rng([seed, 7000 + cls, k])
        tr = synth.make_track(action, rng, subject)
        if min_s <= len(tr.t) / synth.FPS <= max_s:
            break
    else:  # pragma: no cover (the generators' ranges make this unreachable)
        raise RuntimeError(f"no {action!r} clip of {min_s}-{max_s} s")
    heading = rng.uniform(0, 360)
    pos = np.zeros(2) if origin else rng.uniform(-2, 2, 2)
    poses, trans, _ = synth.track_to_amass(tr, heading, pos, action in synth._IN_PLACE_ANCHOR)
    return poses, trans, subject


SAMPLE_NAMES = ("walk.npz", "jump.bvh", "wave_mesh.npz", "README.md")


def adopt_samples(path: Path, entries: set[str]) -> set[str]:
    """The sample files an earlier ``stmt synth --samples`` wrote in a folder without a
    marker (:func:`stmt.fileio.check_folder`): known when its README.md says so."""
    try:
        with open(path / "README.md", encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return set()
    return entries & set(SAMPLE_NAMES) if "stmt synth --samples" in head else set()


def write_samples(out: Path, seed: int = 0, overwrite: bool = False) -> list[Path]:
    """Write the sample files and their README under ``out`` (see the module docstring).

    Deterministic: the same ``seed`` gives the same arrays and the same BVH/README text
    (``.npz`` bytes may differ only by zip timestamps). ``out`` is an output folder of
    :mod:`stmt.fileio` (a folder holding other files needs ``overwrite``; they are kept).

    Returns:
        The written paths: ``walk.npz``, ``jump.bvh``, ``wave_mesh.npz``, ``README.md``.
    """
    with new_folder(out, "stmt synth --samples", overwrite, adopt_samples) as folder:
        folder.own(*SAMPLE_NAMES)
        _write_samples(folder.path, seed)
    return [Path(out) / name for name in SAMPLE_NAMES]


def _write_samples(out: Path, seed: int) -> None:
    samples: list[Sample] = []

    poses, trans, subject = sample_motion("walk", seed)
    synth._write_npz(out / "walk.npz", poses, trans, subject)
    samples.append(
        Sample("walk.npz", "walk", "amass-smplh", len(poses), synth.FPS,
               "AMASS SMPL+H parameters (`poses` (T, 156), `trans`, `betas`, `gender`, "
               "`mocap_framerate`, `dmpls`), as `stmt synth` writes its clips; posed on "
               "the free anny body when read (or SMPL+H with `--body-models`).")
    )  # fmt: skip

    poses, trans, _ = sample_motion("jump", seed)
    write_cmu_bvh(out / "jump.bvh", poses, trans, synth.FPS)
    samples.append(
        Sample("jump.bvh", "jump", "bvh", len(poses), synth.FPS,
               "BVH with the CMU skeleton (cgspeed joint names, Y up, CMU length unit "
               "1/0.45 inch, `Zrotation Yrotation Xrotation` channels); posed on anny.")
    )  # fmt: skip

    poses, trans, _ = sample_motion("wave", seed)
    step = round(synth.FPS / MESH_FPS)
    vertices, _ = pose_from_smpl(poses[::step], trans[::step])  # (T, V, 3) float32
    _, faces = rest_mesh()

    with atomic_write(out / "wave_mesh.npz") as f:
        np.savez_compressed(
            f,
            vertices=vertices.astype(np.float16),
            faces=faces.astype(np.int32),
            fps=np.array(MESH_FPS),
        )
    samples.append(
        Sample("wave_mesh.npz", "wave", "mesh-npz", len(vertices), MESH_FPS,
               f"mesh sequence: `vertices` ({len(vertices)}, {vertices.shape[1]}, 3) float16 "
               f"metres Z up, `faces` ({len(faces)}, 3) int32, `fps` = {MESH_FPS:g}: "
               "anny's full mesh, read as it is (no body model).")
    )  # fmt: skip

    atomic_text(out / "README.md", _readme(samples, seed))


def _readme(samples: list[Sample], seed: int) -> str:
    seed_flag = "" if seed == 0 else f" --seed {seed}"
    rows = "\n".join(
        f"| `{s.file}` | {s.action} | `{s.format}` | {s.seconds:.1f} s, {s.frames} frames "
        f"at {s.fps:g} fps | {s.description} |"
        for s in samples
    )
    files = " ".join(f"datasets/samples/{s.file}" for s in samples)
    return f"""# samples: one small MoCap file per supported format

Generated by this project, not recorded: each file is a motion of the built-in
synthetic dataset's generator (`stmt/data/synth.py`), for a test-split subject (a
person unseen in training), each with a fixed random stream. Regenerate with

```bash
stmt synth --samples --out datasets/samples{seed_flag}
```


(same seed, same arrays; see `stmt/data/samples.py`). Licence: generated by the
project, the same licence as its code (MIT).

| file | true action | format (`stmt inspect`) | length | content |
|---|---|---|---|---|
{rows}

The BVH holds the same kind of SMPL motion written as CMU joint rotations: its
skeleton has SMPL's rest offsets under the CMU joint names, so it poses anny as
the AMASS file of the same motion would (`tests/test_samples.py` checks this).

Try them:

```bash
stmt inspect {files}
stmt classify {files} --ckpt checkpoints/stmt-tiny-synthetic.ckpt
```
"""
