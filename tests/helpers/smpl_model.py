"""Synthetic SMPL-family model files and AMASS-format motion files for tests.

Real SMPL+H / SMPL-X files are licensed and never shipped, so tests write
small-random-but-sane stand-ins with the exact keys and shapes smplx 0.1.28
reads:

- :func:`write_smplh_model` — SMPL+H sized: 6890 vertices, 13776 faces, 52
  joints, 16 shape components, posedirs (6890, 3, 459), hand PCA keys.
- :func:`write_smplx_model` — SMPL-X sized: 10475 vertices, 55 joints, 20
  shape components (10 shape + 10 expression, as SMPL-X v1.0 files), plus the
  landmark keys smplx needs.
- :func:`write_amass_npz` — an AMASS SMPL+H or SMPL-X "stageii" motion file.

The mesh is a closed genus-0 surface (a tube widened at shoulder height to
reach the arm joints), Y up like the real models, pelvis at the origin, feet
at y = -0.95 m, so geodesics and templates computed on it are meaningful.
Skinning weights blend the 4 nearest joints; each joint is regressed from its
8 nearest vertices. Each gender gets a slightly different template.
Files are float32 (the real ones are float64; readers must accept both).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# SMPL+H parents: 22 body joints, then 5 fingers x 3 joints per hand.
_BODY_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]


def _hand_parents(wrist: int, first: int) -> list[int]:
    out = []
    for finger in range(5):
        base = first + 3 * finger
        out += [wrist, base, base + 1]
    return out


SMPLH_PARENTS = _BODY_PARENTS + _hand_parents(20, 22) + _hand_parents(21, 37)
SMPLX_PARENTS = _BODY_PARENTS + [15, 15, 15] + _hand_parents(20, 25) + _hand_parents(21, 40)

_BODY_JOINTS = np.array(
    [
        [0.00, 0.00, 0.00], [0.06, -0.09, 0.00], [-0.06, -0.09, 0.00], [0.00, 0.11, 0.00],
        [0.10, -0.47, 0.00], [-0.10, -0.47, 0.00], [0.00, 0.25, 0.00], [0.08, -0.87, 0.00],
        [-0.08, -0.87, 0.00], [0.00, 0.31, 0.00], [0.12, -0.93, 0.08], [-0.12, -0.93, 0.08],
        [0.00, 0.52, 0.00], [0.08, 0.45, 0.00], [-0.08, 0.45, 0.00], [0.00, 0.62, 0.03],
        [0.18, 0.47, 0.00], [-0.18, 0.47, 0.00], [0.44, 0.46, 0.00], [-0.44, 0.46, 0.00],
        [0.66, 0.47, 0.00], [-0.66, 0.47, 0.00],
    ]
)  # fmt: skip


def _hand_joints(wrist: np.ndarray, side: float) -> np.ndarray:
    out = []
    for finger in range(5):  # index, middle, pinky, ring, thumb
        for i in range(1, 4):
            out.append(wrist + [side * (0.03 * i), 0.0, 0.02 * (finger - 2)])
    return np.array(out)


def rest_joint_layout(body: str) -> np.ndarray:
    """Designed rest joint positions (J, 3), metres, Y up."""
    parts = [_BODY_JOINTS]
    if body == "smplx":
        parts.append(np.array([[0.0, 0.58, 0.05], [0.03, 0.66, 0.09], [-0.03, 0.66, 0.09]]))
    parts += [_hand_joints(_BODY_JOINTS[20], 1.0), _hand_joints(_BODY_JOINTS[21], -1.0)]
    return np.concatenate(parts)


def body_like_mesh(num_vertices: int, segments: int = 84) -> tuple[np.ndarray, np.ndarray]:
    """A closed genus-0 mesh with exactly ``num_vertices`` vertices: (V, 3) float64, (F, 3) int64.

    Rings of ``segments`` vertices along Y between two poles; leftover vertices
    are inserted at face centroids (each splits one triangle in three).
    """
    rings = (num_vertices - 2) // segments
    extra = num_vertices - 2 - rings * segments
    y = np.linspace(0.70, -0.93, rings + 2)[1:-1]  # (R,)
    phi = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)  # (S,)
    rx = 0.16 + 0.56 * np.exp(-(((y - 0.46) / 0.05) ** 2))  # wide at the arms
    rz = 0.11 + 0.02 * np.cos(3 * y)
    rim = np.sqrt(
        np.clip(1 - ((y - y.mean()) / (np.ptp(y) / 2 + 0.02)) ** 8, 0.05, 1)
    )  # round ends
    ring_v = np.stack(
        [
            (rx * rim)[:, None] * np.cos(phi)[None],
            np.broadcast_to(y[:, None], (rings, segments)),
            (rz * rim)[:, None] * np.sin(phi)[None],
        ],
        -1,
    ).reshape(-1, 3)  # (R*S, 3)
    top, bottom = rings * segments, rings * segments + 1
    verts = np.concatenate([ring_v, [[0.0, 0.72, 0.0], [0.0, -0.95, 0.0]]])
    s = np.arange(segments)
    s1 = (s + 1) % segments
    faces = []
    for r in range(rings - 1):
        a, b = r * segments + s, r * segments + s1
        c, d = (r + 1) * segments + s, (r + 1) * segments + s1
        faces += [np.stack([a, c, b], 1), np.stack([b, c, d], 1)]
    faces.append(np.stack([np.full(segments, top), s, s1], 1))
    last = (rings - 1) * segments
    faces.append(np.stack([np.full(segments, bottom), last + s1, last + s], 1))
    faces = np.concatenate(faces)
    if extra:
        split = np.linspace(0, len(faces) - 1, extra).astype(np.int64)
        new_ids = len(verts) + np.arange(extra)
        verts = np.concatenate([verts, verts[faces[split]].mean(1)])
        a, b, c = faces[split].T
        keep = np.ones(len(faces), bool)
        keep[split] = False
        faces = np.concatenate(
            [
                faces[keep],
                np.stack([a, b, new_ids], 1),
                np.stack([b, c, new_ids], 1),
                np.stack([c, a, new_ids], 1),
            ]
        )
    return verts, np.ascontiguousarray(faces[:, ::-1], dtype=np.int64)  # outward normals


def _model_arrays(body: str, num_vertices: int, num_shape: int, seed: int, gender: str) -> dict:
    rng = np.random.default_rng(seed)
    joints = rest_joint_layout(body)
    J = len(joints)
    v, faces = body_like_mesh(num_vertices)
    scale = {"neutral": 1.0, "male": 1.04, "female": 0.96}[gender]
    v = v * scale
    joints = joints * scale
    V = len(v)
    # Skinning weights: the 4 nearest joints, softly.
    d = np.linalg.norm(v[:, None] - joints[None], axis=-1)  # (V, J)
    nearest = np.argsort(d, axis=1)[:, :4]
    w = np.zeros((V, J))
    np.put_along_axis(w, nearest, np.exp(-np.take_along_axis(d, nearest, 1) / 0.05), axis=1)
    w /= w.sum(1, keepdims=True)
    # Each joint regressed from its 8 nearest vertices.
    reg = np.zeros((J, V))
    for j in range(J):
        reg[j, np.argsort(d[:, j])[:8]] = 1 / 8
    # Smooth shape directions: random linear fields of position, a few cm per unit beta.
    coef = rng.normal(size=(num_shape, 4, 3)) * 0.01
    vh = np.concatenate([v, np.ones((V, 1))], 1)  # (V, 4)
    shapedirs = np.einsum("vk,skc->vcs", vh, coef)  # (V, 3, S)
    shapedirs += rng.normal(size=shapedirs.shape) * 1e-3
    posedirs = rng.normal(size=(V, 3, 9 * (J - 1))) * 2e-4
    hands = {}
    for side in "lr":
        q, _ = np.linalg.qr(rng.normal(size=(45, 45)))
        hands[f"hands_components{side}"] = q
        hands[f"hands_mean{side}"] = rng.normal(size=45) * 0.1
    kintree = np.array(
        [SMPLX_PARENTS if body == "smplx" else SMPLH_PARENTS, np.arange(J)], dtype=np.int64
    )
    kintree[0, 0] = 2**32 - 1  # as in the official files
    arrays = {
        "v_template": v,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J_regressor": reg,
        "weights": w,
        "kintree_table": kintree.astype(np.uint32),
        "f": faces.astype(np.uint32),
        **hands,
    }
    if body == "smplx":
        lmk_faces = rng.integers(0, len(faces), size=51)
        bary = rng.dirichlet(np.ones(3), size=51)
        arrays.update(
            lmk_faces_idx=lmk_faces,
            lmk_bary_coords=bary,
            dynamic_lmk_faces_idx=rng.integers(0, len(faces), size=(79, 17)),
            dynamic_lmk_bary_coords=rng.dirichlet(np.ones(3), size=(79, 17)),
        )
    return {k: (a.astype(np.float32) if a.dtype == np.float64 else a) for k, a in arrays.items()}


def _write_model(root, body, genders, layout, num_vertices, num_shape, seed) -> Path:
    root = Path(root)
    for i, gender in enumerate(genders):
        if layout == "smplx":
            path = root / body / f"{body.upper()}_{gender.upper()}.npz"
        elif layout == "amass":
            path = root / body / gender / "model.npz"
        else:
            raise ValueError(f"layout must be 'smplx' or 'amass', got {layout!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **_model_arrays(body, num_vertices, num_shape, seed + i, gender))
    return root


def write_smplh_model(
    root: str | Path, genders: tuple[str, ...] = ("neutral",), layout: str = "smplx", seed: int = 0
) -> Path:
    """Write synthetic SMPL+H model file(s) and return ``root`` (the ``--body-models`` folder).

    ``layout="smplx"`` writes ``root/smplh/SMPLH_NEUTRAL.npz``; ``layout="amass"`` writes
    ``root/smplh/neutral/model.npz``. One file per gender in ``genders``.
    """
    return _write_model(root, "smplh", genders, layout, 6890, 16, seed)


def write_smplx_model(
    root: str | Path,
    genders: tuple[str, ...] = ("neutral",),
    layout: str = "smplx",
    seed: int = 100,
) -> Path:
    """Write synthetic SMPL-X model file(s) (``root/smplx/SMPLX_NEUTRAL.npz``...) and return ``root``."""
    return _write_model(root, "smplx", genders, layout, 10475, 20, seed)


def amass_arrays(
    T: int = 30,
    kind: str = "smplh",
    gender: str = "neutral",
    fps: float = 60.0,
    num_betas: int | None = None,
    seed: int = 0,
) -> dict:
    """The arrays of an AMASS motion file (see :func:`write_amass_npz`)."""
    if num_betas is None:  # what the synthetic models of each kind use in full
        num_betas = {"smplh": 16, "smplx": 10}[kind]
    rng = np.random.default_rng(seed)
    width = {"smplh": 156, "smplx": 165}[kind]
    t = np.arange(T) / fps
    poses = np.zeros((T, width))
    # Root: Y-up model frame to AMASS's Z-up (+90 deg about x), slight sway.
    poses[:, 0] = np.pi / 2 + 0.05 * np.sin(2 * np.pi * t)
    poses[:, 2] = 0.1 * np.sin(np.pi * t)
    # Every other joint: a random smooth swing of up to ~0.4 rad.
    amp = rng.normal(size=width - 3) * 0.25
    phase = rng.uniform(0, 2 * np.pi, size=width - 3)
    poses[:, 3:] = amp * np.sin(2 * np.pi * 1.2 * t[:, None] + phase)
    trans = np.stack([0.8 * t, 0.05 * np.sin(2 * np.pi * t), np.full(T, 0.95)], 1)
    betas = rng.normal(size=num_betas)
    arrays = {"poses": poses, "trans": trans, "betas": betas, "gender": np.array(gender)}
    if kind == "smplh":
        arrays.update(mocap_framerate=np.array(fps), dmpls=rng.normal(size=(T, 8)) * 0.1)
    else:
        arrays.update(
            mocap_frame_rate=np.array(fps),
            surface_model_type=np.array("smplx"),
            num_betas=np.array(num_betas),
            root_orient=poses[:, :3],
            pose_body=poses[:, 3:66],
            pose_jaw=poses[:, 66:69],
            pose_eye=poses[:, 69:75],
            pose_hand=poses[:, 75:165],
        )
    return arrays


def write_amass_npz(
    path: str | Path,
    T: int = 30,
    kind: str = "smplh",
    gender: str = "neutral",
    fps: float = 60.0,
    num_betas: int | None = None,
    seed: int = 0,
    overrides: dict | None = None,
    drop: tuple[str, ...] = (),
) -> Path:
    """Write an AMASS-format ``.npz`` and return its path.

    ``num_betas`` defaults to the shape components the synthetic model of that kind uses:
    16 for SMPL+H, 10 for SMPL-X (real SMPL-X files have 16 betas for a 300-component
    model; the synthetic SMPL-X model has 10, so 16 would warn that 6 are dropped).
    ``kind="smplh"``: ``poses`` (T, 156), ``trans``, ``betas`` (num_betas,), ``gender``,
    ``mocap_framerate``, ``dmpls`` (T, 8). ``kind="smplx"``: a "stageii" file with
    ``poses`` (T, 165), ``mocap_frame_rate`` and the per-part keys. ``overrides``
    replaces or adds arrays and ``drop`` removes keys, to make broken files.
    """
    arrays = amass_arrays(T, kind, gender, fps, num_betas, seed)
    arrays.update(overrides or {})
    for key in drop:
        arrays.pop(key)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # keep the exact name (np.savez appends .npz otherwise)
        np.savez(f, **arrays)
    return path
