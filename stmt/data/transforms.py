"""Clip normalisation and augmentation, shared by training and ``stmt classify``.

:func:`normalize_clip` is the one normalisation: the DataModule applies it to
every training/evaluation clip and ``classify`` to every window, so both see
clips in the same frame of reference.
"""

from __future__ import annotations

import math

import numpy as np


def normalize_clip(vertices, eps: float = 1e-6):
    """Centre a clip on the ground and scale it by the body's height.

    For each clip (the last three axes are ``(T, N, 3)``, metres, Z-up):

    1. ``x, y``: subtract the centre of the clip's bounding box in x and y, taken
       over all T frames and N points (so motion across the floor within the clip,
       e.g. walking, stays visible);
    2. ``z``: subtract the clip's lowest z over all frames (the floor goes to z = 0);
    3. divide all three coordinates by the body height ``h``: the largest
       per-frame vertical extent (max z - min z within one frame) over the T
       frames. Taking the tallest frame keeps squats and sits from being scaled
       up to standing size when the clip also shows the person upright.

    The result is roughly z in [0, 1], x and y within a few units of 0.

    Args:
        vertices: numpy array or torch tensor ``(..., T, N, 3)``.
        eps: lower bound on ``h``.

    Returns:
        The same type, shape and dtype, normalised (a new array/tensor).
    """
    if hasattr(vertices, "detach"):  # torch tensor
        v = vertices
        lo_xy = v[..., :2].amin(dim=(-3, -2), keepdim=True)  # (..., 1, 1, 2)
        hi_xy = v[..., :2].amax(dim=(-3, -2), keepdim=True)
        z = v[..., 2:]  # (..., T, N, 1)
        floor = z.amin(dim=(-3, -2), keepdim=True)  # (..., 1, 1, 1)
        frame_extent = z.amax(dim=-2, keepdim=True) - z.amin(dim=-2, keepdim=True)  # (..., T, 1, 1)
        height = frame_extent.amax(dim=-3, keepdim=True).clamp_min(eps)  # (..., 1, 1, 1)
        centre = torch_cat_xyz(0.5 * (lo_xy + hi_xy), floor)
        return (v - centre) / height
    v = np.asarray(vertices)
    lo_xy = v[..., :2].min(axis=(-3, -2), keepdims=True)  # (..., 1, 1, 2)
    hi_xy = v[..., :2].max(axis=(-3, -2), keepdims=True)
    z = v[..., 2:]  # (..., T, N, 1)
    floor = z.min(axis=(-3, -2), keepdims=True)  # (..., 1, 1, 1)
    frame_extent = z.max(axis=-2, keepdims=True) - z.min(axis=-2, keepdims=True)  # (..., T, 1, 1)
    height = np.maximum(frame_extent.max(axis=-3, keepdims=True), eps)  # (..., 1, 1, 1)
    centre = np.concatenate([0.5 * (lo_xy + hi_xy), floor], axis=-1)  # (..., 1, 1, 3)
    return ((v - centre) / height).astype(v.dtype, copy=False)


def torch_cat_xyz(xy, z):
    import torch

    return torch.cat([xy, z], dim=-1)  # (..., 1, 1, 3)


def rotation_matrix(yaw: float, tilt: float = 0.0, tilt_axis: float = 0.0) -> np.ndarray:
    """(3, 3) float32: rotate by ``yaw`` about z, then by ``tilt`` about a horizontal
    axis at angle ``tilt_axis`` in the xy plane (radians)."""
    c, s = math.cos(yaw), math.sin(yaw)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    if tilt == 0.0:
        return rz.astype(np.float32)
    ax = np.array([math.cos(tilt_axis), math.sin(tilt_axis), 0.0])
    k = np.array([[0, -ax[2], ax[1]], [ax[2], 0, -ax[0]], [-ax[1], ax[0], 0]])
    rt = np.eye(3) + math.sin(tilt) * k + (1 - math.cos(tilt)) * (k @ k)  # Rodrigues
    return (rt @ rz).astype(np.float32)
