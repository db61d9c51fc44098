"""STMT: spatial-temporal mesh transformer for MoCap action recognition.

Zhu et al., "STMT: A Spatial-Temporal Mesh Transformer for MoCap-Based Action
Recognition", CVPR 2023. Read top to bottom: small blocks, the patch branch
(one module, geodesic or euclidean neighbours), the inter-frame transformer,
the model, then the size builders.

Input is a clip of the same N template vertices in every frame, (B, T, N, 3),
plus the template's (N, N) geodesic matrix. The template's points are in
farthest-point order, so the patch centres are simply points [0:P1] (level 1)
and [0:P2] (level 2): patch p of every frame is centred on template point p.

Differences from the released code, on purpose: the euclidean branch's
second level reads level-1 features (the original read the wrong level); all
offset-attention layers built are used (their outputs concatenated); the
transformer has learned frame-index and patch-identity embeddings (without
them it cannot tell a motion from the same motion backwards), and an optional
block-causal mask; the original's channel attention is replaced by a linear
projection to the transformer width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stmt.ops import offset_attention
from stmt.ops.grouping import group_max
from stmt.ops.neighbors import euclidean_knn, knn_indices
from stmt.ops.point_mlp import Linear, linear_norm_relu

# ----------------------------------------------------------------------------- blocks


class LinearBNReLU(nn.Module):
    """Shared (point-wise) Linear -> BatchNorm -> ReLU on the last dimension."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.linear = nn.Linear(c_in, c_out, bias=False)
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, x: Tensor) -> Tensor:  # (..., c_in) -> (..., c_out)
        return linear_norm_relu(x, self.linear, self.norm)  # relu(norm(linear(x)))


def shared_mlp(c_in: int, dims: tuple[int, ...]) -> nn.Sequential:
    layers, c = [], c_in
    for d in dims:
        layers.append(LinearBNReLU(c, d))
        c = d
    return nn.Sequential(*layers)


class OffsetAttention(nn.Module):
    """Point Cloud Transformer's offset attention: x + LBR(x - attention(x)).

    q and k share their weights, as in PCT; the attention itself (row softmax,
    column L1 normalisation, A^T v) is :func:`stmt.ops.offset_attention`.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.qk = Linear(dim, dim // 4, bias=False)
        self.v = Linear(dim, dim)
        self.lbr = LinearBNReLU(dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, P, C) -> (B, P, C)
        qk = self.qk(x)  # (B, P, C/4)
        x_r = offset_attention(qk, qk, self.v(x))  # (B, P, C)
        return x + self.lbr(x - x_r)


# ----------------------------------------------------------------------------- patch branch


class PatchBranch(nn.Module):
    """Per-frame patch features from one kind of neighbourhood.

    ``neighbors="geodesic"``: neighbours from the template's geodesic matrix
    (intrinsic, the same in every frame). ``neighbors="euclidean"``: kNN in 3D
    in each frame (extrinsic). Point MLP -> level 1 (``centers1`` centres,
    ``k`` neighbours among all points) -> level 2 (``centers2`` centres, ``k``
    neighbours among the level-1 centres, reading level-1 features) ->
    ``attn_layers`` offset-attention layers within the frame, outputs
    concatenated: ``out_dim = attn_layers * level2_dims[-1]``.
    """

    def __init__(
        self,
        neighbors: str,
        *,
        centers1: int,
        centers2: int,
        k: int,
        point_dims: tuple[int, ...],
        level1_dims: tuple[int, ...],
        level2_dims: tuple[int, ...],
        attn_layers: int,
    ):
        super().__init__()
        if neighbors not in ("geodesic", "euclidean"):
            raise ValueError(f"neighbors must be 'geodesic' or 'euclidean', not {neighbors!r}")
        if not centers2 <= centers1:
            raise ValueError(f"need centers2 <= centers1, got {centers2} > {centers1}")
        self.neighbors, self.centers1, self.centers2, self.k = neighbors, centers1, centers2, k
        c0, c1, c2 = point_dims[-1], level1_dims[-1], level2_dims[-1]
        self.point_mlp = shared_mlp(3, point_dims)
        # each neighbour: (offset xyz, neighbour feature - centre feature, centre feature)
        self.level1 = shared_mlp(3 + 2 * c0, level1_dims)
        self.level2 = shared_mlp(3 + 2 * c1, level2_dims)
        self.attn = nn.ModuleList(OffsetAttention(c2) for _ in range(attn_layers))
        self.out_dim = attn_layers * c2

    def _neighbors(self, xyz: Tensor, geodesic: Tensor, m: int, n: int) -> Tensor:
        """Indices of the k neighbours of centres [0:m] among points [0:n]."""
        if self.neighbors == "geodesic":
            return knn_indices(geodesic[..., :m, :n], self.k)  # (m, k) or (B, m, k)
        return euclidean_knn(xyz[:, :, :m], xyz[:, :, :n], self.k)  # (B, T, m, k)

    def group(self, xyz: Tensor, geodesic: Tensor) -> Tensor:
        """The point MLP, then two levels of grouping: (B, T, N, 3) -> (B, T, P2, C2).

        A level: for each centre i, the shared MLP on (xyz_j - xyz_i, f_j - f_i, f_i) of
        its k neighbours j, then the max over them (:func:`stmt.ops.grouping.group_max`)."""
        p1, p2 = self.centers1, self.centers2
        feat0 = self.point_mlp(xyz)  # (B, T, N, C0)
        idx1 = self._neighbors(xyz, geodesic, p1, xyz.shape[2])  # centres [0:P1] among all
        feat1 = group_max(self.level1, xyz, feat0, idx1, p1)  # (B, T, P1, C1)
        idx2 = self._neighbors(xyz, geodesic, p2, p1)  # centres [0:P2] among [0:P1]
        return group_max(self.level2, xyz[:, :, :p1], feat1, idx2, p2)  # (B, T, P2, C2)

    def attend(self, x: Tensor) -> Tensor:
        """Offset attention among the patches of each frame: (B, T, P2, C2) -> (B, T, P2, out_dim)."""
        B, T, P, C = x.shape
        x = x.reshape(B * T, P, C)  # (B*T, P2, C2)
        outs = []
        for layer in self.attn:
            x = layer(x)
            outs.append(x)
        return torch.cat(outs, dim=-1).reshape(B, T, P, self.out_dim)  # (B, T, P2, L*C2)

    def forward(self, xyz: Tensor, geodesic: Tensor) -> Tensor:
        return self.attend(self.group(xyz, geodesic))


# ----------------------------------------------------------------------------- transformer


def block_causal_mask(num_frames: int, tokens_per_frame: int, device=None) -> Tensor:
    """(L, L) bool, True = may attend: a token of frame t sees frames <= t."""
    frame = torch.arange(num_frames, device=device).repeat_interleave(tokens_per_frame)  # (L,)
    return frame[:, None] >= frame[None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention over the tokens of a clip (the inter-frame transformer's)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = Linear(dim, 3 * dim)
        self.proj = Linear(dim, dim)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, return_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, L, D), mask (L, L) bool True = may attend -> (B, L, D), weights (B, H, L, L)|None."""
        B, L, D = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.heads, D // self.heads)  # (B, L, 3, H, Dh)
        # each (B, H, L, Dh); unbound on its own axis, the gradients stack into qkv's
        # layout (a permuted unbind's stack needs a copy more)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        weights = None
        if return_weights:  # explicit path, only for attention rollout
            scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, L, L)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            out = weights @ v  # (B, H, L, Dh)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, Dh)
        out = out.transpose(1, 2).reshape(B, L, D)  # (B, L, H*Dh)
        return self.proj(out), weights


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), Linear(mlp_dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None, return_weights: bool = False):
        a, weights = self.attn(self.norm1(x), mask, return_weights)
        x = x + self.drop(a)
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, weights


class Transformer(nn.Module):
    """Inter-frame transformer over all T x P2 patch tokens, with a final LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, return_weights: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """(B, L, D) -> (B, L, D), and each block's (B, H, L, L) weights if asked."""
        all_weights = []
        for block in self.blocks:
            x, weights = block(x, mask, return_weights)
            if weights is not None:
                all_weights.append(weights)
        return self.norm(x), all_weights


# ----------------------------------------------------------------------------- model


class STMT(nn.Module):
    """Two patch branches (geodesic, euclidean) -> inter-frame transformer -> head.

    ``num_classes=0`` builds the backbone without a classification head (as
    the pretrainer uses it); ``forward`` then is not available.
    """

    def __init__(
        self,
        num_classes: int,
        num_frames: int = 24,
        num_points: int = 512,
        centers1: int = 64,
        centers2: int = 32,
        k: int = 8,
        point_dims: tuple[int, ...] = (64, 64),
        level1_dims: tuple[int, ...] = (128, 128),
        level2_dims: tuple[int, ...] = (256, 256),
        attn_layers: int = 2,
        width: int = 1024,
        depth: int = 5,
        heads: int = 8,
        mlp_dim: int = 512,
        dropout: float = 0.0,
        head_dims: tuple[int, ...] = (512, 128),
        head_dropout: float = 0.5,
        pool: str = "max",
    ):
        super().__init__()
        if not centers2 <= centers1 <= num_points:
            raise ValueError(
                f"need centers2 <= centers1 <= num_points, got {centers2}, {centers1}, {num_points}"
            )
        if pool not in ("max", "mean"):
            raise ValueError(f"pool must be 'max' or 'mean', not {pool!r}")
        self.num_classes, self.num_frames, self.num_points = num_classes, num_frames, num_points
        self.num_patches, self.pool = centers2, pool
        branch = {
            "centers1": centers1,
            "centers2": centers2,
            "k": k,
            "point_dims": tuple(point_dims),
            "level1_dims": tuple(level1_dims),
            "level2_dims": tuple(level2_dims),
            "attn_layers": attn_layers,
        }
        self.branches = nn.ModuleList(
            [PatchBranch("geodesic", **branch), PatchBranch("euclidean", **branch)]
        )
        self.feature_dim = sum(b.out_dim for b in self.branches)
        self.proj = Linear(self.feature_dim, width)
        self.frame_embed = nn.Parameter(torch.zeros(num_frames, width))
        self.patch_embed = nn.Parameter(torch.zeros(centers2, width))
        nn.init.trunc_normal_(self.frame_embed, std=0.02)
        nn.init.trunc_normal_(self.patch_embed, std=0.02)
        self.transformer = Transformer(width, depth, heads, mlp_dim, dropout)
        self.width = width
        self.head = None
        if num_classes > 0:
            layers, c = [], width
            for d in head_dims:
                layers += [
                    Linear(c, d, bias=False),
                    nn.BatchNorm1d(d),
                    nn.ReLU(),
                    nn.Dropout(head_dropout),
                ]
                c = d
            self.head = nn.Sequential(*layers, Linear(c, num_classes))

    # -- pieces (the pretrainer reuses them)

    def check_input(self, vertices: Tensor, geodesic: Tensor) -> None:
        _B, T, N, three = vertices.shape
        if three != 3 or N != self.num_points or T > self.num_frames:
            raise ValueError(
                f"expected vertices (B, T<={self.num_frames}, {self.num_points}, 3), got {tuple(vertices.shape)}"
            )
        if geodesic.shape[-2:] != (N, N) or geodesic.ndim not in (2, 3):
            raise ValueError(
                f"expected geodesic ({N}, {N}) or (B, {N}, {N}), got {tuple(geodesic.shape)}"
            )

    def embed(self, features: Tensor) -> Tensor:
        """Patch features (B, T, P2, F) -> tokens (B, T*P2, D) with frame and patch embeddings."""
        B, T, P, _ = features.shape
        x = self.proj(features)  # (B, T, P2, D)
        x = x + self.frame_embed[:T, None] + self.patch_embed  # (B, T, P2, D)
        return x.reshape(B, T * P, self.width)  # (B, T*P2, D)

    def encode(self, tokens: Tensor, causal: bool = False, return_weights: bool = False):
        """Transformer over (B, T*P2, D) tokens; block-causal over frames if ``causal``."""
        T = tokens.shape[1] // self.num_patches
        mask = block_causal_mask(T, self.num_patches, tokens.device) if causal else None
        return self.transformer(tokens, mask, return_weights)

    def patch_features(self, vertices: Tensor, geodesic: Tensor) -> Tensor:
        """(B, T, N, 3) -> (B, T, P2, F): geodesic and euclidean features side by side."""
        self.check_input(vertices, geodesic)
        return torch.cat([b(vertices, geodesic) for b in self.branches], dim=-1)

    # -- public API

    def forward_features(self, vertices: Tensor, geodesic: Tensor, causal: bool = False) -> Tensor:
        """vertices (B, T, N, 3), geodesic (N, N) or (B, N, N) -> tokens (B, T*P2, D)."""
        tokens = self.embed(self.patch_features(vertices, geodesic))
        return self.encode(tokens, causal)[0]

    def forward(self, vertices: Tensor, geodesic: Tensor) -> Tensor:
        """vertices (B, T, N, 3), geodesic (N, N) or (B, N, N) -> logits (B, num_classes)."""
        if self.head is None:
            raise RuntimeError("this STMT was built without a head (num_classes=0)")
        x = self.forward_features(vertices, geodesic)  # (B, T*P2, D)
        x = x.amax(dim=1) if self.pool == "max" else x.mean(dim=1)  # (B, D)
        return self.head(x)

    @torch.no_grad()
    def attention_rollout(self, vertices: Tensor, geodesic: Tensor) -> Tensor:
        """Relevance of each patch token by attention rollout (Abnar & Zuidema, 2020).

        Per layer: average the heads, add the identity for the residual path,
        renormalise the rows; multiply the layers' matrices from the first up.
        A token's relevance is the mean of its column over all query rows.

        Returns:
            (B, T, P2), each clip summing to 1 over all T*P2 tokens.
        """
        B, T = vertices.shape[:2]
        tokens = self.embed(self.patch_features(vertices, geodesic))
        _, weights = self.encode(tokens, return_weights=True)
        L = tokens.shape[1]
        rollout = torch.eye(L, device=tokens.device).expand(B, L, L)  # (B, L, L)
        for w in weights:
            a = w.float().mean(dim=1) + torch.eye(L, device=w.device)  # (B, L, L)
            a = a / a.sum(dim=-1, keepdim=True)
            rollout = a @ rollout
        relevance = rollout.mean(dim=1)  # (B, L)
        relevance = relevance / relevance.sum(dim=-1, keepdim=True)
        return relevance.reshape(B, T, self.num_patches)  # (B, T, P2)


# ----------------------------------------------------------------------------- builders


def stmt_base(num_classes: int, num_frames: int = 24, num_points: int = 512, **kw) -> STMT:
    """Close to the released model: 2 x 512 features per patch, transformer 1024 x 5, 8 heads, MLP 512."""
    return STMT(num_classes, num_frames, num_points, **kw)


def stmt_tiny(num_classes: int, num_frames: int = 24, num_points: int = 256, **kw) -> STMT:
    """Trains in minutes on 2 CPU cores: 32/16 centres, narrow branches, transformer 128 x 2."""
    args = {
        "centers1": 32,
        "centers2": 16,
        "k": 8,
        "point_dims": (32,),
        "level1_dims": (64,),
        "level2_dims": (64,),
        "attn_layers": 1,
        "width": 128,
        "depth": 2,
        "heads": 4,
        "mlp_dim": 256,
        "head_dims": (128,),
        "head_dropout": 0.2,
    }
    args.update(kw)
    return STMT(num_classes, num_frames, num_points, **args)


ARCHS = {"stmt_base": stmt_base, "stmt_tiny": stmt_tiny}


class Ensemble(nn.Module):
    """Models of one arch and class list trained apart (seeds of one recipe): the mean of
    their logits, and of their attention rollouts. Runs of one recipe that differ only in
    the seed disagree most on people and sources none of them saw; the mean is steadier
    than any one of them (``stmt calibrate A.ckpt B.ckpt ...`` builds one)."""

    def __init__(self, members: list[STMT]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, vertices: Tensor, geodesic: Tensor) -> Tensor:
        """vertices (B, T, N, 3), geodesic (N, N) or (B, N, N) -> mean logits (B, C)."""
        return torch.stack([m(vertices, geodesic) for m in self.members]).mean(dim=0)

    @torch.no_grad()
    def attention_rollout(self, vertices: Tensor, geodesic: Tensor) -> Tensor:
        """(B, T, P2) mean of the members' rollouts (each clip still sums to 1)."""
        return torch.stack([m.attention_rollout(vertices, geodesic) for m in self.members]).mean(0)

    def groups(self, counts: list[int]) -> list[Ensemble]:
        """The members as consecutive groups of ``counts`` (sharing the weights): an
        ensemble's members trained on windows of several lengths, one group per length."""
        if sum(counts) != len(self.members) or min(counts, default=0) < 1:
            raise ValueError(f"groups of {counts} do not split {len(self.members)} members")
        starts = [sum(counts[:i]) for i in range(len(counts))]
        return [Ensemble(list(self.members[a : a + n])) for a, n in zip(starts, counts)]


def build_model(arch: str, members: int = 1, **kw) -> STMT | Ensemble:
    """Build a model by size name (``"stmt_tiny"`` or ``"stmt_base"``) with constructor
    overrides; ``members`` > 1: an :class:`Ensemble` of that many."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {sorted(ARCHS)}")
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ValueError(f"members must be a whole number >= 1, got {members!r}")
    if members == 1:
        return ARCHS[arch](**kw)
    return Ensemble([ARCHS[arch](**kw) for _ in range(members)])
