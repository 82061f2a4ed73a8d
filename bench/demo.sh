#!/usr/bin/env bash
# bench/demo.sh - the quick-start job behind `make demo`, the synthetic shortcut benchmark:
#  1. `mmrm synth` writes the benchmark (seed S: the text cue agrees with the preference 90%
#     of the time in train and test_id, 10% in test_ood) and a grounding set (seed S + 1000,
#     other scenes; cue uncorrelated, P_TRAIN = 0.5);
#  2. grounding (configs/demo_pretrain.ini): the tiny model learns the image task from scratch
#     on the grounding set: the stand-in for the grounded VLM that the paper's reward models
#     start from, and the "oracle" row (trained where the cue carries no information);
#  3. the standard and the shortcut-aware reward model are fine-tuned from that checkpoint on
#     the benchmark's train split (configs/demo_standard.ini, configs/demo_robust.ini: same
#     start, data, steps and seed);
#  4. each is evaluated on test_id (i.i.d.) and test_ood (o.o.d.), with SFD on test_oracle
#     (cue uncorrelated) from one text-only verdict: the shortcut-aware run's bias model fed
#     the blank image. One table;
#  5. `mmrm plot --results` -> OUT/results.png: accuracy bars per model and split, and the
#     histogram of the shortcut-aware run's per-pair weights w (its fine-tuning logs every
#     step, so every training pair's w is in its TensorBoard events); the two fine-tunings'
#     training curves side by side -> OUT/curves.png (the grounding run, much longer, would
#     squeeze them into the left of a shared step axis; `mmrm plot OUT/pretrain --out
#     FILE.png` draws it alone). Last, the wall time of each phase.
# Usage: bench/demo.sh [SEED] (env MMRM: the binary, OUT: the folder, PAIRS: training pairs
# (2000), GROUND_PAIRS: grounding pairs (8000), EXTRA: key=value overrides for the two
# fine-tunings, PRETRAIN_EXTRA: for the grounding run, BUILD_SECONDS: `make demo`'s build
# time, listed with the phases).
set -euo pipefail
seed=${1:-1}
mmrm=${MMRM:-build/mmrm}
out=${OUT:-build/demo}
pairs=${PAIRS:-2000}
gpairs=${GROUND_PAIRS:-8000}
extra=${EXTRA:-}
pextra=${PRETRAIN_EXTRA:-}

mkdir -p "$out"
: > "$out/eval.log"
# the wall time of each phase, printed at the end
phases=()
[ -z "${BUILD_SECONDS:-}" ] || phases+=("build (make, before this script) $BUILD_SECONDS")
t_phase=$(date +%s.%N)
lap() { # phase name: the seconds since the previous lap
    local now
    now=$(date +%s.%N)
    phases+=("$1 $(awk -v a="$now" -v b="$t_phase" 'BEGIN { printf "%.1f", a - b }')")
    t_phase=$now
}
echo "== synthetic benchmark: $pairs training pairs, seed $seed -> $out/data"
"$mmrm" synth --out "$out/data" --pairs "$pairs" --seed "$seed" ${SYNTH_ARGS:-} | tail -n 6
# the grounding set is noise-free (--label-noise 0): with the benchmark's 10% swapped pairs
# the grounding stayed at ln 2 or learned only colours on some seeds (README)
echo "== grounding set: $gpairs pairs, seed $((seed + 1000)), cue uncorrelated, no label noise -> $out/pretrain_data"
"$mmrm" synth --out "$out/pretrain_data" --pairs "$gpairs" --seed $((seed + 1000)) \
    --cue-agreement 0.5 --label-noise 0 ${SYNTH_ARGS:-} > /dev/null
lap "synth (both data sets)"

secs=()
run() { # name config overrides...
    local name=$1 cfg=$2
    shift 2
    local t0
    t0=$(date +%s.%N)
    "$mmrm" train "$cfg" seed="$seed" output_dir="$out/$name" "$@" 2> "$out/train_$name.log" ||
        { tail -n 20 "$out/train_$name.log"; exit 1; }
    grep -E "^mmrm: (step [0-9]+/|eval|done)" "$out/train_$name.log" | tail -n 3
    secs+=("$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.0f", a - b }')")
}
echo "== grounding: the image task from scratch (configs/demo_pretrain.ini)"
# shellcheck disable=SC2086
run pretrain configs/demo_pretrain.ini tokenizer_path="$out/pretrain_data" \
    dataset_path="$out/pretrain_data/train.jsonl" eval_dataset_path="$out/pretrain_data/test_oracle.jsonl" $pextra
lap "grounding"
base="$out/pretrain/checkpoint-last"
for algo in standard robust; do
    echo "== fine-tuning from the grounded checkpoint: $algo (configs/demo_$algo.ini)"
    bias=()
    [ "$algo" = robust ] && bias=(bias_model_path="$base")
    # shellcheck disable=SC2086
    run "$algo" "configs/demo_$algo.ini" model_name_or_path="$base" "${bias[@]}" \
        dataset_path="$out/data/train.jsonl" eval_dataset_path="$out/data/test_id.jsonl" $extra
done
lap "fine-tuning (both)"

field() { grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2; }
printf '\n%-22s %10s %10s %10s %12s\n' model "i.i.d." "o.o.d." "SFD (pp)" "train time"
i=0
for algo in pretrain standard robust; do
    row=()
    for split in test_id test_ood test_oracle; do
        "$mmrm" eval --model "$out/$algo/checkpoint-last" --data "$out/data/$split.jsonl" \
            --text-only-model "$out/robust/checkpoint-last/bias" --json > "$out/eval_${algo}_$split.json" \
            2>> "$out/eval.log" || { tail -n 20 "$out/eval.log"; exit 1; }
        row+=("$(field accuracy < "$out/eval_${algo}_$split.json")")
    done
    # the overall SFD is text_only.sfd_pp (each category has its own, listed before it)
    sfd=$(grep -o '"text_only":{[^}]*' "$out/eval_${algo}_test_oracle.json" | field sfd_pp)
    case $algo in
        pretrain) name="oracle (P_TRAIN = 0.5)" ;;
        robust) name=shortcut-aware ;;
        *) name=$algo ;;
    esac
    printf '%-22s %10.3f %10.3f %10.1f %11.0fs\n' "$name" "${row[0]}" "${row[1]}" "$sfd" "${secs[$i]}"
    i=$((i + 1))
done
# the paper's text-only diagnostics: the text-only model's own accuracy on each split next to
# the multimodal ones (the same bias model in every eval), and SFD per question category
to=()
for split in test_id test_ood test_oracle; do
    to+=("$(field accuracy_ties_half < "$out/eval_robust_$split.json")")
done
printf '%-22s %10.3f %10.3f %10s %12s   (oracle split %.3f)\n' "text-only (blank image)" \
    "${to[0]}" "${to[1]}" - - "${to[2]}"
cats() { # eval json -> "name sfd_pp" per category
    sed -E 's/.*"categories":\{(.*)\},"text_only".*/\1/' "$1" |
        grep -o '"[A-Za-z0-9_ -]*":{"n":[^}]*"sfd_pp":[^,}]*' |
        sed -E 's/^"([^"]*)".*"sfd_pp":([^,}]*)$/\1 \2/'
}
echo
echo "SFD (pp) by category on test_oracle:"
printf '  %-20s %10s %10s %14s\n' category oracle standard shortcut-aware
while read -r cat sfd_o; do
    sfd_s=$(cats "$out/eval_standard_test_oracle.json" | awk -v c="$cat" '$1 == c { print $2 }')
    sfd_r=$(cats "$out/eval_robust_test_oracle.json" | awk -v c="$cat" '$1 == c { print $2 }')
    printf '  %-20s %10.1f %10.1f %14.1f\n' "$cat" "$sfd_o" "${sfd_s:-nan}" "${sfd_r:-nan}"
done < <(cats "$out/eval_pretrain_test_oracle.json")
echo
echo "accuracy: pairwise (ties 0.5) against the image-grounded truth; i.i.d. = test_id (the cue"
echo "agrees with the preference 90% of the time, as in training), o.o.d. = test_ood (cue reversed)."
echo "SFD = acc(RM | text-only right) - acc(RM | text-only wrong), in points, on test_oracle (cue"
echo "uncorrelated), the text-only verdict from the shortcut-aware run's bias model (blank image)."
echo "oracle: the grounding run (another seed's scenes, cue uncorrelated in training), which both"
echo "reward models start from; its train time is the grounding's, theirs the fine-tuning's."
echo "text-only: the shortcut-aware run's bias model on the blank image, the paper's text-only RM."
lap "evaluation (9 evals)"
"$mmrm" plot --results "$out" --title "shortcut benchmark, seed $seed" --out "$out/results.png" > /dev/null
"$mmrm" plot "$out/standard" "$out/robust" --label standard --label shortcut-aware \
    --title "fine-tuning on the shortcut benchmark (seed $seed)" --smooth 25 --out "$out/curves.png" \
    > /dev/null
lap "plots"
echo
echo "results (accuracy bars, w histogram of the shortcut-aware run): $out/results.png"
echo "training curves: $out/curves.png"
echo
echo "where the time went (wall seconds):"
total=0
for p in "${phases[@]}"; do
    printf '  %-34s %7.1f s\n' "${p% *}" "${p##* }"
    total=$(awk -v a="$total" -v b="${p##* }" 'BEGIN { print a + b }')
done
printf '  %-34s %7.1f s\n' total "$total"
