"""One pass for batch norm + ReLU + max over neighbours: the Triton kernels
(stmt.ops.neighbor_stats) against the reference, and ``norm_relu_max`` on them
against the three steps as written.

Tests named ``test_triton_*`` run the kernels: natively on a CUDA machine;
without CUDA, ``test_kernel_tests_under_interpreter`` runs them in a
subprocess with ``TRITON_INTERPRET=1`` (skipped in this process).
"""

from __future__ import annotations

import pytest
import torch

from stmt.ops import neighbor_stats as ns
from stmt.ops.grouping import norm_relu_max
from tests.helpers.interpreter import (
    kernel_device,
    needs_kernel,
    run_kernel_tests_interpreted,
    runs_interpreter,
)
from tests.helpers.sm90 import compile_for_sm90

DEVICE = kernel_device()


@pytest.fixture
def kernel_on(monkeypatch):
    monkeypatch.delenv("STMT_DISABLE_KERNELS", raising=False)
    monkeypatch.setattr(ns, "_KERNEL_ON_CPU", DEVICE == "cpu")


def _with_ties(m: int, k: int, c: int, dtype) -> torch.Tensor:
    """(M, K, C) with exact ties: two neighbours sharing the max, a whole neighbourhood equal."""
    y = (torch.randn(m, k, c) * 2 + 0.7).to(dtype)
    if k > 1:
        y[0, 1] = y[0].amax(0)  # a tie at the max in every channel of centre 0
    if m > 2:
        y[2] = 0.5  # every neighbour of centre 2 equal
    return y


# (M, K, C): one element, tails in every block dimension, K not a power of two, the model's C,
# and K so large that a program holds one centre
SHAPES = [(1, 1, 1), (5, 3, 7), (37, 8, 70), (20, 8, 256), (3, 70, 20)]


@needs_kernel
@pytest.mark.parametrize("m,k,c", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_neighbor_stats_matches_reference(kernel_on, m, k, c, dtype):
    """Extremes exact; sums and the gradient of y to float32 rounding of a float64 reference."""
    torch.manual_seed(m * 31 + c)
    y = _with_ties(m, k, c, dtype).to(DEVICE)
    shift = torch.randn(c).to(DEVICE)
    grads = [torch.randn(m, c), torch.randn(m, c), torch.randn(c), torch.randn(c)]
    assert ns.use_kernel(y)
    x = y.clone().requires_grad_()
    got = ns.neighbor_stats(x, shift)
    torch.autograd.backward(got, [g.to(DEVICE).to(t.dtype) for g, t in zip(grads, got)])

    x64 = y.cpu().double().requires_grad_()
    want = ns.neighbor_stats_reference(x64, shift.cpu().double())
    torch.autograd.backward(want, [g.double() for g in grads])
    assert torch.equal(got[0].cpu().double(), want[0]) and torch.equal(
        got[1].cpu().double(), want[1]
    )
    assert got[0].dtype == dtype and got[2].dtype == torch.float32
    for g, w in zip(got[2:], want[2:]):
        torch.testing.assert_close(
            g.cpu().double(), w, rtol=1e-5, atol=1e-5 * float(w.detach().abs().max())
        )
    scale = float(x64.grad.abs().max())
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(x.grad.cpu().double(), x64.grad, rtol=tol, atol=tol * scale)


@needs_kernel
def test_triton_neighbor_stats_unused_outputs_get_no_gradient(kernel_on):
    """Only the max reaches the loss: the sums' and the min's gradients arrive as None."""
    y = _with_ties(6, 4, 5, torch.float32).to(DEVICE).requires_grad_()
    high, _low, _s, _s2 = ns.neighbor_stats(y, torch.zeros(5, device=DEVICE))
    high.sum().backward()
    want = (y == high[:, None]).float()
    want = want / want.sum(1, keepdim=True)  # ties share, as amax's gradient
    torch.testing.assert_close(y.grad, want)


@needs_kernel
@pytest.mark.parametrize(
    "zero_gamma_bias",
    [
        -0.5,
        pytest.param(
            0.5,
            marks=pytest.mark.xfail(
                strict=True,
                reason="gamma exactly 0 and bias > 0: every neighbour ties at the max and "
                "amax shares the weight's gradient among them; the one-pass path gives it "
                "the max neighbour's (per-centre means would cost a pass or a host sync)",
            ),
        ),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_norm_relu_max_is_batch_norm_relu_amax(
    kernel_on, monkeypatch, dtype, zero_gamma_bias
):
    """The kernel path gives the three steps' values, gradients (ties, a negative and a zero
    gamma) and running statistics: float32 to rounding, bfloat16 under autocast to its."""
    from stmt.ops import dispatch

    monkeypatch.setattr(dispatch, "eager_cpu_training", lambda *a: False)  # as on a GPU
    calls = []
    op = ns._stats_op
    monkeypatch.setattr(ns, "_stats_op", lambda *a: calls.append(1) or op(*a))
    torch.manual_seed(0)
    y = _with_ties(2 * 3 * 4, 5, 6, torch.float32).reshape(2, 3, 4, 5, 6) + 3.0  # a large mean
    g = torch.randn(2, 3, 4, 6)
    norms = [torch.nn.BatchNorm1d(6) for _ in range(2)]
    with torch.no_grad():
        norms[0].weight.copy_(torch.tensor([1.5, -0.7, 0.3, -1.2, 0.0, 0.9]))
        norms[0].bias.uniform_(-1, 1)
        norms[0].bias[4] = zero_gamma_bias  # the channel of gamma 0
    norms[1].load_state_dict(norms[0].state_dict())
    norms = [n.to(DEVICE) for n in norms]
    results = []
    for kernel, norm in zip((False, True), norms):
        x = y.clone().to(DEVICE).requires_grad_()
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            for _ in range(2):  # twice: the running statistics' update rule matters
                h = x.to(dtype)  # (what autocast's linear layer would hand on)
                assert ns.use_kernel(h)
                if kernel:
                    out = norm_relu_max(h, norm, dim=3)
                else:
                    out = torch.relu(norm(h.reshape(-1, 6))).reshape(h.shape).amax(3)
        assert out.dtype == dtype
        out.float().backward(g.to(DEVICE))
        results.append((out, x.grad, norm.weight.grad, norm.bias.grad, *norm.buffers()))
    assert len(calls) == 2  # the kernel ran, once a step
    tol = 2e-5 if dtype == torch.float32 else 2e-2
    for want, got in zip(*results, strict=True):
        scale = float(want.detach().abs().max()) if want.is_floating_point() else 0.0
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale)


@needs_kernel
def test_triton_training_model_through_torch_compile(kernel_on, monkeypatch):
    """A training-mode model compiled with ``fullgraph=True`` (a graph break raises) goes
    through the custom op and agrees with its eager twin on the three steps: outputs,
    gradients, running statistics."""
    from stmt.model.stmt import stmt_tiny

    torch._dynamo.reset()
    torch.manual_seed(0)
    sizes = {"num_frames": 2, "num_points": 48, "centers1": 16, "centers2": 8, "depth": 1}
    sizes["head_dropout"] = 0.0  # the same function in both
    model = stmt_tiny(3, **sizes).to(DEVICE).train()
    twin = stmt_tiny(3, **sizes).to(DEVICE).train()
    twin.load_state_dict(model.state_dict())
    vertices = torch.randn(2, 2, 48, 3, device=DEVICE)
    geodesic = torch.cdist(*[torch.randn(48, 3)] * 2).to(DEVICE)
    calls = []
    op = ns._stats_op

    def spy(*args):
        calls.append(args[0].shape)
        return op(*args)

    monkeypatch.setattr(ns, "_stats_op", spy)
    backend = "inductor" if DEVICE == "cuda" else "aot_eager"
    got = torch.compile(model, backend=backend, fullgraph=True)(vertices, geodesic)
    got.square().sum().backward()
    assert len(calls) == 4  # the last layer of both levels of both branches

    monkeypatch.setattr(ns, "use_kernel", lambda y: False)  # the twin: the three steps
    want = twin(vertices, geodesic)
    want.square().sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # all gradients as one vector: batch norm over 2 clips leaves each float32 model 2e-4
    # (relative) from float64, and some gradients are zero but for rounding
    got_all = torch.cat([p.grad.flatten() for p in model.parameters()])
    want_all = torch.cat([q.grad.flatten() for q in twin.parameters()])
    assert (got_all - want_all).norm() <= 1e-3 * want_all.norm()
    for a, b in zip(model.buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@needs_kernel
def test_triton_custom_ops_pass_opcheck():
    # schema, fake (meta) functions and the registered autograd, as torch.compile uses them
    y = torch.randn(7, 4, 9, device=DEVICE)
    shift = torch.randn(9, device=DEVICE)
    torch.library.opcheck(ns._stats_op, (y, shift))
    torch.library.opcheck(ns._stats_op, (y.clone().requires_grad_(), shift))
    high, low = y.amax(1), y.amin(1)
    grads = (torch.randn(7, 9, device=DEVICE), torch.randn(7, 9, device=DEVICE))
    sums = (torch.randn(9, device=DEVICE), torch.randn(9, device=DEVICE))
    torch.library.opcheck(ns._stats_backward_op, (y, shift, high, low, *grads, *sums))


def test_dispatch_without_kernel(monkeypatch):
    """CPU tensors (or STMT_DISABLE_KERNELS=1) take the reference; bad shapes get one line."""
    y = torch.randn(3, 4, 5)
    assert not ns.use_kernel(y)
    monkeypatch.setattr(ns, "_KERNEL_ON_CPU", True)
    monkeypatch.setenv("STMT_DISABLE_KERNELS", "1")
    assert not ns.use_kernel(y)
    high, low, s, s2 = ns.neighbor_stats(y, torch.zeros(5))
    torch.testing.assert_close(s, y.sum((0, 1)))
    assert torch.equal(high, y.amax(1)) and torch.equal(low, y.amin(1))
    torch.testing.assert_close(s2, y.square().sum((0, 1)))
    with pytest.raises(ValueError, match=r"expected y \(M, K, C\) and shift \(C,\)"):
        ns.neighbor_stats(y, torch.zeros(4))
    monkeypatch.delenv("STMT_DISABLE_KERNELS")
    assert not ns.use_kernel(y.double())  # float64 stays with the reference


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_kernels_compile_for_sm90_without_a_gpu(dtype):
    """Triton's compiler, not only its interpreter, takes both kernels for an H100 / H200
    at the model's shapes and the launch's warps (a list comprehension in a kernel passes
    every interpreter test and fails this one)."""
    stats_kernel, backward_kernel = ns._build_kernels()
    block_m, block_k, block_c = ns._blocks(8, 256)
    constexprs = {"K": 8, "BLOCK_M": block_m, "BLOCK_K": block_k, "BLOCK_C": block_c}
    y, f32 = f"*{dtype}", "*fp32"
    types = {"Y": y, "SHIFT": f32, "HIGH": y, "LOW": y, "SUM": f32, "SUMSQ": f32}
    ptx = compile_for_sm90(stats_kernel, types, constexprs, ns.NUM_WARPS)
    assert "ld.global" in ptx and "st.global" in ptx
    types = {"Y": y, "SHIFT": f32, "HIGH": y, "LOW": y, "G_HIGH": y, "G_LOW": y}
    types |= {"G_SUM": f32, "G_SUMSQ": f32, "DY": y}
    ptx = compile_for_sm90(backward_kernel, types, constexprs, ns.NUM_WARPS)
    assert "ld.global" in ptx and "st.global" in ptx


@runs_interpreter
def test_kernel_tests_under_interpreter():
    run_kernel_tests_interpreted(__file__)
