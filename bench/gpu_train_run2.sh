#!/usr/bin/env bash
# Run 2 of httm-vggt-synth (issue 15) as ONE training process chain that outlives device calls.
#
#   STAGE=start  : launches stage A (fresh, --time-budget-s $A_S) and then stage B (resume from A,
#                  --time-budget-s $B_S) in a detached process session, waits for stage A and copies
#                  its outputs (resume parts included, so a lost machine loses at most stage B) to $OUT.
#   STAGE=finish : waits for stage B and copies its outputs to $OUT.
# Both stages share one learning-rate schedule of $((A_S + B_S)) seconds (httm_ros/weights/README.md).
# EXTRA="--match-weight 1" adds options to both stages (run 3). Needs HTTM_GIT_COMMIT (the device copy's .git is stale) and OUT.
set -u
: "${HTTM_GIT_COMMIT:?set HTTM_GIT_COMMIT to the commit being run}"
: "${OUT:?}"
STAGE=${STAGE:-start}
A_S=${A_S:-500}
B_S=${B_S:-480}
WAIT_S=${WAIT_S:-570}
W=/tmp/run2
OPTS="--device cuda --seed 0 --batch-frames 256 --lr 4e-4 --warmup 300 --steps 100000
      --schedule-s $((A_S + B_S)) --camera-loss l1 --camera-weight 5 --depth-weight 1
      --curriculum-frames 8 --curriculum-frac 0.25 --clip-frames 48 --pool-size 64 --reuse 8"
OPTS=$(echo $OPTS ${EXTRA:-})  # one line (EXTRA: more httm-train options, e.g. "--match-weight 1"): it is spliced into the detached bash -c command
t0=$(date +%s)

wait_for() {  # wait_for RC_FILE LOG: until the stage wrote its exit status or WAIT_S passed
    while [ ! -f "$1" ] && [ $(( $(date +%s) - t0 )) -lt "$WAIT_S" ]; do
        sleep 15
        echo "[$(( $(date +%s) - t0 )) s] $(tail -n 1 "$2" 2>/dev/null)"
    done
    [ -f "$1" ] && echo "stage exit status: $(cat "$1")" || echo "stage still running after ${WAIT_S} s"
}

finish_stage() {  # finish_stage NAME (a or b): wait for it, print its log's summary, copy its outputs to $OUT
    local dir="$W/$1" log="$W/$1.log"
    wait_for "$W/$1.rc" "$log"
    grep -v '^step' "$log" | tail -n 20
    grep '^step' "$log" | awk 'NR % 10 == 1' | tail -n 30
    cp "$dir"/* "$OUT"/ 2>/dev/null
    cp "$log" "$OUT"/
    ls -la "$OUT"
}

if [ "$STAGE" = start ]; then
    rm -rf "$W" && mkdir -p "$W/a" "$W/b"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$W/device.txt"
    cat "$W/device.txt"
    # shellcheck disable=SC2086
    setsid nohup bash -c "
        PYTHONUNBUFFERED=1 python3 -m httm_ros.train --out $W/a --time-budget-s $A_S $OPTS > $W/a.log 2>&1
        echo \$? > $W/a.rc
        PYTHONUNBUFFERED=1 python3 -m httm_ros.train --out $W/b --resume $W/a --time-budget-s $B_S $OPTS > $W/b.log 2>&1
        echo \$? > $W/b.rc" > /dev/null 2>&1 < /dev/null &
    finish_stage a
else
    finish_stage b
fi
