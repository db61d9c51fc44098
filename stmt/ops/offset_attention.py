"""Offset attention's attention step (Point Cloud Transformer), one public function.

Given q, k of shape (B, N, Dk) and v of shape (B, N, Dv):

    S = row-softmax(q k^T)                      (B, N, N)
    A[i, j] = S[i, j] / (eps + sum_i S[i, j])   each column L1-normalised
    out = A^T v                                 (B, N, Dv), out[j] = sum_i A[i, j] v[i]

as PCT computes it before the ``x - out`` step.

Three layers (see ``shared/STYLE.md``, "Kernels"):

1. ``_build_kernels``: the Triton kernels, one program per batch element; the
   whole (N, N) score block lives in registers (N <= 128), so the N x N matrix
   is never written to memory, forward or backward.
2. ``_forward_op`` / ``_backward_op``: the kernels as ``torch.library``
   custom ops (``stmt::offset_attention_fwd`` / ``_bwd``) with fake functions
   for tracing and the backward registered as the forward's autograd formula,
   so ``torch.compile`` calls them as opaque nodes without graph breaks. The
   forward returns (and autograd saves) q, k, v and two (B, N) float32
   statistics: each row's softmax log-sum-exp and each column's
   ``eps + sum_i S[i, j]``; the backward recomputes S and A from them.
3. ``offset_attention``: the public function; checks its arguments and uses the
   kernel for CUDA tensors when Triton is importable, else the reference; in
   float32 only when autograd records the call (the kernel was the faster one
   there, measured; ``KERNEL_FLOAT32``).
   ``STMT_DISABLE_KERNELS=1`` forces the reference.

Backward (per batch element, G = dL/d out, d_j = eps + sum_i S[i, j]):

    dv      = A G                               dv_i = sum_j A[i, j] g_j
    dA      = V G^T                             dA[i, j] = v_i . g_j
    r_j     = sum_i A[i, j] dA[i, j]            (= g_j . out_j)
    dS[i,j] = (dA[i, j] - r_j) / d_j            through the column normalisation
    t_i     = sum_j S[i, j] dS[i, j]
    dX[i,j] = S[i, j] (dS[i, j] - t_i)          through the row softmax, X = q k^T
    dq      = dX k,   dk = dX^T q

Triton is imported only on the kernel path, so ``import stmt.ops`` works
without it.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from stmt.env import env_flag
from stmt.ops.dispatch import (
    constant_when_traced,
    jit_kernels,
    kernels_allowed,
    next_pow2,
    triton_importable,
)

#: Largest N the kernel takes (the whole N x N block is held by one program).
MAX_N = 128
#: Largest Dk and Dv the kernel takes.
MAX_D = 256

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def offset_attention_reference(q: Tensor, k: Tensor, v: Tensor, eps: float = 1e-9) -> Tensor:
    """Plain PyTorch offset attention; the ground truth for any kernel.

    Computes in float32 (float64 if an input is float64); returns v's dtype."""
    wide = torch.float64 if torch.float64 in (q.dtype, k.dtype, v.dtype) else torch.float32
    scores = torch.einsum("bid,bjd->bij", q.to(wide), k.to(wide))  # (B, N, N)
    s = scores.softmax(dim=-1)  # row softmax
    a = s / (eps + s.sum(dim=1, keepdim=True))  # column L1 normalisation
    out = torch.einsum("bij,bic->bjc", a, v.to(wide))  # A^T v: (B, N, Dv)
    return out.to(v.dtype)


# --------------------------------------------------------------------------- kernels


def _interpreting() -> bool:
    """True when Triton runs kernels on the CPU (``TRITON_INTERPRET=1``)."""
    return env_flag("TRITON_INTERPRET")


# The kernels are plain functions here, written in Triton's language; Triton is
# imported, and they are wrapped with ``triton.jit``, on first use only
# (``_build_kernels``). Kernels call each other by their global names, so the
# wrapped versions replace the plain ones in this module's namespace then.
tl = None  # triton.language once _build_kernels has run


def _dot(a, b, acc, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    # acc + a @ b with float32 accumulation. UPCAST works around the
    # interpreter, whose dot multiplies bfloat16 bit patterns as integers;
    # products of bfloat16 values are exact in float32, so the result is
    # the one the GPU's bfloat16 dot gives.
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc, input_precision=PRECISION)


def _scores(
    Q,
    K,
    sq_n,
    sq_d,
    sk_n,
    sk_d,
    rows,
    row_ok,
    DK,
    BLOCK_N: tl.constexpr,
    BLOCK_DK: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # X = q k^T for one batch element, tiled over Dk: (BLOCK_N, BLOCK_N) float32.
    x = tl.zeros((BLOCK_N, BLOCK_N), dtype=tl.float32)
    for d0 in range(0, DK, BLOCK_DK):
        dims = d0 + tl.arange(0, BLOCK_DK)
        mask = row_ok[:, None] & (dims < DK)[None, :]
        q = tl.load(Q + rows[:, None] * sq_n + dims[None, :] * sq_d, mask=mask, other=0.0)
        k = tl.load(K + rows[:, None] * sk_n + dims[None, :] * sk_d, mask=mask, other=0.0)
        x = _dot(q, tl.trans(k), x, UPCAST, PRECISION)
    return x


def _at_batch(Q, K, V, sq_b, sk_b, sv_b):
    """This program's batch index and its queries, keys and values (one program a batch)."""
    b = tl.program_id(0).to(tl.int64)
    return b, Q + b * sq_b, K + b * sk_b, V + b * sv_b


def _forward_kernel(
    Q, sq_b, sq_n, sq_d,  # (B, N, DK) queries and their strides
    K, sk_b, sk_n, sk_d,  # (B, N, DK) keys
    V, sv_b, sv_n, sv_d,  # (B, N, DV) values
    OUT, so_b, so_n, so_d,  # (B, N, DV) x_r
    LSE, COL,  # (B, N) float32: each row's log-sum-exp, each column's sum (for the backward)
    N, DK, DV, eps,
    BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    b, Q, K, V = _at_batch(Q, K, V, sq_b, sk_b, sv_b)
    OUT += b * so_b
    rows = tl.arange(0, BLOCK_N)
    row_ok = rows < N

    x = _scores(
        Q, K, sq_n, sq_d, sk_n, sk_d, rows, row_ok, DK, BLOCK_N, BLOCK_DK, UPCAST, PRECISION
    )
    x = tl.where(row_ok[None, :], x, float("-inf"))  # padded key columns
    m = tl.max(x, axis=1)
    p = tl.exp(x - m[:, None])
    l = tl.sum(p, axis=1)
    s = p / l[:, None]
    s = tl.where(row_ok[:, None], s, 0.0)  # padded query rows add nothing
    col = eps + tl.sum(s, axis=0)  # d_j
    col = tl.where(row_ok, col, 1.0)
    a_t = tl.trans((s / col[None, :]).to(V.dtype.element_ty))  # A^T: (j, i)

    for d0 in range(0, DV, BLOCK_DV):
        dims = d0 + tl.arange(0, BLOCK_DV)
        mask = row_ok[:, None] & (dims < DV)[None, :]
        v = tl.load(V + rows[:, None] * sv_n + dims[None, :] * sv_d, mask=mask, other=0.0)
        out = _dot(a_t, v, tl.zeros((BLOCK_N, BLOCK_DV), dtype=tl.float32), UPCAST, PRECISION)
        tl.store(
            OUT + rows[:, None] * so_n + dims[None, :] * so_d,
            out.to(OUT.dtype.element_ty),
            mask=mask,
        )

    tl.store(LSE + b * N + rows, m + tl.log(l), mask=row_ok)
    tl.store(COL + b * N + rows, col, mask=row_ok)


def _backward_kernel(
    Q, sq_b, sq_n, sq_d,  # (B, N, DK) queries and their strides
    K, sk_b, sk_n, sk_d,  # (B, N, DK) keys
    V, sv_b, sv_n, sv_d,  # (B, N, DV) values
    G, sg_b, sg_n, sg_d,  # (B, N, DV) the gradient of x_r
    LSE, COL,  # (B, N) float32, saved by the forward
    DQ, DKEY, DV_,  # the gradients written, contiguous: (B, N, DK), (B, N, DK), (B, N, DV)
    N, DK, DV,
    BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    b, Q, K, V = _at_batch(Q, K, V, sq_b, sk_b, sv_b)
    G += b * sg_b
    DQ += b * N * DK
    DKEY += b * N * DK
    DV_ += b * N * DV
    rows = tl.arange(0, BLOCK_N)
    row_ok = rows < N
    ok = row_ok[:, None] & row_ok[None, :]

    # Recompute S and A from the saved row log-sum-exp and column sums.
    x = _scores(
        Q, K, sq_n, sq_d, sk_n, sk_d, rows, row_ok, DK, BLOCK_N, BLOCK_DK, UPCAST, PRECISION
    )
    lse = tl.load(LSE + b * N + rows, mask=row_ok, other=0.0)
    col = tl.load(COL + b * N + rows, mask=row_ok, other=1.0)
    s = tl.where(ok, tl.exp(x - lse[:, None]), 0.0)
    a = (s / col[None, :]).to(V.dtype.element_ty)

    # dv = A G and dA = V G^T, tiled over Dv.
    da = tl.zeros((BLOCK_N, BLOCK_N), dtype=tl.float32)
    for d0 in range(0, DV, BLOCK_DV):
        dims = d0 + tl.arange(0, BLOCK_DV)
        mask = row_ok[:, None] & (dims < DV)[None, :]
        v = tl.load(V + rows[:, None] * sv_n + dims[None, :] * sv_d, mask=mask, other=0.0)
        g = tl.load(G + rows[:, None] * sg_n + dims[None, :] * sg_d, mask=mask, other=0.0)
        da = _dot(v, tl.trans(g), da, UPCAST, PRECISION)
        dv = _dot(a, g, tl.zeros((BLOCK_N, BLOCK_DV), dtype=tl.float32), UPCAST, PRECISION)
        tl.store(DV_ + rows[:, None] * DV + dims[None, :], dv.to(DV_.dtype.element_ty), mask=mask)

    # Through the column normalisation, then the row softmax.
    r = tl.sum(s * da, axis=0) / col  # r_j = sum_i A[i, j] dA[i, j]
    ds = (da - r[None, :]) / col[None, :]
    t = tl.sum(s * ds, axis=1)
    dx = (s * (ds - t[:, None])).to(Q.dtype.element_ty)  # zero on padding

    # dq = dX k, dk = dX^T q, tiled over Dk.
    dx_t = tl.trans(dx)
    for d0 in range(0, DK, BLOCK_DK):
        dims = d0 + tl.arange(0, BLOCK_DK)
        mask = row_ok[:, None] & (dims < DK)[None, :]
        q = tl.load(Q + rows[:, None] * sq_n + dims[None, :] * sq_d, mask=mask, other=0.0)
        k = tl.load(K + rows[:, None] * sk_n + dims[None, :] * sk_d, mask=mask, other=0.0)
        zero = tl.zeros((BLOCK_N, BLOCK_DK), dtype=tl.float32)
        dq = _dot(dx, k, zero, UPCAST, PRECISION)
        dk = _dot(dx_t, q, zero, UPCAST, PRECISION)
        offs = rows[:, None] * DK + dims[None, :]
        tl.store(DQ + offs, dq.to(DQ.dtype.element_ty), mask=mask)
        tl.store(DKEY + offs, dk.to(DKEY.dtype.element_ty), mask=mask)


_KERNEL_SOURCES = {
    f.__name__: f for f in (_dot, _scores, _at_batch, _forward_kernel, _backward_kernel)
}


@functools.cache
def _build_kernels() -> tuple:
    """Import Triton and jit the kernels: ``(forward, backward, interpreted)``
    (interpreted: whether they run under Triton's CPU interpreter, fixed per process)."""
    jit_kernels(globals(), _KERNEL_SOURCES)
    return _forward_kernel, _backward_kernel, _interpreting()


def _launch_config(q: Tensor, v: Tensor, interpreted: bool, backward: bool) -> dict:
    """Block sizes and warps. Chosen so that ptxas (sm_90) reports no or few
    register spills for N = 32, 64, 128 (checked offline, not timed on a GPU)."""
    n, dk, dv = q.shape[1], q.shape[2], v.shape[2]
    block_n = max(16, next_pow2(n))  # tl.dot needs every dimension >= 16
    fp32 = q.dtype == torch.float32
    block_d = 16 if fp32 else 32  # fp32 dots without tensor cores need more registers
    if fp32:
        precision = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
    else:
        precision = "tf32"  # ignored for 16-bit inputs
    if block_n >= 128:
        warps = 16
    elif block_n >= 64 or backward:
        warps = 8
    else:
        warps = 4
    return {
        "BLOCK_N": block_n,
        "BLOCK_DK": min(block_d, max(16, next_pow2(dk))),
        "BLOCK_DV": min(block_d, max(16, next_pow2(dv))),
        "UPCAST": interpreted and q.dtype == torch.bfloat16,
        "PRECISION": precision,
        "num_warps": warps,
    }


def _forward(q: Tensor, k: Tensor, v: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    forward_kernel, _, interpreted = _build_kernels()
    batch, n, _ = q.shape
    out = torch.empty(v.shape, dtype=v.dtype, device=v.device)  # (B, N, Dv)
    lse = torch.empty((batch, n), dtype=torch.float32, device=q.device)  # per row
    col = torch.empty((batch, n), dtype=torch.float32, device=q.device)  # eps + sum_i S[i, j]
    forward_kernel[(batch,)](
        q, *q.stride(), k, *k.stride(), v, *v.stride(), out, *out.stride(), lse, col,
        n, q.shape[2], v.shape[2], float(eps),
        **_launch_config(q, v, interpreted, backward=False),
    )  # fmt: skip
    return out, lse, col


def _backward(
    q: Tensor, k: Tensor, v: Tensor, grad_out: Tensor, lse: Tensor, col: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    _, backward_kernel, interpreted = _build_kernels()
    batch, n, _ = q.shape
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)  # contiguous (B, N, Dk)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)  # contiguous (B, N, Dv)
    backward_kernel[(batch,)](
        q, *q.stride(), k, *k.stride(), v, *v.stride(), grad_out, *grad_out.stride(),
        lse, col, dq, dk, dv, n, q.shape[2], v.shape[2],
        **_launch_config(q, v, interpreted, backward=True),
    )  # fmt: skip
    return dq, dk, dv


# --------------------------------------------------------------------------- custom ops


# The kernel is two ``torch.library`` custom ops, so that ``torch.compile``
# sees one opaque node per direction (no graph break, no tracing into Triton's
# launcher) and autograd reaches the backward kernel through
# ``register_autograd``. Their fake (meta) functions give the output shapes
# for tracing.
@torch.library.custom_op("stmt::offset_attention_fwd", mutates_args=())
def _forward_op(q: Tensor, k: Tensor, v: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """Kernel forward: out (B, N, Dv) in v's dtype, row log-sum-exp and column sums (B, N) float32."""
    return _forward(q, k, v, eps)


@_forward_op.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    batch, n, _ = q.shape
    stats = q.new_empty((batch, n), dtype=torch.float32)
    return v.new_empty(v.shape), stats, stats.new_empty((batch, n))


@torch.library.custom_op("stmt::offset_attention_bwd", mutates_args=())
def _backward_op(
    q: Tensor, k: Tensor, v: Tensor, grad_out: Tensor, lse: Tensor, col: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Kernel backward: dq, dk (B, N, Dk) and dv (B, N, Dv), contiguous."""
    return _backward(q, k, v, grad_out, lse, col)


@_backward_op.register_fake
def _(q, k, v, grad_out, lse, col) -> tuple[Tensor, Tensor, Tensor]:
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, _eps = inputs
    _out, lse, col = output
    ctx.save_for_backward(q, k, v, lse, col)  # no (N, N) tensor is kept
    ctx.mark_non_differentiable(lse, col)


def _backward_autograd(ctx, grad_out: Tensor, _grad_lse, _grad_col):
    q, k, v, lse, col = ctx.saved_tensors
    dq, dk, dv = _backward_op(q, k, v, grad_out.to(v.dtype), lse, col)
    return dq, dk, dv, None


_forward_op.register_autograd(_backward_autograd, setup_context=_setup_context)


# --------------------------------------------------------------------------- public


def _check_args(q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"offset_attention: {name} must be a torch.Tensor, got {type(t)}")
        if not t.is_floating_point():
            raise TypeError(f"offset_attention: {name} must be floating point, got {t.dtype}")
    if q.ndim != 3 or k.shape != q.shape or v.ndim != 3 or v.shape[:2] != q.shape[:2]:
        raise ValueError(
            f"expected q, k (B, N, Dk) and v (B, N, Dv); got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.device == k.device == v.device):
        raise ValueError(
            f"offset_attention: q, k, v must be on one device; got {q.device}, {k.device}, "
            f"{v.device}"
        )


@constant_when_traced
def _kernel_interpreted() -> bool:
    """True when the kernels run under Triton's CPU interpreter (fixed at first build)."""
    return _build_kernels()[2]


#: Tests set this to send CPU tensors through the dispatch to the kernel
#: (which then runs under ``TRITON_INTERPRET=1``).
_KERNEL_ON_CPU = False


#: Whether float32 inputs go to the kernel. Measured on one H200 (torch 2.11,
#: Triton 3.6; benchmarks/README.md) at the model's shapes (768 problems,
#: Dk 64, Dv 256), float32, kernel / eager / compiled reference:
#: forward+backward N 32: 1.04 / 1.47 / 1.51 ms, N 64: 1.10 / 1.54 / 1.30 ms;
#: forward alone N 32: 0.193 / 0.248 / 0.171 ms, N 64: 0.333 / 0.192 / 0.207 ms.
#: So float32 takes the kernel when autograd records the call (training) and
#: the reference otherwise (inference, where ``torch.compile`` fuses it), unless
#: this is set: True = always the kernel, False = never. float16/bfloat16
#: always take the kernel (1.2-2.1x forward, 1.8-1.9x forward+backward eager).
KERNEL_FLOAT32: bool | None = None


def _float32_to_kernel(q: Tensor, k: Tensor, v: Tensor) -> bool:
    if KERNEL_FLOAT32 is not None:
        return KERNEL_FLOAT32
    return torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))


def _use_kernel(q: Tensor, k: Tensor, v: Tensor) -> bool:
    """The dispatch rule: CUDA tensors within the kernel's limits, float16 or
    bfloat16, or float32 when autograd records (see ``KERNEL_FLOAT32``), Triton
    present, kernels not disabled."""
    n, dk, dv = q.shape[1], q.shape[2], v.shape[2]
    dtypes = _KERNEL_DTYPES if _float32_to_kernel(q, k, v) else _KERNEL_DTYPES[1:]
    return (
        (q.is_cuda or _KERNEL_ON_CPU)
        and all(t.dtype in dtypes for t in (q, k, v))
        and n <= MAX_N
        and dk <= MAX_D
        and dv <= MAX_D
        and q.numel() > 0
        and kernels_allowed()
    )


def offset_attention_triton(q: Tensor, k: Tensor, v: Tensor, eps: float = 1e-9) -> Tensor:
    """The Triton kernel path of :func:`offset_attention`, without dispatch.

    Needs CUDA tensors, or CPU tensors with ``TRITON_INTERPRET=1`` (how the
    tests run it without a GPU). Raises ``ValueError`` outside the kernel's
    limits: N <= 128, Dk <= 256, Dv <= 256. Same shapes and result as
    :func:`offset_attention`; differentiable in q, k and v.
    """
    _check_args(q, k, v)
    batch, n, dk = q.shape
    dv = v.shape[2]
    if n > MAX_N or dk > MAX_D or dv > MAX_D:
        raise ValueError(
            f"offset_attention kernel takes N <= {MAX_N}, Dk <= {MAX_D}, Dv <= {MAX_D}; "
            f"got N={n}, Dk={dk}, Dv={dv}"
        )
    if not triton_importable():
        raise RuntimeError("offset_attention kernel needs Triton: pip install 'stmt[gpu]'")
    if not q.is_cuda and not _kernel_interpreted():
        raise ValueError(
            f"offset_attention kernel needs CUDA tensors (or TRITON_INTERPRET=1); got {q.device}"
        )
    if batch == 0 or n == 0 or dv == 0:
        return offset_attention_reference(q, k, v, eps)
    dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    if dtype not in _KERNEL_DTYPES:
        raise TypeError(f"offset_attention kernel takes float32, float16, bfloat16; got {dtype}")
    out, _lse, _col = _forward_op(q.to(dtype), k.to(dtype), v.to(dtype), float(eps))
    return out.to(v.dtype)


def offset_attention(q: Tensor, k: Tensor, v: Tensor, eps: float = 1e-9) -> Tensor:
    """Offset attention: ``A^T v`` with A the column-normalised row-softmax of ``q k^T``.

    ``S = softmax(q k^T, dim=-1)``; ``A[i, j] = S[i, j] / (eps + sum_i S[i, j])``;
    ``out[j] = sum_i A[i, j] v[i]``. No 1/sqrt(Dk) scaling (scale q beforehand).
    Computed in float32 whatever the input dtype.

    Uses the fused Triton kernel for CUDA tensors when Triton is importable and
    N <= 128, Dk <= 256, Dv <= 256 (float32: only when autograd records the
    call; without gradients the reference was the faster one, see
    ``KERNEL_FLOAT32``); otherwise the PyTorch reference.
    ``STMT_DISABLE_KERNELS=1`` forces the reference.

    Args:
        q: (B, N, Dk) queries, floating point.
        k: (B, N, Dk) keys.
        v: (B, N, Dv) values.
        eps: added to each column sum before dividing.

    Returns:
        (B, N, Dv), in v's dtype.
    """
    _check_args(q, k, v)
    if _use_kernel(q, k, v):
        return offset_attention_triton(q, k, v, eps)
    return offset_attention_reference(q, k, v, eps)
