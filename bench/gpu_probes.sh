#!/usr/bin/env bash
# Issue 15's camera-learning ablations on the GPU machine, one device call (~5 min): the shift-sign
# probe (bench/train_probes.py, texture_sign, batch 64) for the synth VGGT with its parts swapped,
# all in parallel (the probes are small; the GPU and 16 cores take seven at once), next to the
# generic ViT that learns the task in this budget (session 7: error/baseline 0.11 at 3400 steps).
#
#   HTTM_GIT_COMMIT=$(git rev-parse HEAD) OUT=$OUT bash bench/gpu_probes.sh        # PROBE_S=240 each
#   bash bench/gpu_probes.sh --smoke                                               # CPU, 20 s each
#
# Variants (session 7's CPU probes: LayerScale 1.0 in the aggregator lets the linear read-out learn,
# VGGT's 0.01 does not; through the camera head with the L1 camera loss it had not learned in 1000
# steps, with one refinement iteration neither; session 8: with the Huber camera loss it dipped to
# 0.91 of the baseline at ~650 steps and returned to 1.00): the camera head with the L1 camera loss at LayerScale 0.01 and 1.0, with
# the Huber loss at 0.01 and 1.0, with the loss on the target entry only, and the linear read-out of
# frame 1's last camera token.
# Writes one JSON and one log per variant into probes.tar in $OUT (a device call returns at most 8
# files; session 9's call lost 6 of its 14) and prints a table (also in $OUT/probes_summary.txt).
set -u
cd "$(dirname "$0")/.."
SMOKE=0; [ "${1:-}" = "--smoke" ] && SMOKE=1
if [ "$SMOKE" = 0 ] && [ -z "${HTTM_GIT_COMMIT:-}" ]; then
    echo "gpu_probes.sh: set HTTM_GIT_COMMIT=<commit of this tree> (the device copy's .git is stale)" >&2
    exit 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-outputs/gpu_probes}"; mkdir -p "$OUT"
WORK=$(mktemp -d)
PY="${PYTHON:-python3}"
if [ "$SMOKE" = 1 ]; then DEV=cpu; BATCH=4; PROBE_S="${PROBE_S:-20}"; else DEV=cuda; BATCH=64; PROBE_S="${PROBE_S:-240}"; fi
run() {  # NAME ARGS...
    local name=$1; shift
    $PY bench/train_probes.py --tasks texture_sign --device "$DEV" --batch "$BATCH" --steps 1000000 \
        --time-budget-s "$PROBE_S" "$@" --out "$WORK/probe_$name.json" > "$WORK/probe_$name.log" 2>&1 &
}
run plainvit --model plain-vit
run synth_head --model synth
run synth_head_ls1 --model synth --layerscale-init 1.0
run synth_head_huber --model synth --camera-loss huber
run synth_head_ls1_huber --model synth --layerscale-init 1.0 --camera-loss huber
run synth_entry_ls1 --model synth --readout camera-entry --layerscale-init 1.0
run synth_linear_ls1 --model synth --readout linear --layerscale-init 1.0
wait
for f in "$WORK"/probe_*.json; do
    $PY - "$f" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
curve = " ".join(f"{s}:{e / b:.2f}" for s, e, b in r["curve"][::max(1, len(r["curve"]) // 8)])
print(f"{sys.argv[1].split('/')[-1]:28s} steps {r['steps']:5d} error/baseline {r['error_over_baseline']:.2f} | {curve}")
PY
done | tee "$OUT/probes_summary.txt"
tar -cf "$OUT/probes.tar" -C "$WORK" .
