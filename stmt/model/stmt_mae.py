"""Self-supervised pretraining around the STMT backbone.

Two tasks share one encoder (``self.encoder``, an :class:`~stmt.model.stmt.STMT`
without head) and one light decoder:

- Masked vertex modelling (MVM): a share of the patch tokens is masked
  (**mask convention: a bool tensor (B, T, P2), True = masked**). Masked
  patches' level-2 features are replaced by a learned mask token in each
  branch *before* the in-frame offset attention, so a masked patch's own
  features reach no other token; the encoder runs bidirectionally and the
  decoder reconstructs each masked patch's vertices in patch-local
  coordinates (its ``patch_size`` geodesically nearest template vertices,
  minus the centre vertex). Vertex ids are fixed, so the correspondence is
  exact. L2 loss over masked patches only. With ``masking="tube"`` the same
  patches are masked in every frame (copying from the neighbouring frames is
  then impossible); ``"random"`` masks tokens independently.
- Future frame prediction (FFP): the encoder runs block-causally on the
  unmasked clip (a token of frame t sees frames <= t), and the decoder, also
  block-causal, predicts frame t+1's patch vertices relative to the patch
  centre at frame t (so the target holds the patch's motion and its shape).

The loss is ``mvm + ffp_weight * ffp``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stmt.model.stmt import STMT, Transformer, block_causal_mask, build_model
from stmt.ops.neighbors import gather_neighbors, knn_indices
from stmt.ops.point_mlp import Linear


def sample_mask(
    batch: int, frames: int, patches: int, ratio: float, masking: str, device=None
) -> Tensor:
    """(B, T, P) bool, True = masked; exactly ``round(ratio * count)`` masked per clip."""
    if masking == "tube":
        n = round(ratio * patches)
        order = torch.rand(batch, patches, device=device).argsort(dim=-1)  # (B, P)
        mask = order < n  # rank < n: a uniformly random subset of size n
        return mask[:, None].expand(batch, frames, patches)
    if masking == "random":
        n = round(ratio * frames * patches)
        order = torch.rand(batch, frames * patches, device=device).argsort(dim=-1)  # (B, T*P)
        return (order < n).reshape(batch, frames, patches)
    raise ValueError(f"masking must be 'tube' or 'random', not {masking!r}")


class STMTMAE(nn.Module):
    """STMT encoder + light transformer decoder for MVM and FFP.

    ``arch``, ``model_args``: the encoder (:func:`stmt.model.stmt.build_model`, without a
    head); ``patch_size`` vertices reconstructed per patch, ``mask_ratio`` and
    ``masking`` (module docstring), the decoder's width, depth and heads. The defaults
    are :class:`stmt.engine.pretrainer.PretrainingModule`'s."""

    def __init__(
        self,
        arch: str,
        model_args: dict | None,
        *,
        patch_size: int,
        mask_ratio: float,
        masking: str,
        decoder_width: int,
        decoder_depth: int,
        decoder_heads: int,
    ):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        sample_mask(1, 1, 2, mask_ratio, masking)  # checks the masking name
        self.encoder: STMT = build_model(arch, **{**(model_args or {}), "num_classes": 0})
        self.patch_size, self.mask_ratio, self.masking = patch_size, mask_ratio, masking
        # one mask token per branch, at the level-2 feature width
        c2 = [b.attn[0].v.in_features for b in self.encoder.branches]
        self.mask_tokens = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in c2)
        for t in self.mask_tokens:
            nn.init.trunc_normal_(t, std=0.02)
        self.decoder_embed = Linear(self.encoder.width, decoder_width)
        self.decoder = Transformer(decoder_width, decoder_depth, decoder_heads, 2 * decoder_width)
        self.mvm_head = Linear(decoder_width, patch_size * 3)
        self.ffp_head = Linear(decoder_width, patch_size * 3)

    def patch_vertex_ids(self, geodesic: Tensor) -> Tensor:
        """(P2, K) or (B, P2, K): each patch's K geodesically nearest template vertices."""
        return knn_indices(geodesic[..., : self.encoder.num_patches, :], self.patch_size)

    def forward_encoder(
        self, vertices: Tensor, geodesic: Tensor, mask: Tensor | None, causal: bool
    ) -> Tensor:
        """vertices (B, T, N, 3), mask (B, T, P2) True = masked or None -> latent (B, T*P2, D)."""
        enc = self.encoder
        enc.check_input(vertices, geodesic)
        feats = []
        for branch, token in zip(enc.branches, self.mask_tokens):
            x = branch.group(vertices, geodesic)  # (B, T, P2, C2)
            if mask is not None:
                x = torch.where(mask[..., None], token.to(x.dtype), x)
            feats.append(branch.attend(x))  # (B, T, P2, L*C2)
        tokens = enc.embed(torch.cat(feats, dim=-1))  # (B, T*P2, D)
        return enc.encode(tokens, causal)[0]

    def forward_decoder(self, latent: Tensor, task: str) -> Tensor:
        """latent (B, T*P2, D) -> patch vertices (B, T, P2, K, 3); ``task`` "mvm" or "ffp" (block-causal)."""
        B, L, _ = latent.shape
        P = self.encoder.num_patches
        T = L // P
        mask = block_causal_mask(T, P, latent.device) if task == "ffp" else None
        x, _ = self.decoder(self.decoder_embed(latent), mask)  # (B, T*P2, Dd)
        head = self.ffp_head if task == "ffp" else self.mvm_head
        return head(x).reshape(B, T, P, self.patch_size, 3)  # (B, T, P2, K, 3)

    def targets(self, vertices: Tensor, geodesic: Tensor) -> tuple[Tensor, Tensor]:
        """MVM target (B, T, P2, K, 3) and FFP target (B, T-1, P2, K, 3)."""
        P = self.encoder.num_patches
        patch = gather_neighbors(vertices, self.patch_vertex_ids(geodesic))  # (B, T, P2, K, 3)
        centre = vertices[:, :, :P, None]  # (B, T, P2, 1, 3)
        return patch - centre, patch[:, 1:] - centre[:, :-1]

    def forward_loss(
        self, vertices: Tensor, geodesic: Tensor, mvm_pred: Tensor, ffp_pred: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(MVM loss over masked patches, FFP loss over frames 0..T-2); both mean squared error."""
        mvm_target, ffp_target = self.targets(vertices, geodesic)
        per_patch = (mvm_pred.float() - mvm_target).pow(2).mean(dim=(-2, -1))  # (B, T, P2)
        mvm = (per_patch * mask).sum() / mask.sum().clamp(min=1)
        ffp = F.mse_loss(ffp_pred[:, :-1].float(), ffp_target)
        return mvm, ffp

    def forward(
        self, vertices: Tensor, geodesic: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Both losses for a clip batch; the mask is sampled when not given."""
        B, T = vertices.shape[:2]
        if T < 2:
            raise ValueError("future frame prediction needs clips of at least 2 frames")
        if mask is None:
            mask = sample_mask(
                B, T, self.encoder.num_patches, self.mask_ratio, self.masking, vertices.device
            )
        mvm_pred = self.forward_decoder(
            self.forward_encoder(vertices, geodesic, mask, causal=False), "mvm"
        )
        ffp_pred = self.forward_decoder(
            self.forward_encoder(vertices, geodesic, None, causal=True), "ffp"
        )
        return self.forward_loss(vertices, geodesic, mvm_pred, ffp_pred, mask)
