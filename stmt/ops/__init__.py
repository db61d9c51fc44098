"""Tensor ops of the model, each a public function with a plain PyTorch reference.

Fast kernels are optional swap-ins (``STMT_DISABLE_KERNELS=1`` forces the
reference)."""

from stmt.ops.offset_attention import offset_attention

__all__ = ["offset_attention"]
