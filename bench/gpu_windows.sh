#!/usr/bin/env bash
# One GPU call (issue 14): window latency in the node's regime, HTTM vs dense vs the FastVGGT code,
# and HTTM with its shape-stability lever off (attention_sdpa=cudnn: cuDNN plans per new shape).
#
#   bash bench/gpu_windows.sh            # from the repository root; writes under $OUT (or ./outputs)
#   bash bench/gpu_windows.sh --smoke    # the whole flow on the CPU, tiny model, tiny sizes
#
# Needs the FastVGGT code in .peers/FastVGGT (carried to the device machine; never committed).
# Every run is one `python3 -m httm_ros.bench windows` (one process per mode inside); the runs
# share one deadline (BUDGET_S from the start), so a slow run is cut short (its row says "cut")
# instead of losing the later ones.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-outputs/gpu_windows}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
PEER="${PEER:-.peers/FastVGGT}"
export HTTM_GIT_COMMIT="${HTTM_GIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"

if [ "${1:-}" = "--smoke" ]; then
    BUDGET_S="${BUDGET_S:-900}"
    COMMON=(--config tiny --device cpu --image-size 56 70 --warmup 1)
    K24=(--frames 6 --new 4 --windows 3); K64=(--frames 8 --new 6 --windows 2)
else
    BUDGET_S="${BUDGET_S:-440}"
    COMMON=(--config 1b --device cuda --image-size 392 518 --warmup 1)
    K24=(--frames 24 --new 16 --windows 100); K64=(--frames 64 --new 48 --windows 40)
fi
T_END=$(( $(date +%s) + BUDGET_S ))
PEER_ARGS=()
if [ -d "$PEER/vggt" ]; then PEER_ARGS=(--peer-fastvggt "$PEER"); else echo "no FastVGGT code at $PEER: its rows are left out"; fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  $PY -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.version.cuda, "python", sys.version.split()[0])'
  $PY -c 'import sys, httm_ros.bench.cli; print("rclpy imported:", "rclpy" in sys.modules)'; } | tee "$OUT/env.txt"

run() {   # name, share of the time left (percent), args...
    local name=$1 share=$2; shift 2
    local now left budget
    now=$(date +%s); left=$(( T_END - now ))
    if [ "$left" -le 20 ]; then echo "[gpu_windows] $name: skipped (no time left)"; return; fi
    budget=$(( left * share / 100 ))
    echo "[gpu_windows] $name: budget ${budget} s of ${left} s left"
    $PY -m httm_ros.bench windows "${COMMON[@]}" "$@" --budget-s "$budget" --out "$OUT/$name.json" \
        > "$OUT/$name.log" 2>&1
    echo "[gpu_windows] $name: rc=$? ($(( $(date +%s) - now )) s)"
    grep '^\[windows\]' "$OUT/$name.log" || tail -5 "$OUT/$name.log"
}

# RUNS picks the runs, in order (default: the node's default window K=24 with its lever-off
# row, then K=64). Estimates on the H200 (issue 14's numbers, ~10 s start-up per process, ~30 s
# cold Triton compile + tuning in the first HTTM warm-up): K=24 peer/dense/httm ~65/65/85 s,
# K=24 cuDNN ~55 s (cut to ~40 windows), K=64 peer/dense/httm ~70/90/85 s. With BUDGET_S=440
# the K=64 rows are cut to ~20-25 windows; a second call with RUNS="k64 k64_cudnn" gives them
# their 40 windows. Within a run the peer goes first and httm last (a child's share is the time
# left over the children left).
RUNS="${RUNS:-k24 k24_cudnn k64}"
set -- $RUNS
n=$#
for name in $RUNS; do
    share=$(( 100 / n )); n=$(( n - 1 ))
    [ "$name" = k24 ] && share=$(( share * 3 / 2 ))           # 3 children: more than an equal share
    [ "$share" -gt 100 ] && share=100
    case "$name" in
        k24) run k24 "$share" "${K24[@]}" --modes dense httm "${PEER_ARGS[@]}" ;;
        k24_cudnn) run k24_cudnn "$share" "${K24[@]}" --modes httm --httm-set attention_sdpa=cudnn ;;
        k64) run k64 "$share" "${K64[@]}" --modes dense httm "${PEER_ARGS[@]}" ;;
        k64_cudnn) run k64_cudnn "$share" "${K64[@]}" --modes httm --httm-set attention_sdpa=cudnn ;;
        *) echo "[gpu_windows] unknown run $name" ;;
    esac
done

$PY - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
from httm_ros.bench.windows import table
rows = []
for name in ("k24", "k24_cudnn", "k64", "k64_cudnn"):
    path = Path(sys.argv[1]) / f"{name}.json"
    if path.exists():
        rows += json.loads(path.read_text())["rows"]
for r in rows:                      # ratios the targets are stated in
    if r.get("p50_s"):
        print(f"{r['label']:32s} K={r['frames']:3d}: first/p50 {r.get('first_over_p50')}, "
              f"p99/p50 {r.get('p99_over_p50')}, windows {r.get('windows_timed')}{' (cut)' if r.get('truncated') else ''}")
print(table(rows))
EOF
