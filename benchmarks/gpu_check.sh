#!/usr/bin/env bash
# The GPU checks of issue 12 in one run, logs under $OUT (default ./gpu-check-out).
#
#   benchmarks/gpu_check.sh --prepare    # here, with git: the base commit's model files
#                                        # into .baseline/ (for a machine without history)
#   benchmarks/gpu_check.sh              # on the GPU machine, from the repository root
#   benchmarks/gpu_check.sh --dry-run    # the same steps at smoke sizes (CPU)
#   benchmarks/gpu_check.sh --rerun      # only the train step and the compile tests
#
# Steps, most wanted first, each under its own time limit so that one that
# hangs leaves time for the rest:
#   1. bm_train_step: stmt_base, batch 32, T 24, N 512, bf16 autocast; 2b99dcd's
#      model eager and compiled, this tree eager, compiled, and compiled with the
#      fused AdamW update (CPU-only in stmt fit so far); FLOPs, MFU, peak memory
#   2. the kernel and compile tests on the GPU (TRITON_INTERPRET unset)
#   3. bm_offset_attention in float32 (the dispatch rule's evidence) and bfloat16
#   4. bm_knn (the neighbour-search kernel; its tests run in step 2)
#   5. bm_optimizer (fused AdamW against the default update)
# Uses PYTHONPATH=. (no install): the GPU image has torch, triton, lightning,
# torchmetrics, pytest, hypothesis.
set -u
BASE=2b99dcd
FILES="stmt/model/stmt.py stmt/ops/points.py stmt/ops/offset_attention.py"
if [ "${1:-}" = "--prepare" ]; then
    for f in $FILES; do
        mkdir -p ".baseline/$BASE/$(dirname "$f")"
        git show "$BASE:$f" >".baseline/$BASE/$f" || exit 1
    done
    grep -qx '/.baseline/' .git/info/exclude 2>/dev/null || echo '/.baseline/' >>.git/info/exclude
    echo "prepared .baseline/$BASE (carry it: .baseline)"
    exit 0
fi
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
unset TRITON_INTERPRET STMT_DISABLE_KERNELS
SRC=()
[ -d ".baseline/$BASE" ] && SRC=(--base-src ".baseline/$BASE")

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s): $*" | tee "$OUT/$name.log"
    local t0=$SECONDS
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/$name.log" "$OUT/summary.log"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available())" 2>&1
} | tee "$OUT/env.log"

if [ $DRY = 1 ]; then
    step train_step 300 python3 benchmarks/bm_train_step.py --quick --modes 2b99dcd eager "${SRC[@]}"
    step tests 300 python3 -m pytest -q -x tests/test_compile.py -k "fit_setup"
    step oa_fp32 120 python3 benchmarks/bm_offset_attention.py --dtype float32 --n 32 --cpu-batch 4 --iters 2 --warmup 1 --no-compile
    step bm_optimizer 120 python3 benchmarks/bm_optimizer.py --arch stmt_tiny --steps 3
    exit 0
fi
MODES=(--modes 2b99dcd 2b99dcd-compiled eager compiled compiled-fused)
if [ "${1:-}" = "--rerun" ]; then
    step train_step 220 python3 benchmarks/bm_train_step.py --steps 20 --warmup 3 "${MODES[@]}" "${SRC[@]}"
    step tests 100 python3 -m pytest -q -p no:cacheprovider tests/test_offset_attention.py -k "compiled_model or float32_kernel_only or opcheck"
    exit 0
fi
step train_step 240 python3 benchmarks/bm_train_step.py --steps 20 --warmup 3 "${MODES[@]}" "${SRC[@]}"
step tests 150 python3 -m pytest -q -p no:cacheprovider tests/test_offset_attention.py tests/test_compile.py tests/test_knn.py
step oa_fp32 50 python3 benchmarks/bm_offset_attention.py --dtype float32 --iters 30 --warmup 5
step oa_bf16 50 python3 benchmarks/bm_offset_attention.py --dtype bfloat16 --iters 30 --warmup 5
step bm_knn 40 python3 benchmarks/bm_knn.py
step bm_optimizer 30 python3 benchmarks/bm_optimizer.py
cat "$OUT/summary.log"
