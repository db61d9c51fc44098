"""k nearest neighbours: the Triton kernels (stmt.ops.knn) against the reference.

Tests named ``test_triton_*`` run the kernels: natively on a CUDA machine;
without CUDA, ``test_kernel_tests_under_interpreter`` runs them in a
subprocess with ``TRITON_INTERPRET=1`` (skipped in this process).
"""

from __future__ import annotations

import pytest
import torch

from stmt.ops import knn
from stmt.ops.neighbors import euclidean_knn, knn_indices
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
    monkeypatch.setattr(knn, "_KERNEL_ON_CPU", DEVICE == "cpu")


def _distances_of(dist: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return torch.gather(dist, -1, idx)


def _check_against_reference(dist64: torch.Tensor, idx: torch.Tensor, k: int) -> None:
    """idx holds k distinct valid indices per row, nearest first, whose distances
    are the k smallest (to rounding: the kernel may order near-ties otherwise)."""
    assert idx.dtype == torch.int64 and idx.shape == (*dist64.shape[:-1], k)
    idx = idx.cpu()
    assert int(idx.min()) >= 0 and int(idx.max()) < dist64.shape[-1]
    assert bool((idx.sort(dim=-1).values.diff(dim=-1) > 0).all()), "an index repeats in a row"
    got = _distances_of(dist64, idx)
    want = dist64.topk(k, dim=-1, largest=False, sorted=True).values
    scale = float(dist64.abs().max()) or 1.0
    torch.testing.assert_close(got, want, atol=1e-6 * scale, rtol=0)


# (rows, N, k): one block, tails, one past a power of two, the model's sizes
ROW_SHAPES = [(1, 1, 1), (5, 7, 3), (33, 64, 8), (70, 513, 8), (64, 512, 8), (3, 4096, 5)]


@needs_kernel
@pytest.mark.parametrize("rows,n,k", ROW_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_smallest_k_matches_topk(kernel_on, rows, n, k, dtype):
    torch.manual_seed(rows * 7 + n)
    dist = torch.rand(rows, n, device=DEVICE).to(dtype)
    assert knn._use_kernel(dist, n, k)
    idx = knn.smallest_k(dist, k)
    _check_against_reference(dist.double().cpu(), idx, k)


@needs_kernel
def test_triton_smallest_k_ties_lowest_index_first_and_leading_dims(kernel_on):
    # integer distances with many ties; negative values and infinities rank as numbers do
    dist = torch.tensor(
        [[3.0, 1.0, 1.0, 0.0, 1.0, float("inf"), -2.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]],
        device=DEVICE,
    )
    idx = knn.smallest_k(dist[None].expand(2, 2, 7), 5)  # (2, 2, 5), non-contiguous input
    want = torch.tensor([[6, 3, 1, 2, 4], [0, 1, 2, 3, 4]])
    assert idx.shape == (2, 2, 5)
    assert torch.equal(idx.cpu(), want.expand(2, 2, 5))


@needs_kernel
def test_triton_smallest_k_nan_last(kernel_on):
    # a NaN with its sign bit set (as 0 * inf gives on x86) ranks last too
    neg_nan = torch.tensor([-4194304], dtype=torch.int32).view(torch.float32)  # 0xffc00000
    assert bool(neg_nan.isnan()) and neg_nan.view(torch.int32).item() < 0
    dist = torch.tensor([[float("nan"), 2.0, 0.0, 1.0, 0.0]])
    dist[0, 2] = neg_nan
    idx = knn.smallest_k(dist.to(DEVICE), 3)
    assert idx[0, :2].tolist() == [4, 3] and int(idx[0, 2]) == 1


@needs_kernel
@pytest.mark.parametrize(
    "frames,m,n,k", [(1, 1, 1, 1), (3, 5, 17, 4), (4, 64, 512, 8), (2, 32, 64, 8)]
)
def test_triton_euclidean_knn_matches_cdist_topk(kernel_on, frames, m, n, k):
    torch.manual_seed(frames + m + n)
    points = torch.randn(2, frames, n, 3, device=DEVICE) * 0.3
    centers = points[:, :, :m]  # as the model calls it: the first points are the centres
    idx = euclidean_knn(centers, points, k)
    assert idx.shape == (2, frames, m, k)
    c64, p64 = centers.double().cpu(), points.double().cpu()
    dist = ((c64[..., :, None, :] - p64[..., None, :, :]) ** 2).sum(-1).sqrt()  # (2, F, m, n)
    _check_against_reference(dist, idx, k)
    if m <= n:  # each centre is a candidate: itself at distance 0, first
        assert torch.equal(idx.cpu()[..., 0], torch.arange(m).expand(2, frames, m))


@needs_kernel
def test_triton_euclidean_knn_strided_input_and_exact_ties(kernel_on):
    # integer grid: exact distances, ties broken by the lower index
    grid = torch.tensor([[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, 0, 2]], device=DEVICE)
    xyz = torch.cat([grid, torch.zeros(5, 1, device=DEVICE)], dim=1)[None, :, :3]  # strided
    idx = euclidean_knn(xyz[:, :1], xyz, 4)
    assert idx.cpu().tolist() == [[[0, 1, 2, 3]]]


@needs_kernel
def test_triton_model_neighbours_through_torch_compile(kernel_on):
    """The ops trace into a compiled graph without a break and give the eager indices."""
    torch.manual_seed(0)
    xyz = torch.randn(2, 3, 40, 3, device=DEVICE)
    geo = torch.rand(40, 40, device=DEVICE)

    def neighbours(x, g):
        return euclidean_knn(x[:, :, :8], x, 5), knn_indices(g[:8], 5)

    backend = "inductor" if DEVICE == "cuda" else "eager"
    compiled = torch.compile(neighbours, fullgraph=True, backend=backend)
    for got, want in zip(compiled(xyz, geo), neighbours(xyz, geo), strict=True):
        assert torch.equal(got, want)


@needs_kernel
def test_triton_custom_ops_pass_opcheck():
    # schema and fake (meta) functions, as torch.compile uses them
    torch.library.opcheck(knn._smallest_k_op, (torch.rand(5, 9, device=DEVICE), 3))
    centers, points = torch.randn(2, 4, 3, device=DEVICE), torch.randn(2, 9, 3, device=DEVICE)
    torch.library.opcheck(knn._euclidean_knn_op, (centers, points, 3))


def test_dispatch_reference_without_kernel(monkeypatch):
    """CPU tensors (or STMT_DISABLE_KERNELS=1) take topk; k > N is refused in one line."""
    monkeypatch.setattr(knn, "_KERNEL_ON_CPU", True)
    monkeypatch.setenv("STMT_DISABLE_KERNELS", "1")
    dist = torch.rand(4, 9)
    assert torch.equal(knn.smallest_k(dist, 3), dist.topk(3, largest=False).indices)
    with pytest.raises(ValueError, match="k=10 neighbours asked among only 9 points"):
        knn.smallest_k(dist, 10)
    monkeypatch.setattr(knn, "_KERNEL_ON_CPU", False)
    monkeypatch.delenv("STMT_DISABLE_KERNELS")
    assert not knn._use_kernel(dist, 9, 3)  # CPU tensors never go to the kernel
    assert not knn._use_kernel(dist.double(), 9, 3)


def test_kernels_compile_for_sm90_without_a_gpu():
    """Triton's compiler, not only its interpreter, takes both kernels for an H100 / H200
    (bfloat16, level 2's N 64 and k 8, the launch's default 4 warps; N 512 compiles too,
    in 35 s, too long for every CI run)."""
    rows_kernel, euclid_kernel = knn._build_kernels()
    block_n = 64
    block = knn._rows_per_program(block_n)
    types = {"D": "*bf16", "OUT": "*i64"}
    compile_for_sm90(rows_kernel, types, {"K": 8, "BLOCK_R": block, "BLOCK_N": block_n}, 4)
    types = {"C": "*bf16", "P": "*bf16", "OUT": "*i64"}
    compile_for_sm90(euclid_kernel, types, {"K": 8, "BLOCK_M": block, "BLOCK_N": block_n}, 4)


@runs_interpreter
def test_kernel_tests_under_interpreter():
    run_kernel_tests_interpreted(__file__)
