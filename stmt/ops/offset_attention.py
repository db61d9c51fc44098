"""Offset attention's attention step (Point Cloud Transformer), one public function.

Given q, k of shape (B, N, Dk) and v of shape (B, N, Dv):

    S = row-softmax(q k^T)                      (B, N, N)
    A[i, j] = S[i, j] / (eps + sum_i S[i, j])   each column L1-normalised
    out = A^T v                                 (B, N, Dv), out[j] = sum_i A[i, j] v[i]

as PCT computes it before the ``x - out`` step.
"""

from __future__ import annotations

import torch
from torch import Tensor


def offset_attention_reference(q: Tensor, k: Tensor, v: Tensor, eps: float = 1e-9) -> Tensor:
    """Plain PyTorch offset attention; the ground truth for any kernel."""
    scores = torch.einsum("bid,bjd->bij", q.float(), k.float())  # (B, N, N)
    s = scores.softmax(dim=-1)  # row softmax
    a = s / (eps + s.sum(dim=1, keepdim=True))  # column L1 normalisation
    out = torch.einsum("bij,bic->bjc", a, v.float())  # A^T v: (B, N, Dv)
    return out.to(v.dtype)


def offset_attention(q: Tensor, k: Tensor, v: Tensor, eps: float = 1e-9) -> Tensor:
    """Offset attention: ``A^T v`` with A the column-normalised row-softmax of ``q k^T``.

    Args:
        q: (B, N, Dk) queries.
        k: (B, N, Dk) keys.
        v: (B, N, Dv) values.
        eps: added to each column sum before dividing.

    Returns:
        (B, N, Dv), in v's dtype.
    """
    if q.ndim != 3 or k.shape != q.shape or v.ndim != 3 or v.shape[:2] != q.shape[:2]:
        raise ValueError(
            f"expected q, k (B, N, Dk) and v (B, N, Dv); got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    return offset_attention_reference(q, k, v, eps)
