#!/usr/bin/env bash
# The demo's recipe end to end at toy size: `mmrm synth` writes its word tokenizer; a model
# from configs/model/demo_tiny.json trained with tokenizer_path = the synth folder saves that
# tokenizer, its empty system message and the run's image tiling (one tile) in its checkpoint;
# `mmrm eval` of the checkpoint, with no tiling flags, reproduces the trainer's own final
# evaluation (accuracy and mean margin: the same inputs, so the same forward); the
# shortcut-aware fine-tuning starts main and bias model from that checkpoint; bad
# combinations fail with clear messages.
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
fail() { echo "FAIL $*"; exit 1; }

# 224 training pairs, noise-free as the demo's grounding set: the test splits hold 56 = 7 x 8
# pairs, so the trainer's evaluation (whole batches of 8) sees every pair
"$MMRM" synth --out "$tmp/data" --pairs 224 --seed 5 --cue-agreement 0.5 --label-noise 0 > /dev/null
grep -q '"type":[[:space:]]*"word"' "$tmp/data/mmrm_tokenizer.json" || fail "synth wrote no word tokenizer"

"$MMRM" train configs/demo_pretrain.ini tokenizer_path="$tmp/data" dataset_path="$tmp/data/train.jsonl" \
    eval_dataset_path="$tmp/data/test_id.jsonl" output_dir="$tmp/base" num_train_epochs=1 max_steps=24 \
    per_device_train_batch_size=8 learning_rate=1e-3 \
    logging_steps=8 2> "$tmp/base.log" || { tail -n 20 "$tmp/base.log"; fail "pretraining"; }
ck="$tmp/base/checkpoint-last"
cmp -s "$tmp/data/mmrm_tokenizer.json" "$ck/mmrm_tokenizer.json" ||
    fail "the checkpoint's tokenizer is not the synth folder's"
grep -q '"system_message":[[:space:]]*""' "$ck/config.json" || fail "config.json lacks the empty system_message"
grep -q '"dynamic_image_size":[[:space:]]*false' "$ck/config.json" && grep -q '"use_thumbnail":[[:space:]]*false' "$ck/config.json" ||
    fail "config.json does not record the run's single-tile images"

# the trainer's final evaluation vs mmrm eval of the saved checkpoint
line=$(grep "eval at step 24" "$tmp/base.log") || fail "no final evaluation in the log"
t_acc=$(sed -E 's/.*accuracy ([0-9.]+).*/\1/' <<<"$line")
t_margin=$(sed -E 's/.*mean margin (-?[0-9.]+).*/\1/' <<<"$line")
grep -q "(56 pairs)" <<<"$line" || fail "the trainer evaluated other than 56 pairs: $line"
"$MMRM" eval --model "$ck" --data "$tmp/data/test_id.jsonl" --json > "$tmp/eval.json" 2> "$tmp/eval.log" ||
    { tail -n 5 "$tmp/eval.log"; fail "eval"; }
e_acc=$(grep -o '"accuracy":[^,}]*' "$tmp/eval.json" | head -n 1 | cut -d: -f2)
e_margin=$(grep -o '"margin_mean":[^,}]*' "$tmp/eval.json" | head -n 1 | cut -d: -f2)
echo "trainer's eval: accuracy $t_acc, mean margin $t_margin; mmrm eval: $e_acc, $e_margin"
awk -v a="$t_acc" -v b="$e_acc" -v m="$t_margin" -v n="$e_margin" \
    'BEGIN { d = m - n; if (d < 0) d = -d; exit !(a - b < 6e-5 && b - a < 6e-5 && d <= 6e-5 + 1e-4 * (m < 0 ? -m : m)) }' ||
    fail "mmrm eval of the checkpoint differs from the trainer's evaluation"
# the recorded tiling is only a default: --dynamic --thumbnail (up to 6 tiles) change the input
"$MMRM" eval --model "$ck" --data "$tmp/data/test_id.jsonl" --dynamic --thumbnail --json > "$tmp/eval6.json" \
    2> /dev/null || fail "eval with flags"
grep -q "\"margin_mean\":$e_margin[,}]" "$tmp/eval6.json" && fail "--dynamic did not change the input"

# shortcut-aware fine-tuning from the grounded checkpoint (main and bias model)
"$MMRM" train configs/demo_robust.ini model_name_or_path="$ck" bias_model_path="$ck" \
    dataset_path="$tmp/data/train.jsonl" eval_dataset_path= output_dir="$tmp/robust" max_steps=3 \
    logging_steps=1 2> "$tmp/robust.log" || { tail -n 20 "$tmp/robust.log"; fail "fine-tuning"; }
grep -q "bias loss" "$tmp/robust.log" || fail "the fine-tuning did not train a bias model"
cmp -s "$ck/mmrm_tokenizer.json" "$tmp/robust/checkpoint-last/mmrm_tokenizer.json" ||
    fail "the fine-tuned checkpoint changed the tokenizer"

# errors: tokenizer_path with a model directory; a tokenizer_path without a tokenizer; a
# word vocabulary larger than the model's
err() { # want args...
    local want=$1
    shift
    if "$MMRM" train "$@" > "$tmp/err.log" 2>&1; then fail "accepted: $*"; fi
    grep -q "$want" "$tmp/err.log" || { cat "$tmp/err.log"; fail "no '$want' in the error"; }
}
err "tokenizer_path is for a model built from init_model_config" configs/demo_standard.ini \
    model_name_or_path="$ck" tokenizer_path="$tmp/data" dataset_path="$tmp/data/train.jsonl" output_dir="$tmp/e1"
err "cannot open tokenizer file $tmp/nothing/mmrm_tokenizer.json" configs/demo_pretrain.ini \
    tokenizer_path="$tmp/nothing" dataset_path="$tmp/data/train.jsonl" output_dir="$tmp/e2" max_steps=1
err "the tokenizer has [0-9]* tokens but the model's vocabulary 270" configs/demo_pretrain.ini \
    init_model_config=configs/model/tiny.json tokenizer_path="$tmp/data" \
    dataset_path="$tmp/data/train.jsonl" output_dir="$tmp/e3" max_steps=1
echo "demo recipe: word tokenizer, system message and tiling travel with the checkpoint; eval = the trainer's evaluation"
