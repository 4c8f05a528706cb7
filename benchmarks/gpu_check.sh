#!/usr/bin/env bash
# The GPU measurement of issues 15 and 22, in one script: < 10 minutes on one H100/H200 with a CUDA build of PyTorch.
#
#   bash benchmarks/gpu_check.sh            # writes to $OUT if set, else benchmarks/results/gpu-<UTC date>/
#
# Needs only what a CUDA PyTorch image has (torch with Triton, numpy, pandas); nothing is installed from the network.
# pytest is pure Python: if it is missing, put its wheels in benchmarks/wheels/ beforehand
# (`pip download pytest -d benchmarks/wheels`) and they are installed from there, offline.
# Steps (each under its own timeout, so one failure does not cost the rest):
#   1. tests/test_gpu.py (set_sync_debug_mode("error") on unsampled steps, one copy per sampled step, autocast),
#      tests/test_fused_kernel.py (Triton kernel == reference on the GPU), tests/test_no_sync.py and
#      tests/test_update_norms.py (sampled update norms on CUDA against a whole copy, no sync in the step hooks);
#   2. benchmarks/device_memory.py: extra peak memory of every=1 on ResNet-50 and GPT-2 small, and on two
#      Linear(4096, 4096) with AdamW (issue 21: update ratios without a parameter snapshot);
#   3. benchmarks/overhead.py --device cuda on ResNet-50 (bf16, batch 128) and GPT-2 small (8 x 512, bf16),
#      3 rounds, nbdiag and the reproduced fastai ActivationStats (no extra package);
#   4. benchmarks/sharded_overhead.py: FSDP2 on 1 rank (nccl): the DTensor paths on CUDA give the statistics of an
#      unsharded copy, then the cost of a sampled step (every=1) against plain FSDP2 training;
#   5. benchmarks/host_cost.py --device cuda: issue 21's host-cost proxy (100 x (Linear(8, 8) + ReLU), batch 1),
#      the host time an every=1 step adds per hooked layer (goal <= 30 us);
# then a Markdown summary (summary.md) next to the raw outputs and JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEST="${OUT:-benchmarks/results/gpu-$(date -u +%Y%m%d-%H%M)}"
mkdir -p "$DEST"
PY="${PYTHON:-python}"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device: nothing measured" | tee "$DEST/summary.md"
    exit 2
fi
if ! "$PY" -c "import pytest" 2>/dev/null && ls benchmarks/wheels/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install --no-index --find-links benchmarks/wheels pytest >"$DEST/pip.txt" 2>&1
fi

{
    echo "# nbdiag GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    "$PY" - <<'PY'
import torch
props = torch.cuda.get_device_properties(0)
try:
    import triton
    tv = triton.__version__
except ImportError:
    tv = "-"
print(f"\n- GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, CUDA {torch.version.cuda}, triton {tv}")
PY
} >"$DEST/summary.md"

echo "## 1. CUDA tests" >>"$DEST/summary.md"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_fused_kernel.py tests/test_no_sync.py \
    tests/test_update_norms.py -k "not corpus" >"$DEST/tests.txt" 2>&1
echo "exit $?: $(tail -n 1 "$DEST/tests.txt")" >>"$DEST/summary.md"

echo -e "\n## 2. Extra peak device memory of every=1\n" >>"$DEST/summary.md"
timeout 90 "$PY" benchmarks/device_memory.py --device cuda --model resnet50 gpt2 --json "$DEST/memory.json" \
    >"$DEST/memory.md" 2>&1
grep '^|' "$DEST/memory.md" >>"$DEST/summary.md" || tail -n 5 "$DEST/memory.md" >>"$DEST/summary.md"
echo -e "\nIssue 21: two Linear(4096, 4096) with AdamW, target <= 10% of the parameter bytes\n" >>"$DEST/summary.md"
timeout 60 "$PY" benchmarks/device_memory.py --device cuda --model wide --optimizer adamw \
    --json "$DEST/memory_wide.json" >"$DEST/memory_wide.md" 2>&1
grep '^|' "$DEST/memory_wide.md" >>"$DEST/summary.md" || tail -n 5 "$DEST/memory_wide.md" >>"$DEST/summary.md"

echo -e "\n## 3. Overhead (ratio to plain training, methods interleaved)\n" >>"$DEST/summary.md"
timeout 240 "$PY" benchmarks/overhead.py --device cuda --model resnet50 gpt2 --rounds 3 --steps 100 --warmup 5 \
    --methods nbdiag fastai --json "$DEST/overhead.json" >"$DEST/overhead.md" 2>&1
sed -n '/^### /,$p' "$DEST/overhead.md" >>"$DEST/summary.md"

echo -e "\n## 4. FSDP2 (1 rank, nccl): statistics of sharded parameters, and the cost of a sampled step\n" >>"$DEST/summary.md"
timeout 120 "$PY" benchmarks/sharded_overhead.py --nproc 1 --device cuda --check >"$DEST/fsdp_check.txt" 2>&1
echo "exit $?: $(grep -E 'ok|MISMATCH|skipped' "$DEST/fsdp_check.txt" | tail -n 1)" >>"$DEST/summary.md"
timeout 120 "$PY" benchmarks/sharded_overhead.py --nproc 1 --device cuda --width 4096 --depth 8 --batch 256 \
    --rounds 3 --steps 20 >"$DEST/fsdp_overhead.md" 2>&1
sed -n '/^### /,$p' "$DEST/fsdp_overhead.md" >>"$DEST/summary.md"

echo -e "\n## 5. Host cost per hooked layer (issue 21's proxy, wall time, synchronized)\n" >>"$DEST/summary.md"
timeout 90 "$PY" benchmarks/host_cost.py --device cuda --rounds 5 >"$DEST/host_cost.txt" 2>&1
sed 's/^/    /' "$DEST/host_cost.txt" >>"$DEST/summary.md"
cat "$DEST/summary.md"
