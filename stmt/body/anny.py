"""The free body model anny (Apache-2.0, ships its data), posed from SMPL or CMU joint rotations.

anny's ``cmu_mb`` rig has the 31 bones of the CMU mocap skeleton, under the CMU BVH
names (``Hips``, ``LHipJoint``, ``LeftUpLeg``, ... ``LeftHandFinger1``, ``LThumb``).
Its rest pose is an A-pose: arms down about 45 degrees, elbows slightly bent.

Conventions (the same as :mod:`stmt.sequence`): metres, float32, Z up. anny's own
frame already is Z-up: in the rest pose the body faces -Y and its left side is +X,
and the rest mesh is returned in that frame (origin near the hips, feet at z ~ -0.87).
Posed bodies keep that frame: an AMASS file (Z-up world) is posed where SMPL would
put it, and a Y-up BVH/ASF-AMC world is turned Z-up by (x, y, z) -> (x, -z, y),
which maps the CMU rest facing (+Z) to -Y.

Retargeting. A source skeleton (SMPL's 22 body joints, or a BVH/ASF skeleton) gives
each joint a local rotation relative to its parent, in a rest pose whose joint frames
are all aligned with the source world axes (T-pose for SMPL and CMU). Chaining them
gives each joint's global rotation ``G_j``. Each anny bone ``c`` is driven by one
source joint ``s(c)``; its skinning rotation is

    ``W @ G_s(c) @ C.T @ D_c``

where ``C`` turns the source rest frame into anny's rest frame (left -> +X, up -> +Z),
``W`` turns the source world Z-up, and ``D_c`` is a fixed rotation that first brings
anny's bone from its A-pose rest direction onto the source's rest bone direction
(the smallest rotation between the two directions). So zero source rotations put anny
in the source's rest pose (a T-pose), and every source rotation acts on the same
limb of anny. Bone lengths stay anny's own. The root is placed so that anny's mid-hip
point follows the source's mid-hip point, scaled by the ratio of anny's leg length to
the source's (so feet keep touching the floor).

Caches. The rest-state constants the posing needs (rest vertices, faces, dense
skinning weights, rest bone heads/tails, parents, labels) are read from one plain
``.npz`` under ``$STMT_CACHE_DIR/anny`` (default ``~/.cache/stmt/anny``), named by
anny's version, the rig and the settings (:func:`rig_cache_file`). Only when it is
missing is the anny model built (:func:`get_model`, once per process; importing anny
alone costs ~1.5 s as it pulls in roma and ``torch._dynamo``) and the file written
(atomically). anny itself caches its slow first construction (~80 s) on disk under
``$ANNY_CACHE_DIR`` (default ``~/.cache/anny``). Nothing here downloads anything.
The faces are anny's, each quad split along the diagonal the package fixes
(:func:`fixed_triangulation`), so that every CPU poses on one face list.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stmt.body.smpl import BODY_JOINT_NAMES as SMPL_JOINT_NAMES
from stmt.body.smpl import BODY_PARENTS as SMPL_PARENTS
from stmt.fileio import atomic_savez
from stmt.motion import SkeletonMotion, axis_angle_to_matrix
from stmt.retarget import bone_rotations, canonical_motion, hip_scale

if TYPE_CHECKING:  # heavy imports stay inside functions
    import torch

RIG = "cmu_mb"
CACHE_ENV = "ANNY_CACHE_DIR"

# Frames per chunk when posing, to bound intermediate memory (full mesh: ~25 MB/chunk).
_CHUNK = 64

# ----------------------------------------------------------------------------- SMPL source


# Approximate joint offsets from the parent of SMPL's mean shape, in its T-pose rest frame
# (metres, Y up, facing +Z, left = +X). Used only for rest bone directions, the leg length
# and where the pelvis sits relative to ``trans``; shape coefficients have no anny meaning.
_SMPL_OFFSETS = np.array(
    [
        [-0.0018, -0.2233, 0.0282],  # pelvis: its rest position (AMASS ``trans`` is added)
        [0.0586, -0.0823, -0.0177],
        [-0.0603, -0.0905, -0.0135],
        [0.0044, 0.1244, -0.0384],
        [0.0435, -0.3865, 0.0080],
        [-0.0433, -0.3830, -0.0048],
        [0.0045, 0.1380, 0.0268],
        [-0.0148, -0.4269, -0.0374],
        [0.0191, -0.4200, -0.0346],
        [-0.0023, 0.0560, 0.0019],
        [0.0410, -0.0602, 0.1220],
        [-0.0348, -0.0621, 0.1303],
        [-0.0134, 0.2116, -0.0335],
        [0.0717, 0.1140, -0.0189],
        [-0.0830, 0.1125, -0.0237],
        [0.0101, 0.0889, 0.0504],
        [0.1229, 0.0452, -0.0190],
        [-0.1132, 0.0469, -0.0085],
        [0.2553, -0.0156, -0.0229],
        [-0.2601, -0.0144, -0.0313],
        [0.2657, 0.0127, -0.0054],
        [-0.2691, 0.0068, -0.0061],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Skeleton:
    """A source skeleton in its rest pose (all joint frames aligned with the world axes).

    Attributes:
        names: joint names; parents come before their children.
        parents: parent index of each joint, -1 for the root (index 0).
        offsets: (J, 3) metres, each joint's rest position relative to its parent
            (the root's: its rest position).
        end_offsets: (J, 3) metres, where a leaf's bone ends relative to the joint
            (a BVH ``End Site``), zeros where unknown or not a leaf.
        up: the up axis of the rest pose, "y" or "z".
    """

    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray
    end_offsets: np.ndarray
    up: str = "y"

    def rest_positions(self) -> np.ndarray:
        """(J, 3) rest joint positions, metres."""
        pos = np.zeros((len(self.names), 3))
        for j, p in enumerate(self.parents):
            pos[j] = self.offsets[j] + (pos[p] if p >= 0 else 0.0)
        return pos


def smpl_skeleton() -> Skeleton:
    """SMPL's 22 body joints with approximate mean-shape offsets (Y-up T-pose)."""
    return Skeleton(
        names=SMPL_JOINT_NAMES,
        parents=SMPL_PARENTS,
        offsets=_SMPL_OFFSETS,
        end_offsets=_smpl_end_offsets(),
        up="y",
    )


def _smpl_end_offsets() -> np.ndarray:
    ends = np.zeros_like(_SMPL_OFFSETS)
    names = SMPL_JOINT_NAMES
    for side in ("left", "right"):
        wrist = names.index(f"{side}_wrist")
        ends[wrist] = _SMPL_OFFSETS[wrist] / np.linalg.norm(_SMPL_OFFSETS[wrist]) * 0.08
        ends[names.index(f"{side}_foot")] = (0.0, 0.0, 0.05)  # toes point forward
    ends[names.index("head")] = (0.0, 0.15, 0.0)
    return ends


# ------------------------------------------------------------------------------- the model


@functools.cache
def get_model():
    """The process-wide anny model (rig ``cmu_mb``, default phenotype), float32, eval mode.

    Built once per process; anny caches the slow first build on disk under
    ``$ANNY_CACHE_DIR`` (default ``~/.cache/anny``). The posing functions do not
    need it once the rig cache exists (:func:`rig_cache_file`).
    """
    import anny
    import anny.paths
    import torch

    if os.environ.get(CACHE_ENV):  # anny reads it at import time; honour a later setting
        anny.paths.set_anny_cache_path(os.environ[CACHE_ENV])
    # Plain LBS: the default (NVIDIA Warp) prints banners and is not needed here.
    model = anny.Anny(rig=RIG, skinning_method="lbs").to(torch.float32).eval()
    model.requires_grad_(False)
    return model


@dataclass(frozen=True)
class _Rig:
    """The rest-state constants of the default anny body (all the posing paths use)."""

    labels: tuple[str, ...]
    parents: tuple[int, ...]
    heads: np.ndarray  # (B, 3) float32 rest bone heads
    tails: np.ndarray  # (B, 3) float32 rest bone tails
    vertices: np.ndarray  # (V, 3) float32 rest vertices
    faces: np.ndarray  # (F, 3) int64 triangles
    dense_weights: np.ndarray  # (V, B) float32 skinning weight of each bone


# Bump when the content or layout of the rig cache changes (2: faces from
# :func:`fixed_triangulation`).
_RIG_CACHE_FORMAT = 2
_RIG_SETTINGS = "lbs-float32-default-phenotype-zero-pose"


def rig_cache_file() -> Path | None:
    """Where the rig constants are cached: ``$STMT_CACHE_DIR/anny`` (default
    ``~/.cache/stmt/anny``), one ``.npz`` named by anny's version, the rig and the
    settings. None when anny is not installed (then there is nothing to key it by).

    The file holds plain arrays (rest vertices, faces, dense skinning weights, rest
    bone heads/tails, parents, labels): with it, posing never imports anny (nor roma,
    torch._dynamo or warp), which saves ~1.5 s per process. Delete it to rebuild.
    """
    try:
        version = metadata.version("anny")
    except metadata.PackageNotFoundError:
        return None
    root = os.environ.get("STMT_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "stmt"
    name = f"rig-anny{version}-{RIG}-{_RIG_SETTINGS}-v{_RIG_CACHE_FORMAT}.npz"
    return base / "anny" / name


def _rig_arrays_from_anny() -> dict[str, np.ndarray]:
    """The rig constants computed from the anny model (imports anny; slow)."""
    import torch

    model = get_model()
    with torch.inference_mode():
        rest = model()  # identity pose, default phenotype
    parents = [int(p) for p in model.bone_parents]
    dense = (
        torch.zeros(len(parents), dtype=torch.float32)
        .repeat(model.vertex_bone_weights.shape[0], 1)
        .scatter_add_(1, model.vertex_bone_indices.long(), model.vertex_bone_weights.float())
    )  # (V, B)
    return {
        "labels": np.array(list(model.bone_labels), dtype=np.str_),
        "parents": np.array(parents, dtype=np.int64),
        "heads": rest["rest_bone_heads"][0].float().numpy().copy(),
        "tails": rest["rest_bone_tails"][0].float().numpy().copy(),
        "vertices": rest["rest_vertices"][0].float().numpy().copy(),
        "faces": fixed_triangulation(model.get_triangular_faces().cpu().numpy()),
        "dense_weights": dense.numpy().copy(),
    }


# The diagonal along which each quad of anny's default mesh is split (module
# :func:`fixed_triangulation`); made from anny 0.6.2's triangles on an AMD EPYC.
TRIANGULATION_FILE = Path(__file__).with_name("anny_triangulation.npz")


def quads_of(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """anny's triangles as its quads: rows ``2q`` and ``2q + 1`` are quad ``q = (a, b,
    c, d)`` split along ``a-c`` (``[a, b, c], [c, d, a]``) or ``b-d`` (``[a, b, d], [d,
    b, c]``). Returns ``(quads (Q, 4), split_ac (Q,) bool)``, or None when the rows do
    not pair up that way."""
    f = np.asarray(faces, dtype=np.int64)
    if f.ndim != 2 or f.shape[1] != 3 or len(f) % 2:
        return None
    t0, t1 = f[0::2], f[1::2]
    ac = (t1[:, 0] == t0[:, 2]) & (t1[:, 2] == t0[:, 0])
    bd = (t1[:, 1] == t0[:, 1]) & (t1[:, 0] == t0[:, 2])
    if not np.all(ac ^ bd):
        return None
    d = np.where(ac, t1[:, 1], t0[:, 2])
    c = np.where(ac, t0[:, 2], t1[:, 2])
    return np.stack([t0[:, 0], t0[:, 1], c, d], axis=1), ac


def split_quads(quads: np.ndarray, split_ac: np.ndarray) -> np.ndarray:
    """(2Q, 3) int64 triangles of quads ``(a, b, c, d)``, in anny's order
    (:func:`quads_of`)."""
    a, b, c, d = np.asarray(quads, dtype=np.int64).T
    first = np.where(split_ac[:, None], np.stack([a, b, c], 1), np.stack([a, b, d], 1))
    second = np.where(split_ac[:, None], np.stack([c, d, a], 1), np.stack([d, b, c], 1))
    return np.stack([first, second], axis=1).reshape(-1, 3)


def fixed_triangulation(faces: np.ndarray) -> np.ndarray:
    """anny's triangles with every quad split the way :data:`TRIANGULATION_FILE` says.

    anny splits each quad along its shorter diagonal, measured in float32. A few quads
    of the default body have two diagonals of one length, and CPUs round their norms
    differently (an Intel Xeon split six of them the other way from an AMD EPYC): the
    face list, and with it the geodesics and the probabilities of files posed on the
    body (by up to 3e-4), depended on the machine. The split of every quad is therefore
    fixed by a file (a bit per quad). A mesh that is not the one the file describes
    (another anny version) keeps anny's own triangles."""
    faces = np.asarray(faces, dtype=np.int64)
    got = quads_of(faces)
    with np.load(TRIANGULATION_FILE) as z:
        digest, bits, count = str(z["quads_sha256"]), z["split_ac"], int(z["num_quads"])
    if got is None or len(got[0]) != count or _quads_digest(got[0]) != digest:
        warnings.warn(
            f"anny's mesh is not the one {TRIANGULATION_FILE.name} describes (another anny "
            "version?): its own triangulation is used, which may split a few quads "
            "differently on other CPUs",
            stacklevel=2,
        )
        return faces
    return split_quads(got[0], np.unpackbits(bits, count=count).astype(bool))


def _quads_digest(quads: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(quads, dtype=np.int64).tobytes()).hexdigest()


def _rig_from_arrays(a: dict[str, np.ndarray]) -> _Rig:
    parents = tuple(int(p) for p in a["parents"])
    assert all(p < c for c, p in enumerate(parents[1:], start=1)), "parents must precede"
    return _Rig(
        labels=tuple(str(x) for x in a["labels"]),
        parents=parents,
        heads=np.ascontiguousarray(a["heads"], dtype=np.float32),
        tails=np.ascontiguousarray(a["tails"], dtype=np.float32),
        vertices=np.ascontiguousarray(a["vertices"], dtype=np.float32),
        faces=np.ascontiguousarray(a["faces"], dtype=np.int64),
        dense_weights=np.ascontiguousarray(a["dense_weights"], dtype=np.float32),
    )


_RIG_KEYS = ("labels", "parents", "heads", "tails", "vertices", "faces", "dense_weights")


def _load_rig_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the file is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in _RIG_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # corrupt or from another layout: rebuild


def _save_rig_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically; a cache that cannot be written (read-only home) is skipped silently."""
    try:
        atomic_savez(path, **arrays)
    except OSError:
        pass


@functools.cache
def _rig() -> _Rig:
    """The rig constants: from the disk cache when present, else built from anny (and
    cached). Both paths go through the same float32 arrays, so they give equal results."""
    path = rig_cache_file()
    arrays = None if path is None else _load_rig_cache(path)
    if arrays is None:
        arrays = _rig_arrays_from_anny()
        if path is not None:
            _save_rig_cache(path, arrays)
    return _rig_from_arrays(arrays)


def bone_labels() -> tuple[str, ...]:
    """Names of the anny joints returned by the posing functions (CMU BVH names)."""
    return _rig().labels


def rest_mesh() -> tuple[np.ndarray, np.ndarray]:
    """The canonical anny mesh: default phenotype, zero pose (its A-pose).

    Returns:
        rest_vertices: (V, 3) float32 metres, Z up, facing -Y (anny's own frame).
        faces: (F, 3) int64 triangles.
    """
    rig = _rig()
    return rig.vertices.copy(), rig.faces.copy()


# ---------------------------------------------------------------------------------- posing


def _skin(
    rot: np.ndarray, mid_hip: np.ndarray, vertex_ids: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Linear blend skinning of anny with each bone rotated by ``rot`` (T, B, 3, 3) about
    its head, the whole body moved so that its mid-hip point is at ``mid_hip`` (T, 3).

    Returns (vertices (T, V|N, 3), bone heads (T, B, 3)), float32.
    """
    import torch

    rig = _rig()
    weights = torch.from_numpy(rig.dense_weights)  # (V, B)
    rest_v = torch.from_numpy(rig.vertices)  # (V, 3)
    rest_heads = torch.from_numpy(rig.heads)  # (B, 3)
    if vertex_ids is not None:
        ids = torch.as_tensor(np.asarray(vertex_ids), dtype=torch.long)
        weights, rest_v = weights[ids], rest_v[ids]  # (N, B), (N, 3)
    lhip, rhip = rig.labels.index("LeftUpLeg"), rig.labels.index("RightUpLeg")
    n, b = weights.shape
    # posed[n, i] = sum_{b, j} w[n, b] * rest_h[n, j] * tf[b, i, j]: one GEMM per chunk.
    rest_h = torch.cat([rest_v, torch.ones(n, 1)], dim=1)  # (N, 4)
    blend = (weights[:, :, None] * rest_h[:, None, :]).reshape(n, b * 4)  # (N, B*4)
    frames = rot.shape[0]
    chunk = max(1, min(1024, 4_000_000 // (3 * max(n, 1))))  # bounds (N, t*3) to ~16 MB
    vertices = np.empty((frames, n, 3), dtype=np.float32)
    joints = np.empty((frames, b, 3), dtype=np.float32)
    with torch.inference_mode():
        rot_t, target = torch.from_numpy(rot), torch.from_numpy(mid_hip)
        out_v, out_j = torch.from_numpy(vertices), torch.from_numpy(joints)
        for start in range(0, frames, chunk):
            r = rot_t[start : start + chunk]  # (t, B, 3, 3)
            t = r.shape[0]
            heads = _posed_heads(r, rest_heads, rig.parents)  # (t, B, 3), root head at 0
            shift = target[start : start + t] - 0.5 * (heads[:, lhip] + heads[:, rhip])
            heads = heads + shift[:, None]
            trans = heads - torch.einsum("tbij,bj->tbi", r, rest_heads)  # (t, B, 3)
            tf = torch.cat([r, trans[..., None]], dim=-1)  # (t, B, 3, 4)
            tf = tf.permute(1, 3, 0, 2).reshape(b * 4, t * 3)  # (B*4, t*3)
            out_v[start : start + t] = (blend @ tf).reshape(n, t, 3).permute(1, 0, 2)
            out_j[start : start + t] = heads
    return vertices, joints


def _posed_heads(rot: torch.Tensor, heads: torch.Tensor, parents: tuple[int, ...]) -> torch.Tensor:
    """(t, B, 3) bone heads once each bone is rotated by ``rot`` about its (posed) head."""
    import torch

    out = [torch.zeros(rot.shape[0], 3, dtype=rot.dtype)]
    for b, p in enumerate(parents[1:], start=1):
        out.append(out[p] + rot[:, p] @ (heads[b] - heads[p]))
    return torch.stack(out, dim=1)


# ---------------------------------------------------------------------------- public posing


def pose_positions(
    positions: dict[str, np.ndarray], vertex_ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pose anny like canonical joint positions (see :func:`stmt.retarget.bone_rotations`).

    Args:
        positions: canonical joint name -> (T, 3) metres, Z up (anny's bone names; "X_end"
            the tip of X), as :func:`stmt.retarget.canonical_motion` gives them.
        vertex_ids: (N,) ids into anny's full mesh to pose only those vertices.

    Returns:
        vertices: (T, V, 3) float32, or (T, N, 3) with ``vertex_ids``; metres, Z up. The
        mid-hip point follows the source's, scaled by anny's leg length over the
        source's (so the feet keep touching the floor).
        joints: (T, B, 3) float32 anny bone heads, named by :func:`bone_labels`.
    """
    rig = _rig()
    rot = bone_rotations(positions, rig.labels, rig.parents, rig.heads, rig.tails)
    mid, scale = hip_scale(positions, rig.heads, rig.labels)
    return _skin(rot.astype(np.float32), (scale * mid).astype(np.float32), vertex_ids)


def pose_skeleton(
    motion: SkeletonMotion,
    vertex_ids: np.ndarray | None = None,
    joint_map: dict[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pose anny with a skeleton motion of any supported rig (:mod:`stmt.retarget`).

    Returns (vertices, joints) as :func:`pose_positions`. Raises InputError for a rig
    it cannot map (the message names ``--joint-map``).
    """
    return pose_positions(canonical_motion(motion, joint_map).positions, vertex_ids)


def smpl_motion(poses: np.ndarray, trans: np.ndarray) -> SkeletonMotion:
    """AMASS/SMPL body parameters as a skeleton motion on SMPL's 22 body joints (mean
    shape offsets), metres, in the AMASS Z-up world."""
    poses = np.asarray(poses, dtype=np.float64)
    trans = np.asarray(trans, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] < 66:
        raise ValueError(f"poses must have shape (T, >=66), got {poses.shape}")
    if trans.shape != (poses.shape[0], 3):
        raise ValueError(f"trans must have shape ({poses.shape[0]}, 3), got {trans.shape}")
    skeleton = smpl_skeleton()
    t = poses.shape[0]
    translations = np.broadcast_to(skeleton.offsets, (t, 22, 3)).copy()
    translations[:, 0] = trans + skeleton.offsets[0]  # the pelvis, as in SMPL
    return SkeletonMotion(
        names=skeleton.names,
        parents=skeleton.parents,
        offsets=skeleton.offsets,
        end_offsets=skeleton.end_offsets,
        rotations=axis_angle_to_matrix(poses[:, :66].reshape(t, 22, 3)),
        translations=translations,
        fps=30.0,
        unit=1.0,
        up="z",  # SMPL's rest frame is Y-up, but the root orientation turns it into AMASS's Z-up world
        format="smpl",
    )


def pose_from_smpl(
    poses: np.ndarray,
    trans: np.ndarray,
    betas: np.ndarray | None = None,
    vertex_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pose anny with AMASS/SMPL joint rotations.

    Args:
        poses: (T, >=66) axis-angle in SMPL joint order: root orientation (3) then the
            21 body joints (63); further columns (hands, jaw, eyes) are ignored.
        trans: (T, 3) AMASS translation, metres, Z up; the pelvis sits at
            ``trans + J_pelvis`` as in SMPL (``J_pelvis`` of SMPL's mean shape).
        betas: ignored. SMPL shape coefficients have no anny meaning; the default
            anny phenotype is used.
        vertex_ids: (N,) ids into anny's full mesh to pose only those vertices.

    Returns:
        vertices: (T, V, 3) float32, or (T, N, 3) with ``vertex_ids``; metres, Z up.
        joints: (T, B, 3) float32 anny bone heads, named by :func:`bone_labels`.
    """
    del betas
    return pose_skeleton(smpl_motion(poses, trans), vertex_ids)
