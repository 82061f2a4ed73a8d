#!/usr/bin/env bash
# bench/shortcut_grid.sh - the synthetic shortcut benchmark over a grid of task families x cue
# kinds (`mmrm synth --task T --cue C`): for each cell a benchmark set (seed SEED), then the
# standard and the shortcut-aware reward model fine-tuned from one grounded checkpoint
# (configs/demo_standard.ini, configs/demo_robust.ini: same start, data, steps and seed), each
# evaluated on test_id (i.i.d.) and test_ood (o.o.d.), SFD on test_oracle against the
# shortcut-aware run's bias model (blank image), whose own i.i.d. accuracy is the "text" column.
# One table at the end (also OUT/table.txt).
#
# The grounded checkpoint: BASE if set, else build/demo/pretrain/checkpoint-last (a `make demo`
# output; its tokenizer knows only the colour task's words, so other tasks' words are spelled in
# bytes), else one grounded here with configs/demo_pretrain.ini (GROUND_EXTRA: overrides such
# as num_train_epochs=6) on GROUND_PAIRS pairs of `mmrm synth GROUND_ARGS --cue-agreement 0.5`
# (default "--task color --cue length": the colour task, which the tiny model leaves the ln 2
# plateau on within ~500 steps, where `--task mixed` stayed on it for 1,500 of 3,750 steps in
# our run; any non-default task or cue writes the tokenizer of every task's and cue's words)
# into OUT/ground, reused by later runs with the same OUT.
# Usage: bench/shortcut_grid.sh [TASKS [CUES]] (quoted lists; default "color count position
# size" and "trailing length style hedge position"); env MMRM, OUT (build/shortcut_grid), PAIRS
# (training pairs per cell, 1000), SEED (1), EXTRA (key=value overrides for the fine-tunings).
set -euo pipefail
read -r -a tasks <<< "${1:-color count position size}"
read -r -a cues <<< "${2:-trailing length style hedge position}"
mmrm=${MMRM:-build/mmrm}
out=${OUT:-build/shortcut_grid}
pairs=${PAIRS:-1000}
seed=${SEED:-1}
extra=${EXTRA:-}
mkdir -p "$out"
: > "$out/log.txt"

train() { # output_dir config overrides...
    local dir=$1 cfg=$2
    shift 2
    "$mmrm" train "$cfg" seed="$seed" output_dir="$dir" "$@" >> "$out/log.txt" 2>&1 ||
        { echo "training $dir failed:"; tail -n 20 "$out/log.txt"; exit 1; }
}

base=${BASE:-}
if [ -z "$base" ] && [ -d build/demo/pretrain/checkpoint-last ]; then base=build/demo/pretrain/checkpoint-last; fi
if [ -z "$base" ]; then
    base="$out/ground/checkpoint-last"
    if [ ! -d "$base" ]; then
        gp=${GROUND_PAIRS:-8000}
        gargs=${GROUND_ARGS:---task color --cue length}
        echo "== grounding: $gp pairs of synth $gargs (cue uncorrelated), configs/demo_pretrain.ini ${GROUND_EXTRA:-}"
        # shellcheck disable=SC2086
        "$mmrm" synth --out "$out/ground_data" --pairs "$gp" --seed $((seed + 1000)) $gargs \
            --cue-agreement 0.5 >> "$out/log.txt" 2>&1
        # the tiny model with a vocabulary that holds every task's and cue's words (the word
        # tokenizer's vocab_size, rounded up to 64; demo_tiny.json's 320 fits the colour task only)
        v=$(grep -o '"vocab_size":[[:space:]]*[0-9]*' "$out/ground_data/mmrm_tokenizer.json" | grep -o '[0-9]*$')
        sed -E "s/\"vocab_size\": *[0-9]+/\"vocab_size\": $(( (v + 63) / 64 * 64 ))/" \
            configs/model/demo_tiny.json > "$out/model_config.json"
        # shellcheck disable=SC2086
        train "$out/ground" configs/demo_pretrain.ini init_model_config="$out/model_config.json" \
            tokenizer_path="$out/ground_data" \
            dataset_path="$out/ground_data/train.jsonl" \
            eval_dataset_path="$out/ground_data/test_oracle.jsonl" ${GROUND_EXTRA:-}
    fi
fi
echo "== grounded checkpoint: $base"

field() { grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2; }
evaluate() { # model data -> the eval JSON on stdout
    "$mmrm" eval --model "$1" --data "$2" --text-only-model "$3" --json 2>> "$out/log.txt"
}
rows=()
for t in "${tasks[@]}"; do
    for c in "${cues[@]}"; do
        cell="$out/${t}_$c"
        echo "== $t x $c: $pairs pairs, seed $seed"
        "$mmrm" synth --out "$cell/data" --pairs "$pairs" --seed "$seed" --task "$t" --cue "$c" \
            >> "$out/log.txt" 2>&1
        # shellcheck disable=SC2086
        train "$cell/standard" configs/demo_standard.ini model_name_or_path="$base" \
            dataset_path="$cell/data/train.jsonl" eval_dataset_path="$cell/data/test_id.jsonl" $extra
        # shellcheck disable=SC2086
        train "$cell/robust" configs/demo_robust.ini model_name_or_path="$base" bias_model_path="$base" \
            dataset_path="$cell/data/train.jsonl" eval_dataset_path="$cell/data/test_id.jsonl" $extra
        bias="$cell/robust/checkpoint-last/bias"
        row="$t $c"
        for algo in standard robust; do
            m="$cell/$algo/checkpoint-last"
            evaluate "$m" "$cell/data/test_id.jsonl" "$bias" > "$cell/eval_${algo}_test_id.json"
            evaluate "$m" "$cell/data/test_ood.jsonl" "$bias" > "$cell/eval_${algo}_test_ood.json"
            evaluate "$m" "$cell/data/test_oracle.jsonl" "$bias" > "$cell/eval_${algo}_test_oracle.json"
            row+=" $(field accuracy < "$cell/eval_${algo}_test_id.json")"
            row+=" $(field accuracy < "$cell/eval_${algo}_test_ood.json")"
            # the overall SFD is text_only.sfd_pp (categories hold one each, listed first)
            row+=" $(grep -o '"text_only":{[^}]*' "$cell/eval_${algo}_test_oracle.json" | field sfd_pp)"
        done
        # the bias model's own i.i.d. accuracy (text only, ties wrong): text_only.accuracy
        row+=" $(grep -o '"text_only":{[^}]*' "$cell/eval_robust_test_id.json" | field accuracy)"
        rows+=("$row")
    done
done
{
    echo
    printf '%-9s %-9s | %-23s | %-23s | %6s\n' "" "" "standard" "shortcut-aware" "text"
    printf '%-9s %-9s | %6s %6s %9s | %6s %6s %9s | %6s\n' task cue "i.i.d." "o.o.d." "SFD (pp)" \
        "i.i.d." "o.o.d." "SFD (pp)" "i.i.d."
    for r in "${rows[@]}"; do
        # shellcheck disable=SC2086
        set -- $r
        fmt() { if [ "$1" = null ]; then echo n/a; else awk -v x="$1" -v p="$2" 'BEGIN { printf "%.*f", p, x }'; fi; }
        printf '%-9s %-9s | %6s %6s %9s | %6s %6s %9s | %6s\n' "$1" "$2" "$(fmt "$3" 3)" "$(fmt "$4" 3)" \
            "$(fmt "$5" 1)" "$(fmt "$6" 3)" "$(fmt "$7" 3)" "$(fmt "$8" 1)" "$(fmt "$9" 3)"
    done
    echo
    echo "i.i.d. = test_id (cue agrees with the preference 90% of the time, as in training), o.o.d. ="
    echo "test_ood (10%), accuracy with ties 0.5; SFD = acc(RM | text-only right) - acc(RM | text-only"
    echo "wrong) on test_oracle (cue uncorrelated), in points; text = the shortcut-aware run's bias"
    echo "model (blank image) on test_id. $pairs training pairs per cell, seed $seed, base $base."
} | tee "$out/table.txt"
