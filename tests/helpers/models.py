"""The smallest stmt_tiny the model tests build (one transformer block, 16 / 8 centres)."""

from __future__ import annotations

import torch

from stmt.model import build_model


def tiny_model(num_frames: int, num_points: int, num_classes: int = 3) -> torch.nn.Module:
    """A seeded (0) stmt_tiny with one transformer block and no head dropout."""
    torch.manual_seed(0)
    return build_model(
        "stmt_tiny", num_classes=num_classes, num_frames=num_frames, num_points=num_points,
        centers1=16, centers2=8, depth=1, head_dropout=0.0,
    )  # fmt: skip
