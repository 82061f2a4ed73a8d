#!/usr/bin/env bash
# A disk that fills up, for `mmrm train` (output_dir) and `mmrm score` (the output file). A
# tmpfs mount needs privileges that the sandbox and CI lack, so tests/faults/full_disk.c, an
# LD_PRELOAD shim compiled here, gives writes under one folder a budget of bytes: the write
# that crosses it is cut short and later ones fail with ENOSPC (FULL_DISK_ERRNO=EIO: EIO).
# For budgets that run out at different points of the run (config, first checkpoint, inside
# model/optimizer/trainer_state of later ones), training must stop with an error naming the
# file and the reason, leave every visible checkpoint complete and equal to the uninterrupted
# run's (no partial hidden copy left taking space), and a rerun with space must end bitwise
# where the uninterrupted run ends. Scoring must stop with the error, keep every line written
# before (only a torn last line may be cut), not report more lines appended than the file
# holds, and a rerun with space must complete the output exactly; also with 2 ranks (a budget
# per process). metrics.jsonl alone on a full disk (FULL_DISK_NAME) stops training too.
# BUDGETS="N ..." overrides the training budgets (bytes).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
MMRM=$(cd "$(dirname "$MMRM")" && pwd)/$(basename "$MMRM")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$root"
# an LD_PRELOAD shim ahead of the ASan runtime (the build/san pass) is fine for these tests
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
cc -shared -fPIC -O1 -o "$tmp/full_disk.so" tests/faults/full_disk.c -ldl

"$MMRM" synth --out "$tmp/data" --pairs 48 --seed 4 >/dev/null
cfg="$tmp/empty.ini"; : > "$cfg"
common=(init_model_config=configs/model/tiny.json init_bias_model_config=configs/model/tiny.json
        dataset_path="$tmp/data/train.jsonl" freeze_backbone=false drop_path_rate=0
        dynamic_image_size=false max_length=512 max_steps=3 learning_rate=1e-3 warmup_steps=1
        save_steps=1 num_workers=0 logging_steps=1 seed=3 per_device_train_batch_size=4
        gradient_accumulation_steps=1 resume=true overwrite_output_dir=false)

# full RUN_DIR BYTES [ERRNO] CMD...: CMD with writes under RUN_DIR limited to BYTES
full() {
    local dir=$1 bytes=$2 err=$3; shift 3
    mkdir -p "$dir"
    FULL_DISK_DIR=$dir FULL_DISK_BYTES=$bytes FULL_DISK_ERRNO=$err LD_PRELOAD="$tmp/full_disk.so" "$@"
}

check_dirs() { # REF OUT: visible checkpoints complete, equal to REF's; no partial copy left
    local d name f
    for d in "$2"/checkpoint-*; do
        [ -e "$d" ] || continue
        name=$(basename "$d")
        for f in trainer_state.json config.json model.safetensors optimizer.safetensors; do
            [ -s "$d/$f" ] || { echo "$name is visible but has no $f"; return 1; }
        done
        for f in model.safetensors optimizer.safetensors bias/model.safetensors trainer_state.json; do
            [ -e "$1/$name/$f" ] || continue
            cmp -s "$1/$name/$f" "$d/$f" || { echo "$name/$f differs from the uninterrupted run's"; return 1; }
        done
    done
    if compgen -G "$2/.checkpoint-*" >/dev/null; then echo "a partial checkpoint was left:"; ls -a "$2"; return 1; fi
}

for algo in standard shortcut_aware; do
    ref=$tmp/ref_$algo
    "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo output_dir="$ref" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
    one=$(du -sb "$ref/checkpoint-1" | cut -f1)
    if [ "$algo" = standard ]; then
        budgets=${BUDGETS:-"0 200000 $((one - 100)) $((one + 700000)) $((2 * one + 1200000))"}
    else
        budgets="$((one + one / 3))"
    fi
    for bytes in $budgets; do
        for err in ENOSPC EIO; do
            [ "$err" = EIO ] && [ "$bytes" != 200000 ] && continue
            out=$tmp/out_${algo}_$bytes
            rm -rf "$out"
            rc=0
            full "$out" "$bytes" "$err" "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo output_dir="$out" \
                2>"$tmp/log" || rc=$?
            [ "$rc" = 1 ] || { echo "$algo, $bytes bytes of space ($err): exit $rc, not a clean error"; tail -n 5 "$tmp/log"; exit 1; }
            msg=$(grep "mmrm: error:" "$tmp/log") || { echo "no error message"; tail -n 5 "$tmp/log"; exit 1; }
            reason="No space left on device"; [ "$err" = EIO ] && reason="Input/output error"
            grep -q "$reason" <<<"$msg" && grep -q "$out" <<<"$msg" \
                || { echo "the error does not name the file and the reason: $msg"; exit 1; }
            check_dirs "$ref" "$out" || { echo "$algo, $bytes bytes of space ($err)"; exit 1; }
            kept=$({ compgen -G "$out/checkpoint-[0-9]*" || true; } | wc -l)
            "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo output_dir="$out" >"$tmp/log" 2>&1 \
                || { echo "$algo: the rerun with space failed"; tail -n 5 "$tmp/log"; exit 1; }
            check_dirs "$ref" "$out"
            cmp "$ref/checkpoint-last/model.safetensors" "$out/checkpoint-last/model.safetensors"
            echo "train $algo, $bytes bytes of space ($err): stopped with '${msg#mmrm: error: }'; $kept complete checkpoint(s) kept; the rerun ended bitwise equal"
        done
    done
done

# metrics.jsonl alone on a full disk: in a new run (its first line), and in a resumed run
# (the history rewritten at the start): an error naming it, the checkpoints untouched, and a
# rerun with space ends bitwise equal
for when in new resumed; do
    out=$tmp/metrics_$when
    rm -rf "$out"
    if [ "$when" = resumed ]; then
        # a run that dies in step 3 (after checkpoint-2)
        MMRM_DEBUG_ABORT_AT_MICRO=2 "$MMRM" train "$cfg" "${common[@]}" algorithm=standard output_dir="$out" \
            2>"$tmp/log" && { echo "the run was not aborted"; exit 1; }
        [ -d "$out/checkpoint-2" ] || { echo "no checkpoint-2 before the abort"; tail -n 5 "$tmp/log"; exit 1; }
    fi
    before=$(cd "$out" 2>/dev/null && find . -path './checkpoint-*' -type f -exec md5sum {} + | sort || true)
    rc=0
    FULL_DISK_NAME=metrics.jsonl full "$out" 0 ENOSPC "$MMRM" train "$cfg" "${common[@]}" algorithm=standard \
        output_dir="$out" 2>"$tmp/log" || rc=$?
    [ "$rc" = 1 ] || { echo "metrics.jsonl on a full disk ($when run): exit $rc"; tail -n 5 "$tmp/log"; exit 1; }
    grep "mmrm: error:" "$tmp/log" | grep -q "$out/metrics.jsonl: cannot write (No space left on device)" \
        || { echo "metrics.jsonl ($when run): no clear error"; tail -n 5 "$tmp/log"; exit 1; }
    after=$(cd "$out" && find . -path './checkpoint-*' -type f -exec md5sum {} + | sort)
    [ "$before" = "$after" ] || { echo "metrics.jsonl ($when run): checkpoints changed by the failed run"; exit 1; }
    "$MMRM" train "$cfg" "${common[@]}" algorithm=standard output_dir="$out" >"$tmp/log" 2>&1 \
        || { echo "metrics.jsonl ($when run): the rerun failed"; tail -n 5 "$tmp/log"; exit 1; }
    cmp "$tmp/ref_standard/checkpoint-last/model.safetensors" "$out/checkpoint-last/model.safetensors"
    cmp "$tmp/ref_standard/metrics.jsonl" "$out/metrics.jsonl"
    echo "train, metrics.jsonl on a full disk ($when run): stopped with the error; checkpoints untouched; the rerun ended bitwise equal, with the same metrics.jsonl"
done

# scoring: 8 records x 6 (distinct prompts), 96 responses, 2 per chunk
for i in 1 2 3 4 5 6; do sed "s/\"prompt\": *\"/&#$i /" "$tmp/data/score_input.jsonl"; done > "$tmp/data/in.jsonl"
# Bitwise checks need scores that do not depend on what a response was batched with, and a
# rerun batches the remaining records differently: with share_prefix/packing (the default)
# the rows a forward shares change the scores' fp32 rounding, so these runs turn them off;
# the default path is checked after the loop, within rounding.
score=("$MMRM" score --model "$tmp/ref_standard/checkpoint-last" --input "$tmp/data/in.jsonl" --batch-size 2
       --no-share-prefix --no-packing)
"${score[@]}" --output "$tmp/ref.jsonl" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
sort "$tmp/ref.jsonl" > "$tmp/ref.sorted"
for bytes in 0 3000 9999; do
    out=$tmp/s_$bytes/out.jsonl
    rc=0
    full "$tmp/s_$bytes" "$bytes" ENOSPC "${score[@]}" --output "$out" 2>"$tmp/log" || rc=$?
    [ "$rc" = 1 ] || { echo "score, $bytes bytes: exit $rc"; tail -n 5 "$tmp/log"; exit 1; }
    grep "mmrm: error:" "$tmp/log" | grep -q "$out.*No space left on device" || { echo "score: no clear error"; cat "$tmp/log"; exit 1; }
    complete=$(grep -c '' <(sed '$!b; /}$/!d' "$out") || true)
    extra=$(sed '$!b; /}$/!d' "$out" | sort | comm -23 - "$tmp/ref.sorted")
    [ -z "$extra" ] || { echo "score: lines the uninterrupted run did not write: $extra"; exit 1; }
    appended=$(sed -n 's/.* \([0-9]*\) lines\{0,1\} appended.*/\1/p' "$tmp/log")
    [ -n "$appended" ] && [ "$appended" -le "$complete" ] \
        || { echo "score: reports $appended lines appended, the file holds $complete"; exit 1; }
    "${score[@]}" --output "$out" >"$tmp/log" 2>&1 || { echo "score: the rerun failed"; cat "$tmp/log"; exit 1; }
    sort "$out" | cmp -s - "$tmp/ref.sorted" || { echo "score: the output after the rerun is not exact"; exit 1; }
    echo "score, $bytes bytes of space: stopped with the error after $complete complete lines (reported $appended appended); the rerun completed it exactly"
done
# the default (shared prefixes, packed rows): the rerun completes the output, every response
# once, scores within fp32 rounding of an uninterrupted run's
shared=("${score[@]:0:${#score[@]}-2}")
"${shared[@]}" --output "$tmp/ref_shared.jsonl" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
out=$tmp/sh/out.jsonl
rc=0
full "$tmp/sh" 3000 ENOSPC "${shared[@]}" --output "$out" 2>"$tmp/log" || rc=$?
[ "$rc" = 1 ] || { echo "score (shared prefixes), 3000 bytes: exit $rc"; tail -n 5 "$tmp/log"; exit 1; }
"${shared[@]}" --output "$out" >"$tmp/log" 2>&1 || { echo "score (shared prefixes): the rerun failed"; cat "$tmp/log"; exit 1; }
python3 - "$tmp/ref_shared.jsonl" "$out" <<'EOF'
import json, sys
ref, got = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
key = lambda l: (l["prompt"], l["img_path"], l["response"])
r = {key(l): l["score"] for l in ref}
assert len(got) == len(ref) == len(r) and {key(l) for l in got} == set(r), "responses missing or twice"
for l in got:
    assert abs(l["score"] - r[key(l)]) <= 1e-6 * (1 + abs(r[key(l)])), (l, r[key(l)])
EOF
echo "score (shared prefixes, packed), 3000 bytes of space: stopped; the rerun completed it, scores within 1e-6 of the uninterrupted run's"

# 2 ranks: every process has its own budget (its part file OUT.parts/rank-R, and rank 0 also
# OUT when it merges): the job stops with the error, nothing is written twice or foreign, and
# a 2-rank rerun with space completes the output exactly
if command -v mpirun >/dev/null && grep -q "multi-process: mpi" <<<"$("$MMRM" version)"; then
    mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
    for bytes in 0 1500 6000 12000; do
        dir=$tmp/m_$bytes
        out=$dir/out.jsonl
        mkdir -p "$dir"
        rc=0
        "${mpi[@]}" -x LD_PRELOAD="$tmp/full_disk.so" -x FULL_DISK_DIR="$dir" -x FULL_DISK_BYTES="$bytes" \
            -x FULL_DISK_ERRNO=ENOSPC -x ASAN_OPTIONS "${score[@]}" --output "$out" >"$tmp/log" 2>&1 || rc=$?
        [ "$rc" != 0 ] || { echo "score, 2 ranks, $bytes bytes each: exit 0"; tail -n 5 "$tmp/log"; exit 1; }
        grep "mmrm: error:" "$tmp/log" | grep -q "No space left on device" || { echo "score, 2 ranks: no clear error"; tail -n 8 "$tmp/log"; exit 1; }
        cp "$tmp/log" "$tmp/log.1"
        "${mpi[@]}" "${score[@]}" --output "$out" >"$tmp/log" 2>&1 || { echo "score, 2 ranks: the rerun failed"; tail -n 8 "$tmp/log"; exit 1; }
        sort "$out" | cmp -s - "$tmp/ref.sorted" || { echo "score, 2 ranks, $bytes bytes: the output after the rerun is not exact"; exit 1; }
        [ -z "$(compgen -G "$out.parts*")" ] || { echo "score, 2 ranks: part files left"; ls "$dir"; exit 1; }
        echo "score, 2 ranks, $bytes bytes of space per process: stopped with '$(grep -m1 "mmrm: error:" "$tmp/log.1" | sed "s/.*error: //")'; the 2-rank rerun completed it exactly"
    done
else
    echo "(2-rank scoring on a full disk not run: no mpirun or an mmrm without MPI)"
fi
