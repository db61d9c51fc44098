"""Training augmentation of clips (the normalisation is :func:`stmt.clip.normalise`).

:func:`augment_matrices` draws one 3x3 matrix per clip; :func:`stmt.clip.normalise`
applies it after the normalisation, in the same affine map.
"""

from __future__ import annotations

import math

import numpy as np


def augment_matrices(
    B: int,
    rng: np.random.Generator,
    rotate_range: float = 0.0,
    tilt_deg: float = 0.0,
    scale_min: float = 1.0,
    scale_max: float = 1.0,
    mirror: bool = False,
) -> np.ndarray:
    """(B, 3, 3) float32: random mirror, yaw, then tilt, then scale (column vectors:
    v' = M v).

    Mirror: x -> -x with probability 1/2 (left and right swap: for label sets with no
    left/right classes); yaw: U(-rotate_range, rotate_range) rad about z; tilt:
    U(-tilt_deg, tilt_deg) degrees about a horizontal axis at a uniform angle
    (Rodrigues); scale: U(scale_min, scale_max).
    """
    mats = np.broadcast_to(np.eye(3), (B, 3, 3)).copy()
    if rotate_range > 0:
        a = rng.uniform(-rotate_range, rotate_range, B)
        c, s = np.cos(a), np.sin(a)
        rz = np.zeros((B, 3, 3))
        rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = c, -s, s, c, 1
        mats = rz @ mats
    if tilt_deg > 0:
        t = np.radians(rng.uniform(-tilt_deg, tilt_deg, B))
        phi = rng.uniform(0, 2 * math.pi, B)
        k = np.zeros((B, 3, 3))  # cross-product matrix of the axis (cos phi, sin phi, 0)
        k[:, 0, 2], k[:, 1, 2] = np.sin(phi), -np.cos(phi)
        k[:, 2, 0], k[:, 2, 1] = -np.sin(phi), np.cos(phi)
        rt = np.eye(3) + np.sin(t)[:, None, None] * k + (1 - np.cos(t))[:, None, None] * (k @ k)
        mats = rt @ mats
    if scale_max > scale_min or scale_min != 1.0:
        mats = mats * rng.uniform(scale_min, scale_max, B)[:, None, None]
    if mirror:
        mats[rng.random(B) < 0.5, :, 0] *= -1  # M @ diag(-1, 1, 1): mirrored first
    return mats.astype(np.float32)
