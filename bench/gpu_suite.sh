#!/usr/bin/env bash
# GPU benchmark suite of issue 4, for one H100 80GB. Run from the repository root with $OUT set:
#
#   bash bench/gpu_suite.sh 1   # GPU tests, Table-4 layer breakdown at 1000 frames,
#                               # end-to-end rows at 100, 300, 500 frames (httm, dense, uniform)  < 9.5 min
#   bash bench/gpu_suite.sh 2   # end-to-end rows at 1000 frames: httm, dense, uniform            < 9.5 min
#
# Rows are warm where affordable (httm_ros/bench/e2e.py: an untimed forward at the row's size
# first, always for HTTM; dense >= 500 and uniform 1000 frames are single cold runs).
#
# Files: part 1 -> gpu_tests.log tests_part1.json layer_1000.json e2e_part1_{httm,dense,uniform}.json
# suite_part1.log; part 2 -> e2e_part2_{httm,uniform,dense}.json suite_part2.log BENCHMARKS_part2.md
# latency_part2.png.
# Needs python3 with torch (CUDA), triton, numpy, pytest (matplotlib optional); no ROS, no venv,
# no network. Every result is written under $OUT as soon as it exists (JSON rewritten after each
# row), and each step has its own time limit, so a cut-short run keeps what it finished. Copy
# $OUT/*.json (and the logs) to bench/results/, then: python -m httm_ros.bench report bench/results/*.json
# Optional: HTTM_GIT_COMMIT=<sha> (recorded where the tree has no .git), PYTHON=<interpreter>.
set -u
PART="${1:?usage: bash bench/gpu_suite.sh 1|2}"
: "${OUT:?set OUT to the output folder}"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export BENCH_T0="$(date +%s)"
if [ -z "${HTTM_GIT_COMMIT:-}" ] && git rev-parse HEAD >/dev/null 2>&1; then
    export HTTM_GIT_COMMIT="$(git rev-parse HEAD)"
fi
mkdir -p "$OUT"
LOG="$OUT/suite_part$PART.log"
# BENCH_SMOKE=1: the same flow on a tiny model and tiny frames (any machine; checks the script)
EXTRA=""; F1="100 300 500"; F2="1000"; FL="1000"; MARK="-m gpu"
# tuner tests last: they compile every launch candidate (the slowest on CUDA)
TESTS="test/test_kernels_ops.py test/test_kernels_select.py test/test_kernels_dense.py test/test_vggt_golden.py test/test_bench_report.py test/test_kernels_tune.py"
if [ "${BENCH_SMOKE:-0}" = "1" ]; then
    EXTRA="--config tiny --image-size 56 70"; F1="4 6"; F2="8"; FL="6"; MARK=""; TESTS="test/test_bench_report.py"
fi

elapsed() { echo $(( $(date +%s) - BENCH_T0 )); }
say() { echo "[gpu_suite +$(elapsed)s] $*" | tee -a "$LOG"; }
left() { echo $(( $1 - $(elapsed) )); }                   # seconds left before budget $1
# e2e rows at frames "$1" for httm, dense, uniform: one process per mode (a crashed CUDA context
# cannot take the other modes with it), each limited to what is left of $BUDGET
e2e_rows() {
    for MODE in httm dense uniform; do
        T=$(left $BUDGET)
        say "e2e $MODE at $1 frames, ${T}s left"
        [ "$T" -gt 20 ] && timeout "$T" $PY -m httm_ros.bench e2e --frames $1 --modes $MODE $EXTRA \
            --deadline-s $BUDGET --out "$OUT/e2e_part${PART}_$MODE.json" >> "$LOG" 2>&1
        say "e2e $MODE exit $?"
    done
}

say "part $PART on $(hostname); $($PY -c 'import torch,sys;print(sys.version.split()[0],"torch",torch.__version__,"cuda",torch.version.cuda,torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA")' 2>&1)"
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,temperature.gpu --format=csv >> "$LOG" 2>&1 || true

if [ "$PART" = "1" ]; then
    BUDGET=540
    # 1. GPU tests: Triton kernels vs the torch reference, SDPA/chunked dense path, golden VGGT on CUDA
    say "pytest -m gpu (kernels, dense path, golden)"
    timeout 170 $PY -m pytest $MARK -q -p no:cacheprovider -rfEs $TESTS > "$OUT/gpu_tests.log" 2>&1
    RC=$?
    SUMMARY="$(tail -n 1 "$OUT/gpu_tests.log")"
    say "pytest exit $RC: $SUMMARY"
    $PY - "$OUT/tests_part1.json" "$RC" "$SUMMARY" "$TESTS" "$MARK" <<'EOF'
import json, sys, time
path, rc, summary, files, mark = sys.argv[1:6]
json.dump({"kind": "tests", "command": "python3 -m pytest " + mark + " -q " + files, "exit_code": int(rc),
           "summary": summary, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
          open(path, "w"), indent=2)
EOF
    # 2. Table 4: one global layer at 1000 frames, stage by stage (httm, uniform, dense SDPA)
    say "layer breakdown at 1000 frames"
    timeout 130 $PY -m httm_ros.bench layer --frames $FL $EXTRA --out "$OUT/layer_1000.json" >> "$LOG" 2>&1
    say "layer exit $?"
    # 3. end-to-end rows; dense before uniform (more targets need it); the deadline guard skips
    #    rows that cannot finish in time
    e2e_rows "$F1"
elif [ "$PART" = "2" ]; then
    BUDGET=560
    e2e_rows "$F2"                                      # the time guard drops uniform first
else
    echo "unknown part $PART (1 or 2)" >&2
    exit 2
fi

# summary of part 2 (at most 8 files under $OUT: part 1 writes 7, part 2 writes 6)
if [ "$PART" = "2" ]; then
    timeout 30 $PY -m httm_ros.bench report "$OUT"/*.json --md "$OUT/BENCHMARKS_part2.md" \
        --png "$OUT/latency_part2.png" >> "$LOG" 2>&1
fi
say "done; files: $(ls "$OUT" | tr '\n' ' ')"
grep -h "^\[httm-bench\]\|^\[gpu_suite" "$LOG" | tail -n 30
