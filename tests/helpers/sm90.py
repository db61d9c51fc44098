"""Compile a Triton kernel for an H100 / H200 (sm_90) without a GPU.

The interpreter runs a kernel's Python; the compiler takes a subset of it, with
types and layouts the interpreter never checks. ``triton.compile`` for an
explicit target needs no device: what it returns is the PTX (and the binary,
through the ptxas Triton ships), so CI can check the kernels compile.
"""

from __future__ import annotations

import pytest


def compile_for_sm90(kernel, types: dict[str, str], constexprs: dict, num_warps: int) -> str:
    """PTX of the ``triton.jit`` function ``kernel`` for sm_90.

    Args:
        kernel: the jitted kernel (its module's ``_build_kernels()`` has run).
        types: Triton types of its arguments by name (``"*bf16"``, ``"fp32"``, ...);
            those not given and not in ``constexprs`` are ``"i32"``.
        constexprs: the values of its ``tl.constexpr`` arguments, by name.
        num_warps: as the launch uses.
    """
    triton = pytest.importorskip("triton")
    if tuple(int(p) for p in triton.__version__.split(".")[:2]) < (3, 2):
        pytest.skip("signatures keyed by name need Triton >= 3.2")
    signature = {
        name: "constexpr" if name in constexprs else types.get(name, "i32")
        for name in kernel.arg_names
    }
    assert set(types) <= set(signature), f"{set(types) - set(signature)} are not arguments"
    try:  # Triton's own API, not a stable one: a different one skips, a compile error fails
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource

        source = ASTSource(kernel, signature, constexprs)
    except (ImportError, TypeError) as e:
        pytest.skip(f"Triton {triton.__version__}'s compile API differs: {e}")
    compiled = triton.compile(
        source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps}
    )
    ptx = compiled.asm["ptx"]
    assert f".entry {kernel.__name__}" in ptx
    return ptx
