"""Offset attention: the Triton kernel against the PyTorch reference.

Tests named ``test_triton_*`` run the kernel. On a CUDA machine they run
natively. Without CUDA, this module runs them again in a subprocess with
``TRITON_INTERPRET=1`` set before anything imports Triton
(``test_kernel_tests_under_interpreter``), so they are skipped in this process
and pass or fail in that one. Every comparison is against float64 autograd of
the reference on the same (rounded) inputs.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
import torch

from stmt.ops import offset_attention
from tests.helpers.interpreter import (
    kernel_device,
    needs_kernel,
    run_kernel_tests_interpreted,
    runs_interpreter,
)
from tests.helpers.sm90 import compile_for_sm90

oa = importlib.import_module("stmt.ops.offset_attention")

KERNEL_DEVICE = kernel_device()


DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Error allowed, relative to the largest magnitude of the float64 result
# (also used as rtol). Worst seen over SHAPES under the interpreter, kernel
# (reference): float32 7.9e-7 (1.0e-6), float16 6.6e-4 (3.7e-4), bfloat16
# 1.1e-2 (3.6e-3); the kernel rounds A and dX to the input dtype before its
# tensor-core products, as flash attention does.
TOL = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 4e-2}

# (B, N, Dk, Dv): every tail and block size of the kernel.
SHAPES = [
    (3, 1, 3, 5),  # one point: S = 1, so dq = dk = 0
    (2, 16, 16, 16),  # exactly the smallest block
    (3, 20, 8, 24),
    (1, 33, 64, 48),  # one past a power of two
    (3, 64, 17, 40),  # full block, odd Dk
    (1, 100, 100, 256),  # Dv at the limit, several Dv tiles
    (1, 128, 256, 33),  # N and Dk at the limit
]
if KERNEL_DEVICE == "cuda":
    SHAPES += [(768, 32, 64, 256), (768, 64, 64, 256)]  # the model's shapes


def _inputs(b, n, dk, dv, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    scale = max(dk, 1) ** -0.25  # scores of order 1, as after q k^T / sqrt(Dk)
    q = torch.randn(b, n, dk, generator=gen) * scale * 2
    k = torch.randn(b, n, dk, generator=gen) * scale
    v = torch.randn(b, n, dv, generator=gen)
    g = torch.randn(b, n, dv, generator=gen)
    return [t.to(device=device, dtype=dtype) for t in (q, k, v, g)]


def _forward_backward(fn, q, k, v, g, eps=1e-9):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = fn(q, k, v, eps)
    grads = torch.autograd.grad(out, (q, k, v), g)
    return (out, *grads)


def _truth(q, k, v, g, eps=1e-9):
    """Float64 autograd of the reference on the CPU."""
    return _forward_backward(
        oa.offset_attention_reference, *(t.detach().cpu().double() for t in (q, k, v, g)), eps
    )


def _assert_close(actual, expected, tol, what):
    scale = max(expected.abs().max().item(), 1e-3)
    torch.testing.assert_close(
        actual.detach().cpu().double(),
        expected,
        atol=tol * scale,
        rtol=tol,
        msg=lambda m: f"{what}: {m}",
    )


def _assert_matches_truth(results, truth, dtype, inputs):
    for name, got, want, inp in zip(("out", "dq", "dk", "dv"), results, truth, inputs):
        assert got.dtype == inp.dtype, f"{name} has dtype {got.dtype}, expected {inp.dtype}"
        assert got.shape == want.shape
        _assert_close(got, want, TOL[dtype], name)


# --------------------------------------------------------------------------- kernel


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-N{}-Dk{}-Dv{}".format(*s))
def test_triton_matches_reference(shape, dtype):
    q, k, v, g = _inputs(*shape, dtype, KERNEL_DEVICE)
    got = _forward_backward(oa.offset_attention_triton, q, k, v, g)
    _assert_matches_truth(got, _truth(q, k, v, g), dtype, (v, q, k, v))


@needs_kernel
def test_triton_eps_enters_column_sums():
    q, k, v, g = _inputs(2, 20, 8, 12, torch.float32, KERNEL_DEVICE)
    got = _forward_backward(oa.offset_attention_triton, q, k, v, g, eps=0.5)
    _assert_matches_truth(got, _truth(q, k, v, g, eps=0.5), torch.float32, (v, q, k, v))


@needs_kernel
def test_triton_strided_inputs_and_padding_not_read():
    # q, k, v are column slices of one packed (B, 32, 3 * 16) tensor whose rows
    # past N hold NaN: a kernel reading past its masks would return NaN.
    b, n, d = 2, 20, 16
    packed = torch.full((b, 32, 3 * d), float("nan"), device=KERNEL_DEVICE)
    q, k, v, g = _inputs(b, n, d, d, torch.float32, KERNEL_DEVICE)
    packed[:, :n] = torch.cat([q, k, v], dim=-1)  # (B, N, 3D)
    qs, ks, vs = packed[:, :n].split(d, dim=-1)  # strided views
    gt = g.transpose(1, 2).contiguous().transpose(1, 2)  # same values, transposed strides
    assert not qs.is_contiguous() and not gt.is_contiguous()
    got = _forward_backward(oa.offset_attention_triton, qs, ks, vs, gt)
    _assert_matches_truth(got, _truth(q, k, v, g), torch.float32, (v, q, k, v))


@needs_kernel
def test_triton_mixed_dtypes_follow_the_reference():
    q, k, v, g = _inputs(2, 33, 8, 12, torch.float32, KERNEL_DEVICE)
    q, k = q.bfloat16(), k.bfloat16()
    got = _forward_backward(oa.offset_attention_triton, q, k, v, g)
    assert [t.dtype for t in got] == [torch.float32, torch.bfloat16, torch.bfloat16, torch.float32]
    truth = _truth(q, k, v, g)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, truth):
        _assert_close(a, b, TOL[torch.bfloat16], name)


@needs_kernel
def test_triton_empty_batch():
    q, k, v, _ = _inputs(0, 5, 4, 6, torch.float32, KERNEL_DEVICE)
    assert oa.offset_attention_triton(q, k, v).shape == (0, 5, 6)


@needs_kernel
@pytest.mark.parametrize(
    ("n", "dk", "dv", "match"),
    [(129, 8, 8, "N=129"), (16, 257, 8, "Dk=257"), (16, 8, 257, "Dv=257")],
)
def test_triton_rejects_shapes_beyond_its_limits(n, dk, dv, match):
    q, k, v, _ = _inputs(1, n, dk, dv, torch.float32, KERNEL_DEVICE)
    with pytest.raises(ValueError, match=match):
        oa.offset_attention_triton(q, k, v)


@pytest.fixture
def kernel_dispatch(monkeypatch):
    """Count kernel calls made through the public function's dispatch; on the
    CPU let the dispatch send tensors to the (interpreted) kernel."""
    calls = []
    kernel = oa.offset_attention_triton

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(oa, "offset_attention_triton", spy)
    monkeypatch.setattr(oa, "_KERNEL_ON_CPU", KERNEL_DEVICE == "cpu")
    monkeypatch.setattr(oa, "KERNEL_FLOAT32", True)  # float32 through the kernel too
    monkeypatch.delenv("STMT_DISABLE_KERNELS", raising=False)
    return calls


@needs_kernel
def test_triton_dispatch_uses_kernel_within_limits(kernel_dispatch):
    q, k, v, g = _inputs(2, 20, 8, 12, torch.bfloat16, KERNEL_DEVICE)
    got = _forward_backward(offset_attention, q, k, v, g)
    assert kernel_dispatch == [q.shape]
    _assert_matches_truth(got, _truth(q, k, v, g), torch.bfloat16, (v, q, k, v))


@needs_kernel
@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((1, 129, 8, 8), torch.float32),
        ((1, 16, 8, 300), torch.float32),
        ((1, 16, 8, 8), torch.float64),
    ],
    ids=["N-too-big", "Dv-too-big", "float64"],
)
def test_triton_dispatch_falls_back_beyond_limits(kernel_dispatch, shape, dtype):
    q, k, v, g = _inputs(*shape, dtype, KERNEL_DEVICE)
    got = _forward_backward(offset_attention, q, k, v, g)
    assert kernel_dispatch == []
    _assert_matches_truth(got, _truth(q, k, v, g), torch.float32, (v, q, k, v))


@needs_kernel
def test_triton_dispatch_float32_kernel_only_when_autograd_records(kernel_dispatch, monkeypatch):
    monkeypatch.setattr(oa, "KERNEL_FLOAT32", None)  # the measured rule
    q, k, v, _ = _inputs(1, 20, 8, 12, torch.float32, KERNEL_DEVICE)
    offset_attention(q, k, v)  # no gradient asked: the reference
    assert kernel_dispatch == []
    offset_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert len(kernel_dispatch) == 1
    offset_attention(q, k, v.requires_grad_())  # training: the kernel
    assert len(kernel_dispatch) == 2
    with torch.no_grad():
        offset_attention(q, k, v)
    assert len(kernel_dispatch) == 2


@needs_kernel
def test_triton_dispatch_disabled_by_env(kernel_dispatch, monkeypatch):
    monkeypatch.setenv("STMT_DISABLE_KERNELS", "1")
    q, k, v, _ = _inputs(1, 20, 8, 12, torch.float32, KERNEL_DEVICE)
    offset_attention(q, k, v)
    assert kernel_dispatch == []


@needs_kernel
def test_triton_custom_ops_pass_opcheck():
    # schema, fake (meta) functions, autograd registration, AOT dispatch
    q, k, v, g = _inputs(2, 20, 8, 12, torch.float32, KERNEL_DEVICE)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    torch.library.opcheck(oa._forward_op, (q, k, v, 1e-9))
    _, lse, col = oa._forward_op(q, k, v, 1e-9)
    torch.library.opcheck(oa._backward_op, (q.detach(), k.detach(), v.detach(), g, lse, col))


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_triton_compiled_model_calls_the_kernel_without_graph_breaks(kernel_dispatch, dtype):
    from stmt.model.stmt import stmt_tiny

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = stmt_tiny(3, num_frames=2, num_points=48, centers1=16, centers2=8, depth=1)
    model = model.to(KERNEL_DEVICE).eval()
    vertices = torch.randn(2, 2, 48, 3, device=KERNEL_DEVICE)
    rest = torch.randn(48, 3)
    geodesic = torch.cdist(rest, rest).to(KERNEL_DEVICE)
    backend = "inductor" if KERNEL_DEVICE == "cuda" else "aot_eager"
    compiled = torch.compile(model, backend=backend, fullgraph=True)  # a break raises
    with torch.autocast(KERNEL_DEVICE, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        got = compiled(vertices, geodesic)
        got.float().square().sum().backward()
        assert len(kernel_dispatch) > 0  # traced through the dispatch into the custom op
        got_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad()
        want = model(vertices, geodesic)
        want.float().square().sum().backward()
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)
    if dtype == torch.float32:
        for name, p in model.named_parameters():
            scale = p.grad.abs().max().item() + 1e-6
            torch.testing.assert_close(
                got_grads[name], p.grad, atol=tol * scale, rtol=tol, msg=name
            )
    else:  # bf16 rounding can move a max-pool's argmax: compare all gradients as one vector
        got_all = torch.cat([got_grads[n].flatten().float() for n, _ in model.named_parameters()])
        want_all = torch.cat([p.grad.flatten().float() for _, p in model.named_parameters()])
        assert (got_all - want_all).norm() <= 0.1 * want_all.norm()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n", [32, 64])
def test_kernels_compile_for_sm90_without_a_gpu(dtype, n):
    """Triton's compiler, not only its interpreter, takes both kernels for an H100 / H200
    with the launch configuration the model's shapes get (Dk 64, Dv 256)."""
    forward_kernel, backward_kernel, _ = oa._build_kernels()
    q, v = torch.empty(2, n, 64, dtype=dtype), torch.empty(2, n, 256, dtype=dtype)
    t = "*bf16" if dtype == torch.bfloat16 else "*fp32"
    tensors = {name: t for name in ("Q", "K", "V", "OUT", "G", "DQ", "DKEY", "DV_")}
    tensors |= {"LSE": "*fp32", "COL": "*fp32", "eps": "fp32"}
    for kernel, backward in ((forward_kernel, False), (backward_kernel, True)):
        config = oa._launch_config(q, v, interpreted=False, backward=backward)
        warps = config.pop("num_warps")
        types = {name: tensors[name] for name in kernel.arg_names if name in tensors}
        compile_for_sm90(kernel, types, config, warps)


# --------------------------------------------------------------------------- interpreter


@runs_interpreter
def test_kernel_tests_under_interpreter():
    run_kernel_tests_interpreted(__file__)


# --------------------------------------------------------------------------- no kernel


def test_reference_matches_the_formula_written_out():
    torch.manual_seed(0)
    q, k, v = (
        torch.randn(4, 3, dtype=torch.float64),
        torch.randn(4, 3, dtype=torch.float64),
        torch.randn(4, 2, dtype=torch.float64),
    )
    eps, n = 1e-9, 4
    s = [[0.0] * n for _ in range(n)]
    for i in range(n):
        row = [float(q[i] @ k[j]) for j in range(n)]
        z = sum(torch.tensor(row).exp().tolist())
        s[i] = [float(torch.tensor(x).exp()) / z for x in row]
    out = torch.zeros(n, 2, dtype=torch.float64)
    for j in range(n):
        col = eps + sum(s[i][j] for i in range(n))
        for i in range(n):
            out[j] += s[i][j] / col * v[i]
    got = oa.offset_attention_reference(q[None], k[None], v[None], eps)[0]
    torch.testing.assert_close(got, out)


def test_backward_formula_used_by_the_kernel_matches_autograd():
    # The closed form the backward kernel computes, in float64.
    q, k, v, g = _inputs(2, 9, 5, 3, torch.float64, "cpu")
    eps = 1e-3
    x = q @ k.transpose(1, 2)  # (B, N, N)
    s = x.softmax(-1)
    col = eps + s.sum(1)  # (B, N): d_j
    a = s / col[:, None, :]
    dv = a @ g  # dv_i = sum_j A_ij g_j
    da = v @ g.transpose(1, 2)  # dA_ij = v_i . g_j
    r = (a * da).sum(1)  # r_j
    ds = (da - r[:, None, :]) / col[:, None, :]
    t = (s * ds).sum(-1)  # t_i
    dx = s * (ds - t[:, :, None])
    dq, dk = dx @ k, dx.transpose(1, 2) @ q
    _, *auto = _forward_backward(oa.offset_attention_reference, q, k, v, g, eps)
    for name, mine, ref in zip(("dq", "dk", "dv"), (dq, dk, dv), auto):
        torch.testing.assert_close(mine, ref, msg=lambda m, name=name: f"{name}: {m}")
    out = a.transpose(1, 2) @ v
    torch.testing.assert_close(r, (g * out).sum(-1))  # r_j = g_j . out_j


@pytest.mark.parametrize(
    ("q", "k", "v", "error", "match"),
    [
        ((2, 5, 4), (2, 6, 4), (2, 5, 3), ValueError, "expected q, k"),
        ((2, 5, 4), (2, 5, 4), (2, 4, 3), ValueError, "expected q, k"),
        ((5, 4), (5, 4), (5, 3), ValueError, "expected q, k"),
    ],
)
def test_public_function_rejects_bad_shapes(q, k, v, error, match):
    with pytest.raises(error, match=match):
        offset_attention(torch.randn(q), torch.randn(k), torch.randn(v))


def test_public_function_rejects_integer_tensors():
    q = torch.randn(1, 5, 4)
    with pytest.raises(TypeError, match="k must be floating point, got torch.int64"):
        offset_attention(q, torch.ones(1, 5, 4, dtype=torch.int64), q)


def test_public_function_rejects_tensors_on_two_devices():
    q = torch.randn(1, 5, 4)
    with pytest.raises(ValueError, match="one device"):
        offset_attention(q, q, torch.empty(1, 5, 4, device="meta"))


@pytest.mark.parametrize(
    ("value", "disabled"), [("1", True), ("true", True), ("0", False), ("", False)]
)
def test_disable_variable(monkeypatch, value, disabled):
    from stmt.ops.dispatch import kernels_allowed, kernels_disabled

    monkeypatch.setenv("STMT_DISABLE_KERNELS", value)
    assert kernels_disabled() is disabled
    assert not disabled or not kernels_allowed()


def test_env_forces_reference_even_where_the_kernel_would_run(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("kernel called although STMT_DISABLE_KERNELS=1")

    monkeypatch.setattr(oa, "offset_attention_triton", fail)
    monkeypatch.setattr(oa, "_KERNEL_ON_CPU", True)
    monkeypatch.setenv("STMT_DISABLE_KERNELS", "1")
    q, k, v, _ = _inputs(2, 7, 4, 3, torch.float32, "cuda" if torch.cuda.is_available() else "cpu")
    torch.testing.assert_close(offset_attention(q, k, v), oa.offset_attention_reference(q, k, v))


def test_cpu_path_does_not_import_triton():
    code = (
        "import sys, torch, stmt, stmt.ops\n"
        "from stmt.ops import offset_attention\n"
        "x = torch.randn(2, 5, 4, requires_grad=True)\n"
        "offset_attention(x, x, x).sum().backward()\n"
        "assert 'triton' not in sys.modules, 'triton was imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@needs_kernel
def test_triton_inside_the_model_matches_the_reference(kernel_dispatch, monkeypatch):
    # stmt_tiny calls offset_attention(qk, qk, v): q and k are one tensor.
    from stmt.model.stmt import stmt_tiny

    torch.manual_seed(0)
    model = stmt_tiny(3, num_frames=2, num_points=48, centers1=32, centers2=16).to(KERNEL_DEVICE)
    vertices = torch.randn(2, 2, 48, 3, device=KERNEL_DEVICE)
    rest = torch.randn(48, 3)
    geodesic = torch.cdist(rest, rest).to(KERNEL_DEVICE)  # (N, N)

    model.eval()  # no dropout; batch norm with its running statistics

    def logits_and_grads():
        model.zero_grad()
        logits = model(vertices, geodesic)
        logits.square().sum().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    got, got_grads = logits_and_grads()
    assert len(kernel_dispatch) > 0
    monkeypatch.setenv("STMT_DISABLE_KERNELS", "1")
    want, want_grads = logits_and_grads()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, atol=1e-4, rtol=1e-3, msg=name)
