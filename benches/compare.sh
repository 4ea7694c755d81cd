#!/usr/bin/env bash
# One command for the side-by-side comparison: runs the PyTorch reference and our training-step
# benchmark on this machine, one after the other, and prints our table with PyTorch's times and
# the ratios (torch ms / our ms). Logs go to bench-results/.
#
#   bash benches/compare.sh            # CPU (and GPU when present), toy + DCGAN-28 cases
#   bash benches/compare.sh toy        # only cases whose name contains "toy"
#   TORCH_STEPS=3 TORCH_WARMUP=1 WGAN_BENCH_STEPS=3 bash benches/compare.sh dcgan64   # fewer steps
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-results
stamp="$(date -u +%Y-%m-%d)"
device="cpu"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then device="cuda"; fi
torch_json="bench-results/${stamp}-torch-${device}.json"
log="bench-results/${stamp}-compare-${device}${1:+-$1}.log"
workloads="${1:-all}"
case "$workloads" in toy|dcgan28|dcgan64|all) ;; *) workloads=all ;; esac
{
  echo "# benches/compare.sh on $(hostname) at $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nproc | sed 's/^/cpu threads: /'
  if [ "$device" = cuda ]; then nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; fi
  modes=eager; [ "$device" = cuda ] && modes=all   # on a GPU: eager, tuned (channels_last, cudnn.benchmark), graph
  python3 benches/reference/wgan_torch.py --workload "$workloads" --loss all --mode "$modes" --device "$device" --json "$torch_json" \
    --steps "${TORCH_STEPS:-50}" --warmup "${TORCH_WARMUP:-5}"
  WGAN_TORCH_JSON="$torch_json" cargo bench --bench train_step -- "$@"
} 2>&1 | tee "$log"
echo "log: $log"
