#!/usr/bin/env bash
# One command for the side-by-side comparison: runs the PyTorch reference and our training-step
# benchmark on this machine, one after the other, and prints our table with PyTorch's times and
# the ratios (torch ms / our ms). Logs go to bench-results/.
#
#   bash benches/compare.sh            # CPU (and GPU when present), toy + DCGAN-28 cases
#   bash benches/compare.sh toy        # only cases whose name contains "toy"
#   bash benches/compare.sh dcgan28w32 # the default job (MNIST DCGAN-28, width 32)
#   TORCH_STEPS=3 TORCH_WARMUP=1 WGAN_BENCH_STEPS=3 bash benches/compare.sh dcgan64   # fewer steps
#   ROUNDS=3 bash benches/compare.sh toy   # PyTorch and ours alternately, 3 rounds, then medians
#   TORCH_THREADS=1 RAYON_NUM_THREADS=1 ROUNDS=3 bash benches/compare.sh dcgan28w32   # one thread each
#
# On a shared machine the load changes from minute to minute: ROUNDS alternates the two so both
# see the same conditions, logs /proc/loadavg before each run, and ends with the per-case medians
# over rounds (bench-results/<date>-rounds-<workload>.json).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-results
stamp="$(date -u +%Y-%m-%d)"
device="cpu"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then device="cuda"; fi
torch_json="bench-results/${stamp}-torch-${device}.json"
log="bench-results/${stamp}-compare-${device}${1:+-$1}${TORCH_THREADS:+-t$TORCH_THREADS}${ROUNDS:+-x$ROUNDS}.log"
workloads="${1:-all}"
case "$workloads" in toy|dcgan28w32|dcgan28|dcgan64|all) ;; *) workloads=all ;; esac
rounds="${ROUNDS:-1}"
tag="${workloads}${TORCH_THREADS:+-t$TORCH_THREADS}"   # names the per-round files
{
  echo "# benches/compare.sh on $(hostname) at $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nproc | sed 's/^/cpu threads: /'
  lscpu 2>/dev/null | grep -E '^(Model name|Flags):' || true
  python3 -c 'import torch; print("torch", torch.__version__, "default threads", torch.get_num_threads())' 2>/dev/null || true
  echo "TORCH_THREADS=${TORCH_THREADS:-default} RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-default}"
  if [ "$device" = cuda ]; then nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; fi
  modes=eager; [ "$device" = cuda ] && modes=all   # on a GPU: eager, tuned (channels_last, cudnn.benchmark), graph
  for r in $(seq 1 "$rounds"); do
    tj="$torch_json"; [ "$rounds" -gt 1 ] && tj="bench-results/${stamp}-torch-${device}-${tag}-r${r}.json"
    echo "## round $r/$rounds PyTorch: loadavg $(cat /proc/loadavg 2>/dev/null || echo n/a)"
    python3 benches/reference/wgan_torch.py --workload "$workloads" --loss all --mode "$modes" --device "$device" --json "$tj" \
      --steps "${TORCH_STEPS:-50}" --warmup "${TORCH_WARMUP:-5}" ${TORCH_THREADS:+--threads "$TORCH_THREADS"}
    echo "## round $r/$rounds ours: loadavg $(cat /proc/loadavg 2>/dev/null || echo n/a)"
    WGAN_TORCH_JSON="$tj" cargo bench --bench train_step -- "$@"
    if [ "$rounds" -gt 1 ]; then cp "bench-results/${stamp}-${device}.json" "bench-results/${stamp}-${device}-${tag}-r${r}.json"; fi
  done
  if [ "$rounds" -gt 1 ]; then
    python3 - "$stamp" "$device" "$tag" "$rounds" <<'PY'
import json, statistics, sys
stamp, device, work, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ours, torch = {}, {}
for r in range(1, rounds + 1):
    for rec in json.load(open(f"bench-results/{stamp}-{device}-{work}-r{r}.json")):
        if rec.get("ours_ms") is not None and rec.get("device") == device:
            ours.setdefault(rec["case"], []).append(rec["ours_ms"])
    t = json.load(open(f"bench-results/{stamp}-torch-{device}-{work}-r{r}.json"))
    for rec in (t["records"] if isinstance(t, dict) else t):
        if rec.get("mode", "eager") == "eager" and rec.get("torch_ms") is not None:
            torch.setdefault(rec["case"], []).append(rec["torch_ms"])
out = []
print(f"\nmedians over {rounds} alternating rounds (ms per generator step)")
print(f"{'case':<30} {'ours':>9} {'torch':>9} {'torch/ours':>10}   ours per round / torch per round")
for case in sorted(set(ours) & set(torch)):
    o, t = statistics.median(ours[case]), statistics.median(torch[case])
    print(f"{case:<30} {o:9.1f} {t:9.1f} {t / o:9.2f}x   {[round(v, 1) for v in ours[case]]} / {[round(v, 1) for v in torch[case]]}")
    out.append(dict(case=case, device=device, rounds=rounds, ours_ms=o, torch_ms=t, ratio=t / o,
                    ours_rounds=ours[case], torch_rounds=torch[case]))
path = f"bench-results/{stamp}-rounds-{device}-{work}.json"
json.dump(out, open(path, "w"), indent=2)
print(f"wrote {path}")
PY
  fi
} 2>&1 | tee "$log"
echo "log: $log"
