"""SMPL-family body models (SMPL+H, SMPL-X) from the user's own model files, and fast posing.

Model files are never shipped; the user points ``--body-models DIR`` (or
``$STMT_BODY_MODELS``) at a folder in one of two layouts::

    DIR/smplh/SMPLH_MALE.npz        (smplx layout; also SMPLX_*.npz under DIR/smplx/)
    DIR/smplh/male/model.npz        (AMASS layout; also DIR/smplx/male/model.npz)

A model file is read with numpy alone (the keys smplx reads: ``v_template``,
``shapedirs``, ``posedirs``, ``J_regressor``, ``weights``, ``kintree_table``,
``f``). Official chumpy ``.pkl`` files are refused with a message saying to
convert them to ``.npz``.

Posing (:func:`pose`) is linear blend skinning written here (joint chain in
float64 numpy, per-vertex work in float32 torch), equal to ``smplx``'s forward
(checked in ``tests/test_io_amass.py``) but:

- the rest joints depend on the shape only, so they are regressed once per
  sequence (from the vertices the regressor reads), not once per frame;
- with ``vertex_ids`` only those rows of the shape, pose-corrective and
  skinning bases are touched, so posing N << V vertices costs O(N) per frame;
- the per-vertex work is batched over frames: two GEMMs (pose correctives,
  skinning-transform blending) and three fused multiply-adds; the O(J) joint
  chain runs in numpy, not as ~50 tiny torch calls (each one synchronises
  torch's threads, slow on a busy machine).

Hands are posed with full axis-angle (no PCA) and no hand mean, as AMASS
stores them (smplx ``use_pca=False, flat_hand_mean=True``). All betas a file
holds are used, up to the model's shape components. (smplx 0.1.28 itself keeps
only 10 betas for a model with fewer than 300 shape components, with a printed
warning, whatever ``num_betas`` says; AMASS SMPL+H models have 16.) SMPL-X
expression is zero.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stmt.errors import InputError
from stmt.motion import axis_angle_to_matrix
from stmt.npz import npz_array, open_npz

GENDERS = ("neutral", "male", "female")
NUM_JOINTS = {"smplh": 52, "smplx": 55}
# Pose-vector width of an AMASS file for each body: 3 values per joint.
POSE_WIDTH = {"smplh": 156, "smplx": 165}

#: SMPL's 22 body joints, AMASS order (the first 22 of every SMPL-family model), and
#: their parents: the one table of them.
BODY_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip
BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
_HAND = [
    f"{finger}{i}" for finger in ("index", "middle", "pinky", "ring", "thumb") for i in (1, 2, 3)
]
JOINT_NAMES = {
    "smplh": [*BODY_JOINT_NAMES] + [f"left_{h}" for h in _HAND] + [f"right_{h}" for h in _HAND],
    "smplx": [*BODY_JOINT_NAMES]
    + ["jaw", "left_eye", "right_eye"]
    + [f"left_{h}" for h in _HAND]
    + [f"right_{h}" for h in _HAND],
}
_REQUIRED_KEYS = (
    "v_template",
    "shapedirs",
    "posedirs",
    "J_regressor",
    "weights",
    "kintree_table",
    "f",
)


# ---------------------------------------------------------------- model files
def models_dir(body_models: str | Path | None) -> Path | None:
    """The body-model folder from the argument, else ``$STMT_BODY_MODELS``, else None."""
    if body_models is None or str(body_models) == "":
        env = os.environ.get("STMT_BODY_MODELS", "")
        if not env:
            return None
        body_models = env
    root = Path(body_models).expanduser()
    if not root.is_dir():
        raise InputError(
            root, "body-model folder does not exist (from --body-models or $STMT_BODY_MODELS)"
        )
    return root


def candidate_paths(root: Path, body: str, gender: str) -> list[Path]:
    """Where a model file of ``body`` ("smplh"|"smplx") and ``gender`` may lie, in search order."""
    upper = f"{body.upper()}_{gender.upper()}.npz"
    return [root / body / upper, root / body / gender / "model.npz", root / upper]


def find_model_file(root: Path, body: str, gender: str) -> Path:
    """The model file for ``body`` and ``gender`` under ``root``, or InputError naming the paths tried."""
    if gender not in GENDERS:
        raise InputError(root, f"unknown gender {gender!r}; expected one of {', '.join(GENDERS)}")
    tried = candidate_paths(root, body, gender)
    for path in tried:
        if path.is_file():
            return path
    for path in tried:
        pkl = path.with_suffix(".pkl")
        if pkl.is_file():
            raise InputError(
                pkl,
                "official .pkl (chumpy) model files are not read; convert it to .npz "
                f"(plain numpy arrays, e.g. with smplx's tools/clean_ch.py) at {path}",
            )
    raise InputError(
        root, f"no {body} {gender} model file; looked at " + ", ".join(map(str, tried))
    )


def canonical_model_file(root: Path, body: str) -> Path:
    """The model whose zero-shape rest mesh is the canonical one: neutral, else male, else female."""
    for gender in GENDERS:
        for path in candidate_paths(root, body, gender):
            if path.is_file():
                return path
    return find_model_file(root, body, "neutral")  # raises, naming the paths


@dataclass(frozen=True)
class SMPLModel:
    """A SMPL-family model as plain float32 arrays (cached per file: do not modify them).

    Attributes:
        body: "smplh" or "smplx".
        path: the file it was read from.
        v_template: (V, 3) rest vertices, mean shape, zero pose (model frame: Y up).
        shapedirs: (V, 3, S) shape components used by betas.
        posedirs: (V, 3, P) pose-corrective components, P = 9 * (J - 1).
        j_regressor: (J, V) rest joints from rest vertices.
        weights: (V, J) skinning weights.
        parents: (J,) int64 parent joint, -1 for the root.
        faces: (F, 3) int64.
        regressor_support: (S,) int64 vertices the joint regressor reads (non-zero columns).
    """

    body: str
    path: Path
    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    j_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    faces: np.ndarray
    regressor_support: np.ndarray

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.parents.shape[0])

    @property
    def num_shape(self) -> int:
        return int(self.shapedirs.shape[2])


def load_model(path: str | Path, body: str) -> SMPLModel:
    """Read and check a SMPL+H / SMPL-X ``.npz`` model file (cached per path and mtime)."""
    path = Path(path)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as err:
        raise InputError(path, f"cannot read body-model file ({err.strerror})") from None
    return _load_model_cached(str(path), body, mtime)


@functools.lru_cache(maxsize=8)
def _load_model_cached(path_str: str, body: str, mtime: int) -> SMPLModel:
    path = Path(path_str)
    if path.suffix == ".pkl":
        raise InputError(
            path, "official .pkl (chumpy) model files are not read; convert it to .npz"
        )
    # Without pickle (np.load would unpickle a non-zip file, which can run code): the
    # arrays read are plain numbers in the official .npz files.
    data = open_npz(path, expected=f"expected a {body} model .npz")
    keys = set(data.files)
    missing = [k for k in _REQUIRED_KEYS if k not in keys]
    if missing:
        raise InputError(
            path,
            f"missing {', '.join(missing)}; expected a SMPL-family model with keys {', '.join(_REQUIRED_KEYS)}",
        )
    arrays = {k: np.asarray(npz_array(data, path, k)) for k in _REQUIRED_KEYS}
    v_template = arrays["v_template"].astype(np.float32)
    V = v_template.shape[0]
    shapedirs = arrays["shapedirs"].astype(np.float32)
    if shapedirs.ndim == 2:
        shapedirs = shapedirs[:, :, None]
    if body == "smplx":
        # As smplx: 300 shape + 100 expression components in v1.1 files, else 10 + 10.
        shapedirs = shapedirs[
            :, :, : 300 if shapedirs.shape[2] >= 400 else min(10, shapedirs.shape[2])
        ]
    J = NUM_JOINTS[body]
    parents = arrays["kintree_table"][0].astype(np.int64)  # root entry is 2**32-1 in official files
    parents[0] = -1
    expect = {
        "v_template": (V, 3),
        "shapedirs": (V, 3, shapedirs.shape[2]),
        "posedirs": (V, 3, 9 * (J - 1)),
        "J_regressor": (J, V),
        "weights": (V, J),
        "kintree_table": (2, J),
    }
    found = {
        "v_template": v_template.shape,
        "shapedirs": shapedirs.shape,
        "posedirs": arrays["posedirs"].shape,
        "J_regressor": arrays["J_regressor"].shape,
        "weights": arrays["weights"].shape,
        "kintree_table": arrays["kintree_table"].shape,
    }
    for key, shape in expect.items():
        if tuple(found[key]) != shape:
            name = {"smplh": "SMPL+H", "smplx": "SMPL-X"}[body]
            raise InputError(
                path,
                f"{key} has shape {tuple(found[key])}; a {name} model ({J} joints) needs {shape}",
            )
    faces = arrays["f"].astype(np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= V:
        raise InputError(path, f"f must be (F, 3) vertex indices in [0, {V})")
    if not (parents[1:] >= 0).all() or not (parents[1:] < np.arange(1, J)).all():
        raise InputError(path, "kintree_table must list each joint's parent before the joint")
    model = SMPLModel(
        body=body,
        path=path,
        v_template=v_template,
        shapedirs=np.ascontiguousarray(shapedirs),
        posedirs=np.ascontiguousarray(arrays["posedirs"], dtype=np.float32),
        j_regressor=np.ascontiguousarray(arrays["J_regressor"], dtype=np.float32),
        weights=np.ascontiguousarray(arrays["weights"], dtype=np.float32),
        parents=parents,
        faces=faces,
        regressor_support=np.flatnonzero(np.any(arrays["J_regressor"] != 0, axis=0)),
    )
    return model


# ---------------------------------------------------------------- posing
def joint_transforms(
    parents: np.ndarray, poses: np.ndarray, j_rest: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local and world rotations and world positions of the joints, float64, joint-major.

    Args:
        parents: (J,) parent of each joint (-1 for the root), parents before children.
        poses: (T, 3 * J) axis-angle per joint.
        j_rest: (J, 3) rest joint positions.

    Returns:
        R_local (J, T, 3, 3), R_world (J, T, 3, 3), t_world (J, T, 3) (root at j_rest[0],
        no translation added). Small per-frame work, done in numpy: a chain of (T, 3, 3)
        products, one per joint, that would be 50 tiny thread-synchronised torch calls.
    """
    J = len(parents)
    T = poses.shape[0]
    R_local = axis_angle_to_matrix(
        poses.reshape(T, J, 3).transpose(1, 0, 2), eps=1e-8
    )  # (J, T, 3, 3), as smplx computes it
    rel = j_rest.copy()
    rel[1:] -= j_rest[parents[1:]]  # (J, 3) offset of each joint from its parent
    R = np.empty_like(R_local)
    t = np.empty((J, T, 3))
    R[0], t[0] = R_local[0], j_rest[0]
    for j in range(1, J):
        p = parents[j]
        np.matmul(R[p], R_local[j], out=R[j])
        t[j] = t[p] + R[p] @ rel[j]
    return R_local, R, t


def _shaped(model: SMPLModel, betas: np.ndarray | None, rows) -> np.ndarray:
    """Rest vertices ``rows`` of the body shape ``betas``, float64 (R, 3)."""
    v = model.v_template[rows].astype(np.float64)
    if betas is not None and len(betas):
        b = np.asarray(betas, dtype=np.float64).reshape(-1)[: model.num_shape]
        v += model.shapedirs[rows, :, : len(b)].astype(np.float64) @ b
    return v


def rest_joints(
    model: SMPLModel, betas: np.ndarray | None, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Shaped rest vertices ``rows`` (N or V, 3) and rest joints (J, 3), float64, for one shape.

    Only the vertices the joint regressor reads are shaped for the joints.
    """
    support = model.regressor_support
    joints = model.j_regressor[:, support].astype(np.float64) @ _shaped(model, betas, support)
    return _shaped(model, betas, slice(None) if rows is None else rows), joints


def pose(
    model: SMPLModel,
    poses: np.ndarray,
    trans: np.ndarray,
    betas: np.ndarray | None = None,
    vertex_ids: np.ndarray | None = None,
    max_chunk_vertices: int = 1 << 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Pose a sequence with linear blend skinning.

    Joint transforms (O(J) per frame) are computed in float64 numpy; the O(N) per-frame
    work (pose correctives, blending the joints' transforms, skinning) in float32 torch.

    Args:
        model: the body model.
        poses: (T, 3 * J) axis-angle, joints in model order (AMASS order).
        trans: (T, 3) root translation, metres.
        betas: (B,) shape coefficients; the first ``min(B, model.num_shape)`` are used.
        vertex_ids: (N,) ids into the full mesh to pose only those vertices, or None for all.
        max_chunk_vertices: frames are posed in chunks of about this many vertices in all.

    Returns:
        vertices (T, N or V, 3) float32 and joints (T, J, 3) float32, in the frame of the
        pose parameters (AMASS: Z up), metres.
    """
    import torch

    J = model.num_joints
    T = poses.shape[0]
    assert poses.shape == (T, 3 * J) and trans.shape == (T, 3), (poses.shape, trans.shape)
    v_shaped, j_rest = rest_joints(model, betas, vertex_ids)  # once per sequence: shape only

    if vertex_ids is None:
        rows = slice(None)
        n = model.num_vertices
    else:
        rows = np.asarray(vertex_ids, dtype=np.int64)
        n = len(rows)
    # Frame-major layouts, so each chunk's result is (b, 3, N) with N innermost.
    v_rest = torch.from_numpy(v_shaped.T.astype(np.float32))  # (3, N)
    posedirs = torch.from_numpy(model.posedirs[rows].transpose(2, 1, 0).copy())  # (P, 3, N)
    posedirs = posedirs.view(-1, 3 * n)  # (P, 3*N)
    weights_t = torch.from_numpy(model.weights[rows].T.copy())  # (J, N)
    parents = model.parents
    eye = np.eye(3)

    out_v = np.empty((T, n, 3), dtype=np.float32)
    out_j = np.empty((T, J, 3), dtype=np.float32)
    chunk = max(1, min(T, max_chunk_vertices // max(n, 1)))
    with torch.inference_mode():
        for start in range(0, T, chunk):
            frames = slice(start, start + chunk)
            R_local, R, t = joint_transforms(parents, poses[frames], j_rest)  # joint-major
            b = R.shape[1]
            tr = np.asarray(trans[frames], dtype=np.float64)  # (b, 3)
            # Pose correctives from every non-root joint rotation, (joint, row, col) order.
            feat = (R_local[1:] - eye).transpose(1, 0, 2, 3).reshape(b, -1)  # (b, 9*(J-1))
            feat = torch.from_numpy(feat.astype(np.float32))
            v_posed = v_rest + (feat @ posedirs).view(b, 3, n)  # (b, 3, N)
            # Skinning transform of each joint: x -> R x + (t - R j_rest) + trans.
            offset = t - (R @ j_rest[:, None, :, None])[..., 0] + tr  # (J, b, 3)
            A = np.concatenate([R, offset[..., None]], axis=-1)  # (J, b, 3, 4)
            A = A.transpose(1, 3, 2, 0).reshape(b * 12, J)  # (b * column * row, J)
            # Blend the joints' transforms per vertex: one GEMM over all frames.
            M = torch.from_numpy(A.astype(np.float32)) @ weights_t  # (b*4*3, N)
            M = M.view(b, 4, 3, n)  # (b, column k, row i, N)
            verts = M[:, 3]  # (b, 3, N) translation column
            for k in range(3):
                verts = torch.addcmul(verts, M[:, k], v_posed[:, k : k + 1])
            out_v[frames] = verts.transpose(1, 2).numpy()  # (b, N, 3)
            out_j[frames] = (t + tr).transpose(1, 0, 2)  # (b, J, 3)
    return out_v, out_j


def warn_dropped_betas(betas: np.ndarray, model: SMPLModel, source: Path) -> None:
    extra = np.asarray(betas).reshape(-1)[model.num_shape :]
    if extra.size and np.any(extra != 0):
        warnings.warn(
            f"{source}: {len(betas)} betas but {model.path} has {model.num_shape} shape components; "
            f"the last {extra.size} are ignored",
            stacklevel=3,
        )
