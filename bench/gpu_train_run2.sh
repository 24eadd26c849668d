#!/usr/bin/env bash
# Training runs of httm-vggt-synth (issue 15) as training process chains that outlive device calls.
#
#   STAGE=start  : launches stage A (fresh, --time-budget-s $A_S) and then stage B (resume from A,
#                  --time-budget-s $B_S) in a detached process session, waits for stage A and copies
#                  its outputs to $OUT.
#   STAGE=finish : waits for stage B and copies its outputs to $OUT.
# Both stages share one learning-rate schedule of $((A_S + B_S)) seconds (httm_ros/weights/README.md).
#
# One chain (run 2): EXTRA="--match-weight 1" adds options to both stages; every output file is
# copied (stage A's resume parts included, so a lost machine loses at most stage B).
# Several chains side by side on the one GPU (run 3): RUNS="l1=--layerscale-init 1.0|huber=--layerscale-init
# 1.0 --camera-loss huber" (NAME=OPTIONS, separated by |; EXTRA is added to all). Each chain's
# outputs go to $OUT as one NAME_a.tar / NAME_b.tar (model card, log, curves, weights, the stage's
# log) and, after stage B, its resume state as NAME_resume-0K.pt parts (NAME_resume.pt if small;
# two chains: 2 tars + 2 x 3 parts, the 8 files a device call returns; KEEP_RESUME=0 leaves them
# out). To go on in a later session: put one chain's parts, without the NAME_ prefix, in an
# untracked folder, carry it and pass it as RESUME=folder with STAGE=start (stage A then resumes
# from it; add a longer --schedule-s in EXTRA, the schedule counts the seconds trained before).
# INIT=weights.safetensors starts stage A from a trained checkpoint's weights and config instead
# (httm-train --init-weights: a new optimizer and schedule; carry the file; not with RESUME).
# Needs HTTM_GIT_COMMIT (the device copy's .git is stale) and OUT.
set -u
: "${HTTM_GIT_COMMIT:?set HTTM_GIT_COMMIT to the commit being run}"
: "${OUT:?}"
STAGE=${STAGE:-start}
A_S=${A_S:-500}
B_S=${B_S:-480}
WAIT_S=${WAIT_S:-570}
ROOT=${ROOT:-/tmp/run2}
OPTS=${TRAIN_OPTS:-"--device cuda --seed 0 --batch-frames 256 --lr 4e-4 --warmup 300 --steps 100000
      --schedule-s $((A_S + B_S)) --camera-loss l1 --camera-weight 5 --depth-weight 1
      --curriculum-frames 8 --curriculum-frac 0.25 --clip-frames 48 --pool-size 64 --reuse 8"}   # TRAIN_OPTS: a CPU check
OPTS=$(echo $OPTS ${EXTRA:-})  # one line: it is spliced into the detached bash -c command
t0=$(date +%s)

wait_for() {  # wait_for RC_FILE LOG: until the stage wrote its exit status or WAIT_S passed
    while [ ! -f "$1" ] && [ $(( $(date +%s) - t0 )) -lt "$WAIT_S" ]; do
        sleep 15
        echo "[$(( $(date +%s) - t0 )) s] $(tail -n 1 "$2" 2>/dev/null)"
    done
    [ -f "$1" ] && echo "stage exit status: $(cat "$1")" || echo "stage still running after ${WAIT_S} s"
}

launch() {  # launch DIR OPTIONS...: stage A then stage B of one chain, detached
    local w=$1; shift
    rm -rf "$w" && mkdir -p "$w/a" "$w/b"
    # shellcheck disable=SC2086
    setsid nohup bash -c "
        PYTHONUNBUFFERED=1 python3 -m httm_ros.train --out $w/a ${RESUME:+--resume $RESUME} ${INIT:+--init-weights $INIT} --time-budget-s $A_S $* > $w/a.log 2>&1
        echo \$? > $w/a.rc
        PYTHONUNBUFFERED=1 python3 -m httm_ros.train --out $w/b --resume $w/a --time-budget-s $B_S $* > $w/b.log 2>&1
        echo \$? > $w/b.rc" > /dev/null 2>&1 < /dev/null &
}

summary() {  # summary DIR STAGE: the stage's log without most step lines
    local log="$1/$2.log"
    grep -v '^step' "$log" | tail -n 20
    grep '^step' "$log" | awk 'NR % 10 == 1' | tail -n 30
}

mkdir -p "$ROOT" "$OUT"
[ "$STAGE" = start ] && { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; }
stage=$([ "$STAGE" = start ] && echo a || echo b)
if [ -z "${RUNS:-}" ]; then                                   # one chain, every file copied
    [ "$STAGE" = start ] && launch "$ROOT" "$OPTS"
    wait_for "$ROOT/$stage.rc" "$ROOT/$stage.log"
    summary "$ROOT" "$stage"
    cp "$ROOT/$stage"/* "$ROOT/$stage.log" "$OUT"/ 2>/dev/null
else                                                          # several chains, one tar each
    IFS='|' read -r -a chains <<< "$RUNS"
    if [ "$STAGE" = start ]; then
        for chain in "${chains[@]}"; do launch "$ROOT/${chain%%=*}" "$OPTS ${chain#*=}"; done
    fi
    for chain in "${chains[@]}"; do
        name=${chain%%=*}; w="$ROOT/$name"
        echo "=== $name (${chain#*=}), stage $stage"
        wait_for "$w/$stage.rc" "$w/$stage.log"
        summary "$w" "$stage"
        tar -cf "$OUT/${name}_$stage.tar" -C "$w" "$stage.log" \
            $(cd "$w" && ls "$stage"/httm-vggt-synth.* "$stage"/train_log.json "$stage"/train_curves.png 2>/dev/null)
        if [ "$STAGE" = finish ] && [ "${KEEP_RESUME:-1}" = 1 ]; then   # to go on in a later session
            for part in "$w/b"/resume*.pt; do [ -f "$part" ] && cp "$part" "$OUT/${name}_$(basename "$part")"; done
        fi
    done
fi
ls -la "$OUT"
