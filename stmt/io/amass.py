"""AMASS parameter files (SMPL+H ``.npz`` and SMPL-X "stageii" ``.npz``) -> :class:`~stmt.motion.AmassMotion`.

SMPL+H files: ``poses`` (T, 156) = root 3, body 63, left hand 45, right hand
45 (axis-angle); ``trans`` (T, 3); ``betas`` (16,); ``gender``;
``mocap_framerate``; ``dmpls`` (T, 8) is accepted and ignored (soft-tissue
components need the separate DMPL files, and barely move the surface).

SMPL-X stageii files: ``poses`` (T, 165) = root 3, body 63, jaw 3, eyes 6,
left hand 45, right hand 45; ``mocap_frame_rate``; ``trans``; ``betas``;
``gender``. Files without ``poses`` are assembled from the per-part keys
``root_orient``, ``pose_body``, (``pose_jaw``, ``pose_eye``,) ``pose_hand``.

AMASS sequences are already Z up in metres: ``trans`` and the root
orientation are kept as they are.

Posing them on a body is :mod:`stmt.body`'s (:func:`stmt.body.amass_body` picks it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stmt import limits
from stmt.errors import InputError
from stmt.io.detect import SUPPORTED
from stmt.motion import AMASS_FAMILIES, AmassMotion
from stmt.npz import npz_array, npz_header, open_npz

_KIND = {"amass-smplh": "smplh", "amass-smplx": "smplx"}
MAX_AXIS_ANGLE = 4 * np.pi  # an axis-angle longer than two turns was written in degrees
_PARTS = {
    "smplh": [("root_orient", 3), ("pose_body", 63), ("pose_hand", 90)],
    "smplx": [
        ("root_orient", 3),
        ("pose_body", 63),
        ("pose_jaw", 3),
        ("pose_eye", 6),
        ("pose_hand", 90),
    ],
}


def _numeric(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or x.dtype.kind == "c":
        raise InputError(path, f"'{key}' holds {x.dtype} values; expected real numbers")
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        where = f" (first at frame {bad[0]})" if x.ndim == 2 else ""
        raise InputError(path, f"'{key}' contains NaN or Inf{where}")
    return x


def _gender(path: Path, raw: np.ndarray) -> str:
    if raw.size != 1 or raw.dtype.kind not in "SU":
        raise InputError(
            path,
            f"'gender' must be one string (male, female or neutral), got {raw.dtype} {raw.shape}",
        )
    value = raw.reshape(-1)[0]
    value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    value = value.strip().lower()
    if value not in ("male", "female", "neutral"):
        raise InputError(path, f"gender is {value!r}; expected male, female or neutral")
    return value


def load_amass(path: str | Path, fmt: str) -> AmassMotion:
    """Read and check an AMASS ``.npz`` of format ``fmt`` ("amass-smplh" | "amass-smplx")."""
    path = Path(path)
    kind = _KIND[fmt]
    npz = open_npz(path, SUPPORTED)
    keys = set(npz.files)
    rate_key = next((k for k in ("mocap_framerate", "mocap_frame_rate") if k in keys), None)
    if rate_key is None:
        raise InputError(
            path, "missing key 'mocap_framerate' (or 'mocap_frame_rate'): the frame rate"
        )
    rate = npz_array(npz, path, rate_key)
    if rate.size != 1:
        raise InputError(path, f"'{rate_key}' has shape {rate.shape}; expected one number")
    if rate.dtype.kind in "fiu" and not np.isfinite(rate).all():
        raise InputError(path, f"'{rate_key}' contains NaN or Inf")
    fps = limits.check_fps(path, rate, f"'{rate_key}'")  # a real number: not True, not "30"

    # the frame count and duration, from the array headers, before anything unpacks
    for key in ["poses"] if "poses" in keys else [k for k, _ in _PARTS[kind]][:1]:
        if key in keys:
            shape, _ = npz_header(npz, path, key)
            if shape:
                limits.check_frames(path, shape[0], fps)
    if "poses" in keys:
        poses = npz_array(npz, path, "poses")
    else:  # per-part keys only
        parts = [npz_array(npz, path, key, f"{width} columns") for key, width in _PARTS[kind]]
        for (key, width), part in zip(_PARTS[kind], parts):
            if part.ndim != 2 or part.shape[1] != width:
                raise InputError(path, f"'{key}' has shape {part.shape}; expected (T, {width})")
            if len(part) != len(parts[0]):
                raise InputError(
                    path, f"'{key}' has {len(part)} frames but 'root_orient' has {len(parts[0])}"
                )
        poses = np.concatenate(parts, axis=1)
    name, width = AMASS_FAMILIES[kind]
    if poses.ndim != 2 or poses.shape[1] != width:
        raise InputError(
            path, f"poses has shape {poses.shape}; expected (T, {width}) for AMASS {name}"
        )
    if poses.shape[0] == 0:
        raise InputError(path, f"the sequence has zero frames (poses is {poses.shape})")
    poses = _numeric(path, "poses", poses)
    turn = np.linalg.norm(poses.reshape(len(poses), -1, 3), axis=-1)  # (T, joints) radians
    if turn.max() > MAX_AXIS_ANGLE:  # a conversion gives at most pi; unwrapped, a little more
        t, j = np.unravel_index(int(turn.argmax()), turn.shape)
        raise InputError(
            path,
            f"'poses' turns joint {j} by {turn[t, j]:.4g} rad at frame {t}; AMASS stores "
            "axis-angles in radians and these look like degrees",
        )

    trans = npz_array(npz, path, "trans", "root translation (T, 3)")
    if trans.ndim != 2 or trans.shape[1] != 3:
        raise InputError(path, f"trans has shape {trans.shape}; expected (T, 3)")
    if trans.shape[0] != poses.shape[0]:
        raise InputError(
            path,
            f"trans has {trans.shape[0]} frames but poses has {poses.shape[0]}; they must match",
        )
    trans = _numeric(path, "trans", trans)

    betas = None
    if "betas" in keys:
        b = _numeric(path, "betas", npz_array(npz, path, "betas"))
        if b.ndim == 2 and len(b) >= 1 and np.allclose(b, b[:1]):  # (1, B) or one row per frame
            b = b[0]
        if b.ndim != 1:
            raise InputError(path, f"betas has shape {b.shape}; expected one body shape (B,)")
        betas = b
    gender = _gender(path, npz_array(npz, path, "gender")) if "gender" in keys else None
    return AmassMotion(
        kind=kind, poses=poses, trans=trans, betas=betas, gender=gender, fps=fps, source=path
    )
