#!/usr/bin/env bash
# The next GPU session's measurements (issues 14 and 16), one device call per part (<= 9 min each):
#
#   PART=1 bash bench/gpu_next.sh   # windows K=24/64/128: dense, httm, uniform, the FastVGGT code;
#                                   # weights fp32 vs bf16; the onboard preset (K=32, bf16 weights)
#   PART=2 bash bench/gpu_next.sh   # e2e 100/300/1000 frames: httm flash vs cudnn, dense 100/300,
#                                   # uniform (FastVGGT-faithful) vs the FastVGGT code at 100/300
#   PART=3 bash bench/gpu_next.sh   # issue 16's window-size table: K in 16..128, anchored layout,
#                                   # dense and httm, new keyframes per second of model time; issue
#                                   # 17's weights dtype (bf16, fp16 vs fp32 on the golden data)
#   PART=4 bash bench/gpu_next.sh   # the torch.compile lever (--compile-tokenwise) alone: windows
#                                   # K=24 and e2e 24/100 frames, eager vs compiled; compiled golden parity
#   PART=5 bash bench/gpu_next.sh   # the DPT heads in bf16 (--dpt-dtype) alone, on top of the compiled
#                                   # passes with cuDNN attention: golden parity, e2e 24/100/1000, windows K=24
#   PART=6 bash bench/gpu_next.sh   # bf16 weights on top of the node's GPU setting (compiled passes,
#                                   # bf16 DPT heads): e2e 24/100/1000 (cuDNN) and windows K=24, fp32 vs bf16 weights
#   PART=7 bash bench/gpu_next.sh   # 1000 frames: our uniform mode (FastVGGT's algorithm) against the
#                                   # FastVGGT code, both with bf16 weights, in one call (issue 14's 10% target)
#   PART=8 bash bench/gpu_next.sh   # issue 14 in one call (meant for the H200 its targets name), the
#                                   # node's GPU setting (compiled, bf16 DPT heads): windows K=24 and K=64
#                                   # (dense, httm, the FastVGGT code), e2e httm 24/100/1000 (bf16 weights,
#                                   # cuDNN), the FastVGGT code at 1000 frames
#   PART=9 bash bench/gpu_next.sh   # onboard GPUs without Triton: the PyTorch path (impl=torch) against
#                                   # the Triton path, windows K=24/64/128, eager, bf16 weights and heads
#                                   # (issue 14: its peak memory within 1.1x, its time beside it)
#   PART=10 bash bench/gpu_next.sh  # issue 16: new keyframes per second in the node's GPU setting (compiled,
#                                   # bf16 DPT heads): dense 24/8 against HTTM at K/O 24/8, 24/4, 32/6, 48/6, 64/6
#   PART=11 bash bench/gpu_next.sh  # issue 14's 1000-frame levers alone on top of the node's e2e setting: the
#                                   # DPT heads compiled, then also max-autotune (GEMM epilogues); the FastVGGT code first
#   PART=12 bash bench/gpu_next.sh  # issue 14's streaming core at the node's defaults (httm-bench stream): 600
#                                   # frames, VGGT-1B test weights, oracle geometry; new keyframes/s, window
#                                   # latency p50/p99/max, first window, warm-up, GPU memory, per-stage time
#   PART=13 bash bench/gpu_next.sh  # issue 16: merge-aware fine-tuning of the shipped httm-vggt-synth (httm-train
#                                   # --init-weights --merge httm), its losses as shipped; weights, card, log in one tar
#   PART=14 bash bench/gpu_next.sh  # issue 14: ours dense at 24/100 frames in the node's GPU setting (compiled
#                                   # passes and DPT heads, bf16 DPT heads), against the official code's H200 times
#   PART=15 bash bench/gpu_next.sh  # issue 14's node regime over ~100 windows: K=24 with 20 new (the node's
#                                   # default layout), K=64 (40 windows), K=128; dense, httm, the FastVGGT code
#   PART=1 bash bench/gpu_next.sh --smoke   # the same flow on the CPU: tiny model, tiny sizes
#
# HTTM_GIT_COMMIT must be set (the device copy's .git is stale; provenance records the variable).
# Writes only JSON and small text files under $OUT (<= 8 files per part); logs go to $LOGS
# (default /tmp/gpu_next_logs). Every run shares one deadline (BUDGET_S from the start), so a slow
# run is cut short or skipped (its row says so) instead of losing the later ones. Needs the
# FastVGGT code in .peers/FastVGGT for the peer rows (carried; never committed).
set -u
cd "$(dirname "$0")/.."
if [ -z "${HTTM_GIT_COMMIT:-}" ]; then
    echo "gpu_next.sh: set HTTM_GIT_COMMIT=<commit of this tree> (e.g. \$(git rev-parse HEAD) on the" >&2
    echo "machine that has the real .git): the device copy's .git is stale and would be recorded." >&2
    exit 2
fi
export HTTM_GIT_COMMIT PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PART="${PART:?set PART=1..15}"
OUT="${OUT:-outputs/gpu_next}"
LOGS="${LOGS:-/tmp/gpu_next_logs}"
mkdir -p "$OUT" "$LOGS"
PY="${PYTHON:-python3}"
PEER="${PEER:-.peers/FastVGGT}"
SMOKE=0; [ "${1:-}" = "--smoke" ] && SMOKE=1

if [ "$SMOKE" = 1 ]; then
    BUDGET_S="${BUDGET_S:-300}"
    MODEL=(--config tiny --device cpu --image-size 56 70)
    W24=(--frames 6 --new 4 --windows 3); W64=(--frames 8 --new 6 --windows 2); W128=(--frames 10 --new 8 --windows 2)
    WON=(--frames 7 --new 5 --windows 2)
    E1=(4 6 8); E2=(4 6); E3=(4 6); E5=(4 6 8); KS=(4 6 8); OVL=2
    KO=("6 4 3" "6 5 3" "8 6 2")          # PART=10: "K new windows"
    E6=(4 8)
    STREAM=(--config tiny --device cpu --frames 60 --set image_size=56 --set window_size=4 --set window_overlap=2)
    LONG=150; W24N=(--frames 6 --new 5 --windows 5); W64L=(--frames 8 --new 6 --windows 3)
    BF16=float32              # bf16 weights need CUDA autocast (the patch embedding's input is fp32)
else
    BUDGET_S="${BUDGET_S:-520}"
    MODEL=(--config 1b --device cuda --image-size 392 518)
    W24=(--frames 24 --new 16 --windows 40); W64=(--frames 64 --new 48 --windows 15); W128=(--frames 128 --new 120 --windows 6)
    WON=(--frames 32 --new 24 --windows 30)
    E1=(100 300 1000); E2=(100 300); E3=(24 100); E5=(24 100 1000); KS=(16 24 32 48 64 96 128); OVL=8
    KO=("24 16 30" "24 20 30" "32 26 25" "48 42 15" "64 58 12")
    E6=(24 1000)
    STREAM=(--device cuda --set require_gpu=true --frames 600)     # every other value: the node's default
    LONG=10000; W24N=(--frames 24 --new 20 --windows 100); W64L=(--frames 64 --new 48 --windows 40)
    BF16=bfloat16
fi
T0=$(date +%s); T_END=$(( T0 + BUDGET_S ))
export BENCH_T0="$T0"
PEER_ARGS=()
if [ -d "$PEER/vggt" ]; then PEER_ARGS=(--peer-fastvggt "$PEER"); else echo "no FastVGGT code at $PEER: its rows are left out"; fi

{ echo "part $PART commit $HTTM_GIT_COMMIT smoke $SMOKE"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  $PY -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.version.cuda, "python", sys.version.split()[0])'
} > "$OUT/env_part$PART.txt" 2>&1

left() { echo $(( T_END - $(date +%s) )); }
# windows NAME SHARE(percent of the time left) ARGS...: one `httm-bench windows` run
windows() {
    local name=$1 share=$2; shift 2
    local t; t=$(left)
    if [ "$t" -le 20 ]; then echo "[gpu_next] $name: skipped (no time left)"; return; fi
    echo "[gpu_next] $name: budget $(( t * share / 100 )) s of $t s left"
    $PY -m httm_ros.bench windows "${MODEL[@]}" --warmup 1 "$@" --budget-s $(( t * share / 100 )) \
        --out "$LOGS/$name.json" > "$LOGS/$name.log" 2>&1     # its children's logs sit beside it
    echo "[gpu_next] $name: rc=$?"; grep '^\[windows\]' "$LOGS/$name.log" || tail -3 "$LOGS/$name.log"
    cp "$LOGS/$name.json" "$OUT/" 2>/dev/null
}
# e2e NAME ARGS...: one `httm-bench e2e` process, cut at the part's deadline
e2e() {
    local name=$1; shift
    local t; t=$(left)
    if [ "$t" -le 20 ]; then echo "[gpu_next] $name: skipped (no time left)"; return; fi
    echo "[gpu_next] $name: $t s left"
    timeout "$t" $PY -m httm_ros.bench e2e "${MODEL[@]}" "$@" --deadline-s "$BUDGET_S" \
        --out "$OUT/$name.json" > "$LOGS/$name.log" 2>&1
    echo "[gpu_next] $name: rc=$?"; grep '^\[httm-bench\]' "$LOGS/$name.log" | tail -8
}

case "$PART" in
1)  # priority order; the weights-dtype lever alone: the same modes with bf16 weights
    windows k24 40 "${W24[@]}" --modes dense uniform httm "${PEER_ARGS[@]}"
    windows onboard 25 "${WON[@]}" --modes httm --weights-dtype "$BF16"
    windows k24_bf16 30 "${W24[@]}" --modes dense httm --weights-dtype "$BF16"
    windows k64 50 "${W64[@]}" --modes dense uniform httm "${PEER_ARGS[@]}"
    windows k128 70 "${W128[@]}" --modes dense httm "${PEER_ARGS[@]}"
    windows k64_bf16 100 "${W64[@]}" --modes dense httm --weights-dtype "$BF16" ;;
2)  # the same input every repeat (as issue 14's e2e table); breakdown per part in every row
    e2e e2e_httm_flash --frames "${E1[@]}" --modes httm --attention-sdpa flash
    e2e e2e_httm_cudnn --frames "${E1[@]}" --modes httm --attention-sdpa cudnn
    e2e e2e_dense --frames "${E2[@]}" --modes dense
    e2e e2e_uniform --frames "${E2[@]}" --modes uniform
    # the FastVGGT code at 100/300 frames: its own process, the same frames repeated (--new 0)
    for F in "${E2[@]}"; do
        windows "peer_$F" 50 --frames "$F" --new 0 --windows 4 --modes "${PEER_ARGS[@]}"
    done ;;
3)  e2e window_size --frames "${KS[@]}" --modes dense httm --overlap "$OVL"
    e2e window_size_bf16 --frames "${KS[@]}" --modes dense httm --overlap "$OVL" --weights-dtype "$BF16"
    # issue 17: VGGT-1B golden weights in bf16 / fp16 vs fp32 on the GPU (the CPU has bf16 only)
    if [ "$SMOKE" = 0 ] && [ "$(left)" -gt 60 ]; then
        timeout "$(left)" $PY -m httm_ros.bench dtype --device cuda --dtypes bfloat16 float16 \
            --out "$OUT/dtype_gpu.json" > "$LOGS/dtype.log" 2>&1
        echo "[gpu_next] dtype: rc=$?"; tail -3 "$LOGS/dtype.log"
    fi ;;
4)  # issue 14's fusion lever alone: the blocks' token-wise passes through torch.compile
    # (--compile-tokenwise), eager and compiled in one call; then its golden parity on the GPU
    windows k24_eager 45 "${W24[@]}" --modes dense httm
    windows k24_compiled 90 "${W24[@]}" --modes dense httm --compile-tokenwise
    if [ "$SMOKE" = 0 ] && [ "$(left)" -gt 60 ]; then
        timeout "$(( $(left) / 2 ))" $PY -m pytest -q -s -p no:cacheprovider test/test_vggt_compile.py \
            -k golden_cuda > "$OUT/compile_golden_cuda.txt" 2>&1
        echo "[gpu_next] compiled golden parity: rc=$?"; grep "relative error\|passed\|failed" "$OUT/compile_golden_cuda.txt"
    fi
    e2e e2e_eager --frames "${E3[@]}" --modes dense httm
    e2e e2e_compiled --frames "${E3[@]}" --modes dense httm --compile-tokenwise ;;
5)  # issue 14's heads lever alone (DPT heads bf16, channels-last), both rows compiled with cuDNN
    # attention (the fastest 1000-frame setting of session 7); its golden parity first
    if [ "$SMOKE" = 0 ] && [ "$(left)" -gt 60 ]; then
        timeout 120 $PY -m pytest -q -s -p no:cacheprovider test/test_vggt_dpt_precision.py \
            -k golden_cuda > "$OUT/dpt_golden_cuda.txt" 2>&1
        echo "[gpu_next] DPT bf16 golden parity: rc=$?"; grep "relative error\|passed\|failed" "$OUT/dpt_golden_cuda.txt"
    fi
    e2e e2e_dpt_float32 --frames "${E5[@]}" --modes httm --attention-sdpa cudnn --compile-tokenwise
    e2e e2e_dpt_bfloat16 --frames "${E5[@]}" --modes httm --attention-sdpa cudnn --compile-tokenwise --dpt-dtype bfloat16
    windows k24_dpt_float32 45 "${W24[@]}" --modes dense httm --compile-tokenwise
    windows k24_dpt_bfloat16 100 "${W24[@]}" --modes dense httm --compile-tokenwise --dpt-dtype bfloat16 ;;
6)  # the weights-dtype lever alone on top of the node's GPU setting (compiled, DPT heads bf16)
    e2e e2e_w32 --frames "${E5[@]}" --modes httm --attention-sdpa cudnn --compile-tokenwise --dpt-dtype "$BF16"
    e2e e2e_wbf16 --frames "${E5[@]}" --modes httm --attention-sdpa cudnn --compile-tokenwise --dpt-dtype "$BF16" \
        --weights-dtype "$BF16"
    windows k24_w32 45 "${W24[@]}" --modes dense httm --compile-tokenwise --dpt-dtype "$BF16"
    windows k24_wbf16 100 "${W24[@]}" --modes dense httm --compile-tokenwise --dpt-dtype "$BF16" --weights-dtype "$BF16" ;;
7)  # our uniform mode against the FastVGGT code at 1000 frames, both in bf16 weights (its own
    # setting), eager; the peer in its own process, the same frames twice (cold, then warm)
    e2e e2e_uniform_1000 --frames "${E5[2]}" --modes uniform --weights-dtype "$BF16"
    windows peer_1000 100 --frames "${E5[2]}" --new 0 --windows 2 --modes "${PEER_ARGS[@]}" ;;
8)  # issue 14's targets in one call: the node's regime against dense and the FastVGGT code, then the
    # one-shot rows (our fastest 1000-frame setting; the peer with one warm-up and one timed forward)
    windows k24_node 30 "${W24[@]}" --modes dense httm --compile-tokenwise --dpt-dtype "$BF16" "${PEER_ARGS[@]}"
    windows k64_node 40 "${W64[@]}" --modes dense httm --compile-tokenwise --dpt-dtype "$BF16" "${PEER_ARGS[@]}"
    e2e e2e_node --frames "${E5[@]}" --modes httm --attention-sdpa cudnn --compile-tokenwise --dpt-dtype "$BF16" \
        --weights-dtype "$BF16"
    windows peer_1000 100 --frames "${E5[2]}" --new 0 --windows 1 --modes "${PEER_ARGS[@]}" ;;
9)  # each window size: the Triton path, then the PyTorch path (what runs where Triton is missing),
    # eager (torch.compile needs Triton on a GPU too), as the onboard preset: bf16 weights and heads
    n=3
    for W in "${W24[*]}" "${W64[*]}" "${W128[*]}"; do
        read -r -a WA <<< "$W"
        K=${WA[1]}
        windows "fb_k${K}_triton" $(( 100 / (2 * n) )) "${WA[@]}" --modes httm --weights-dtype "$BF16" --dpt-dtype "$BF16"
        windows "fb_k${K}_torch" $(( 100 / (2 * n - 1) )) "${WA[@]}" --modes httm --weights-dtype "$BF16" \
            --dpt-dtype "$BF16" --httm-set impl=torch
        n=$(( n - 1 ))
    done ;;
10) # issue 16's throughput target: the first "K new" is today's 24/8 (dense and HTTM); the others
    # HTTM only, each K with fewer known keyframes (K - new); new keyframes/s = new / p50
    n=${#KO[@]}
    for ko in "${KO[@]}"; do
        read -r K NEW NW <<< "$ko"
        modes=(httm); [ "$n" = "${#KO[@]}" ] && modes=(dense httm)
        windows "kf_k${K}_new${NEW}" $(( 100 / n )) --frames "$K" --new "$NEW" --windows "$NW" \
            --modes "${modes[@]}" --compile-tokenwise --dpt-dtype "$BF16"
        n=$(( n - 1 ))
    done ;;
11) # issue 14's 1000-frame gap: each lever on top of the node's e2e setting (PART=8's e2e_node), in one
    # call with the FastVGGT code (first, so that a long autotune cannot cut it)
    NODE=(--modes httm --attention-sdpa cudnn --compile-tokenwise --dpt-dtype "$BF16" --weights-dtype "$BF16")
    windows peer_1000 30 --frames "${E5[2]}" --new 0 --windows 1 --modes "${PEER_ARGS[@]}"
    e2e e2e_base --frames "${E6[@]}" "${NODE[@]}"
    e2e e2e_heads --frames "${E6[@]}" "${NODE[@]}" --compile-heads
    e2e e2e_autotune --frames "${E6[@]}" "${NODE[@]}" --compile-heads --compile-mode max-autotune-no-cudagraphs ;;
12) # the node's streaming core without DDS (model runner, warm-up and StreamConfig from the node's
    # default values), cut at the part's deadline; the JSON is rewritten after every window. Then the
    # same over a long sequence (STREAM_LONG frames, default 10000: ~100 windows of motion keyframes),
    # so that p99 rests on ~100 windows, not ~6; it stops pushing at the deadline (truncated)
    for run in "stream_node 0" "stream_long ${STREAM_LONG:-$LONG}"; do
        set -- $run; name=$1; frames=$2; t=$(left)
        [ "$t" -lt 60 ] && { echo "[gpu_next] $name: skipped, $t s left"; continue; }
        extra=(); [ "$frames" != 0 ] && extra=(--frames "$frames" --budget-s $(( t - 150 > 30 ? t - 150 : 30 )))
        echo "[gpu_next] $name: $t s left"
        timeout "$t" $PY -m httm_ros.bench stream "${STREAM[@]}" "${extra[@]}" --out "$OUT/$name.json" \
            > "$LOGS/$name.log" 2>&1
        echo "[gpu_next] $name: rc=$?"; grep 'window [0-9]*:' "$LOGS/$name.log" | tail -3
        [ -f "$OUT/$name.json" ] && $PY -c 'import json, sys; from httm_ros.bench.node_stream import stream_table
print("\n".join(stream_table(json.load(open(sys.argv[1])))))' "$OUT/$name.json"
    done ;;
13) # the shipped network's own losses and batch (its card's command) at a fine-tuning learning rate, HTTM
    # in MERGE_FRAC of the steps; the run saves and evaluates (dense and merged) before the part's deadline
    t=$(left)
    FT=(--batch-frames 1024 --reuse 32 --clip-frames 48 --pool-size 64); [ "$SMOKE" = 1 ] && FT=(--batch-frames 16 --clip-frames 8 --pool-size 2 --heldout 2)
    echo "[gpu_next] finetune_merge: $t s left"
    timeout "$t" $PY -m httm_ros.train --init-weights httm_ros/weights/httm-vggt-synth.safetensors \
        --device "${MODEL[3]}" --merge httm --merge-frac "${MERGE_FRAC:-0.6}" --lr "${FT_LR:-1e-4}" --warmup 50 \
        --steps 100000 --schedule-s $(( t - 40 )) --time-budget-s $(( t - 15 )) --camera-weight 5 --match-weight 1 \
        --point-weight 1 --flow-weight 1 --curriculum-frac 0 "${FT[@]}" --out "$LOGS/ft" > "$LOGS/ft.log" 2>&1
    echo "[gpu_next] finetune_merge: rc=$?"; grep -v '^step' "$LOGS/ft.log" | tail -6; grep '^step' "$LOGS/ft.log" | tail -3
    mkdir -p "$LOGS/ft" && cp "$LOGS/ft.log" "$LOGS/ft/"
    tar -C "$LOGS/ft" -cf "$OUT/finetune_merge.tar" --exclude 'resume*' . ;;
14) # "ours dense never slower than the official code" at 24 and 100 frames on the device the issue names
    # (the official code's times are issue 14's own H200 table): dense in the node's GPU setting
    e2e e2e_dense_node --frames "${E3[@]}" --modes dense --compile-tokenwise --dpt-dtype "$BF16" --compile-heads ;;
15) # issue 14's node regime over ~100 windows at the node's default layout (24 frames, 20 new), then 64 and
    # 128 frames; dense, HTTM and the FastVGGT code in each, the node's GPU setting (compiled passes and
    # DPT heads, bf16 DPT heads)
    NODEW=(--compile-tokenwise --compile-heads --dpt-dtype "$BF16")
    windows k24_100 45 "${W24N[@]}" --modes dense httm "${NODEW[@]}" "${PEER_ARGS[@]}"
    windows k64_40 60 "${W64L[@]}" --modes dense httm "${NODEW[@]}" "${PEER_ARGS[@]}"
    windows k128_12 100 "${W128[@]}" --modes dense httm "${NODEW[@]}" "${PEER_ARGS[@]}" ;;
*)  echo "PART must be 1..15" >&2; exit 2 ;;
esac

echo "[gpu_next] part $PART done in $(( $(date +%s) - T0 )) s; files: $(ls "$OUT" | tr '\n' ' ')"
$PY bench/gpu_next_table.py "$OUT"
