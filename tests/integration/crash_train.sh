#!/usr/bin/env bash
# Crash campaign, training: `mmrm train` (both algorithms) killed with SIGKILL at random
# moments, up to 3 times a trial, each time rerun with resume=true. save_steps=1 writes a
# checkpoint every step, and the second kill of each trial comes 0-30 ms after a checkpoint's
# hidden temporary directory appears, so many kills land inside a checkpoint write. After every kill:
# every visible checkpoint-N / checkpoint-last directory is complete and equals, byte for
# byte, the uninterrupted run's at the same step (the newest one loads with `mmrm info`); at
# the end the model (and bias model) equals the uninterrupted run's bitwise.
# TRIALS=N trials per algorithm (default 1: the short form `make test` runs), STEPS=N steps
# per run (default 4); RANKS=2 runs
# every training under mpirun with 2 ranks (crash_train_mpi.sh); ALGOS picks the algorithms.
# Then, deterministically (one rank, standard): a rerun of a finished run saves the final
# step's checkpoint again, replacing the old copy; killed in the middle of removing that copy
# (tests/faults/kill_at_remove.c), it must leave checkpoint-N whole, and the next rerun must
# resume (the old copy used to be removed in place: a half-deleted checkpoint-N that still
# held trainer_state.json passed as complete, and every rerun failed on its missing files).
set -euo pipefail
RANKS=${RANKS:-1}
TRIALS=${TRIALS:-1}
STEPS=${STEPS:-4}
ALGOS=${ALGOS:-standard shortcut_aware}
if [ "$RANKS" -gt 1 ]; then
    command -v mpirun >/dev/null || { echo "skipped: no mpirun"; exit 77; }
    grep -q "multi-process: mpi" <<<"$("$MMRM" version)" || { echo "skipped: this mmrm was built without MPI"; exit 77; }
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
MMRM=$(cd "$(dirname "$MMRM")" && pwd)/$(basename "$MMRM")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CRASH_LOG=$tmp/run.log
source "$root/tests/crash_lib.sh"
cd "$root"
# an LD_PRELOAD shim ahead of the ASan runtime (the build/san pass) is fine for these tests
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0

"$MMRM" synth --out "$tmp/data" --pairs 48 --seed 4 >/dev/null
cfg="$tmp/empty.ini"; : > "$cfg"
launch=()
[ "$RANKS" -gt 1 ] && launch=(mpirun --allow-run-as-root --oversubscribe -np "$RANKS")
common=(init_model_config=configs/model/tiny.json init_bias_model_config=configs/model/tiny.json
        dataset_path="$tmp/data/train.jsonl" freeze_backbone=false drop_path_rate=0
        dynamic_image_size=false max_length=512 max_steps=$STEPS learning_rate=1e-3 warmup_steps=1
        save_steps=1 num_workers=0 logging_steps=1 seed=3
        per_device_train_batch_size=$((4 / RANKS)) resume=true overwrite_output_dir=false)

# check_dirs REF OUT: every visible checkpoint directory of OUT is complete and equals REF's
check_dirs() {
    local ref=$1 out=$2 d name newest=""
    for d in "$out"/checkpoint-*; do
        [ -e "$d" ] || continue
        name=$(basename "$d")
        for f in trainer_state.json config.json model.safetensors optimizer.safetensors; do
            [ -s "$d/$f" ] || { echo "$name is visible but has no $f (half-written)"; ls -la "$d"; return 1; }
        done
        for f in model.safetensors optimizer.safetensors bias/model.safetensors; do
            [ -e "$ref/$name/$f" ] || continue
            cmp -s "$ref/$name/$f" "$d/$f" || { echo "$name/$f differs from the uninterrupted run's"; return 1; }
        done
        [[ $name == checkpoint-last ]] || newest=$d
    done
    if [ -n "$newest" ]; then
        "$MMRM" info "$newest" >/dev/null 2>"$tmp/info.err" || { echo "$newest does not load:"; cat "$tmp/info.err"; return 1; }
    fi
}

for algo in $ALGOS; do
    ref=$tmp/ref_$algo
    t0=$(now_ms)
    "${launch[@]}" "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo output_dir="$ref" 2>"$tmp/ref.log" \
        || { cat "$tmp/ref.log"; exit 1; }
    span=$(( $(now_ms) - t0 ))
    kills=0; in_write=0; resumed=0; unkilled=0
    for trial in $(seq 1 "$TRIALS"); do
        out=$tmp/out; rm -rf "$out"
        for attempt in 1 2 3; do
            # the second kill of a trial waits for a checkpoint write to start
            if [ "$attempt" = 2 ]; then
                ms=$(rand_ms 30); how=(run_killed_in_write "$out/.checkpoint-*" "$ms")
            else
                ms=$(rand_ms $((span * 3 / 4))); how=(run_killed "$ms")
            fi
            if "${how[@]}" "${launch[@]}" "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo output_dir="$out"; then
                kills=$((kills + 1))
                compgen -G "$out/.checkpoint-*" >/dev/null && in_write=$((in_write + 1))
                check_dirs "$ref" "$out" || { echo "$algo trial $trial: after a kill at $ms ms"; exit 1; }
            else
                [ "$attempt" = 1 ] && unkilled=$((unkilled + 1))
                break
            fi
        done
        "${launch[@]}" "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo output_dir="$out" >"$tmp/rerun.log" 2>&1 \
            || { echo "$algo trial $trial: the rerun failed"; cat "$tmp/rerun.log"; exit 1; }
        grep -q "resuming from" "$tmp/rerun.log" && resumed=$((resumed + 1))
        for f in model.safetensors bias/model.safetensors; do
            [ -e "$ref/checkpoint-last/$f" ] || continue
            cmp "$ref/checkpoint-last/$f" "$out/checkpoint-last/$f" \
                || { echo "$algo trial $trial: $f differs from the uninterrupted run's"; exit 1; }
        done
        check_dirs "$ref" "$out" || exit 1
    done
    echo "train $algo, $RANKS rank(s): $TRIALS trials ($unkilled finished before the first kill), $kills kills ($in_write inside a checkpoint write), $resumed final reruns resumed from a checkpoint; all ended to the uninterrupted run's bytes"
done

[ "$RANKS" = 1 ] && [[ " $ALGOS " == *" standard "* ]] || exit 0
cc -shared -fPIC -O1 -o "$tmp/kill_at_remove.so" "$root/tests/faults/kill_at_remove.c" -ldl
ref=$tmp/ref_standard
for victim in optimizer.safetensors model.safetensors trainer_state.json config.json; do
    out=$tmp/replaced; rm -rf "$out"; cp -r "$ref" "$out"
    rc=0
    KILL_AT_REMOVE=/$victim LD_PRELOAD="$tmp/kill_at_remove.so" "$MMRM" train "$cfg" "${common[@]}" \
        algorithm=standard output_dir="$out" >"$tmp/replace.log" 2>&1 || rc=$?
    [ "$rc" = 137 ] || { echo "the kill at the removal of $victim did not happen (exit $rc)"; cat "$tmp/replace.log"; exit 1; }
    check_dirs "$ref" "$out" || { echo "after a kill while a checkpoint was replaced (at $victim)"; exit 1; }
    "$MMRM" train "$cfg" "${common[@]}" algorithm=standard output_dir="$out" >"$tmp/replace.log" 2>&1 \
        || { echo "the rerun after a kill while a checkpoint was replaced (at $victim) failed:"; tail -n 5 "$tmp/replace.log"; exit 1; }
    check_dirs "$ref" "$out"
done
echo "killed while replacing checkpoint-$STEPS (at 4 different files): each left it whole, and the rerun resumed"
