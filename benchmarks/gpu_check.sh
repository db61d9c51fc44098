#!/usr/bin/env bash
# The GPU checks of issue 12 in one run, logs under $OUT (default ./gpu-check-out).
#
#   benchmarks/gpu_check.sh --prepare    # here, with git: the base commits' model files
#                                        # into .baseline/ (for a machine without history)
#   benchmarks/gpu_check.sh              # on the GPU machine, from the repository root
#   benchmarks/gpu_check.sh --dry-run    # the same steps at smoke sizes (CPU)
#   benchmarks/gpu_check.sh --rerun      # only the train steps and the compile tests
#
# Steps, most wanted first, each under its own time limit so that one that
# hangs leaves time for the rest (under 10 minutes in all):
#   1. bm_train_step: stmt_base, batch 32, T 24, N 512, bf16 autocast; 2b99dcd's
#      model eager (the issue's baseline), this tree eager and compiled; FLOPs,
#      MFU, memory
#   2. bm_train_step again, all compiled, one process: $BEFORE (the tree before
#      the 16-bit grouping input was padded to a multiple of 8 channels), this
#      tree with batch norm + ReLU + max as three steps (the padding's share),
#      this tree (the one-pass kernel's share, stmt.ops.neighbor_stats), and with
#      the fused AdamW update (CPU-only in stmt fit so far)
#   3. the kernel tests on the GPU: kNN (the NaN ordering fix has run only under
#      the interpreter), the one-pass kernel (never run on a GPU), the
#      compiled-model / opcheck tests of offset attention
#   4. bm_optimizer
#   5. profile_step: this tree's compiled step, kernel time by kind (trace under $OUT)
# (bm_offset_attention, bm_knn: unchanged since their last GPU run; run them by hand.)
# Uses PYTHONPATH=. (no install): the GPU image has torch, triton, lightning,
# torchmetrics, pytest, hypothesis.
set -u
BASE=2b99dcd
BEFORE=2a0c159  # the last commit before the 16-bit padding of the grouping input
FILES="stmt/model/stmt.py stmt/ops/points.py stmt/ops/offset_attention.py"
if [ "${1:-}" = "--prepare" ]; then
    for commit in $BASE $BEFORE; do
        for f in $FILES; do
            mkdir -p ".baseline/$commit/$(dirname "$f")"
            git show "$commit:$f" >".baseline/$commit/$f" || exit 1
        done
    done
    grep -qx '/.baseline/' .git/info/exclude 2>/dev/null || echo '/.baseline/' >>.git/info/exclude
    echo "prepared .baseline/$BASE and .baseline/$BEFORE (carry it: .baseline)"
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
SRC_BEFORE=()
[ -d ".baseline/$BEFORE" ] && SRC_BEFORE=(--base-src ".baseline/$BEFORE")

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
    step variants 300 python3 benchmarks/bm_train_step.py --quick --no-flops --base $BEFORE --modes 2b99dcd compiled-three-steps compiled "${SRC_BEFORE[@]}"
    step tests 300 python3 -m pytest -q -x tests/test_compile.py -k "fit_setup"
    step bm_optimizer 120 python3 benchmarks/bm_optimizer.py --arch stmt_tiny --steps 3
    step profile 120 python3 benchmarks/profile_step.py --quick --eager
    exit 0
fi
MODES=(--modes 2b99dcd eager compiled)
# "2b99dcd" = the base, here $BEFORE
VARIANTS=(--no-flops --base $BEFORE --modes 2b99dcd-compiled compiled-three-steps compiled compiled-fused)
TESTS=(tests/test_knn.py tests/test_neighbor_stats.py tests/test_offset_attention.py
    -k "not interpreter and not sm90 and (test_knn or test_neighbor_stats or compiled_model or opcheck)")
if [ "${1:-}" = "--rerun" ]; then
    step train_step 150 python3 benchmarks/bm_train_step.py --steps 20 --warmup 3 "${MODES[@]}" "${SRC[@]}"
    step variants 260 python3 benchmarks/bm_train_step.py --steps 20 --warmup 3 "${VARIANTS[@]}" "${SRC_BEFORE[@]}"
    exit 0
fi
step train_step 140 python3 benchmarks/bm_train_step.py --steps 20 --warmup 3 "${MODES[@]}" "${SRC[@]}"
step variants 230 python3 benchmarks/bm_train_step.py --steps 20 --warmup 3 "${VARIANTS[@]}" "${SRC_BEFORE[@]}"
step tests 110 python3 -m pytest -q -p no:cacheprovider "${TESTS[@]}"
step bm_optimizer 20 python3 benchmarks/bm_optimizer.py
step profile 80 python3 benchmarks/profile_step.py --out "$OUT"
cat "$OUT/summary.log"
