#!/usr/bin/env bash
# LoRA on the command line: a LoRA run (standard and shortcut_aware, adapters on the LLM, the
# ViT and the connector) saves adapter_config.json + adapter_model.safetensors instead of the
# model; `score --model BASE --adapter CKPT` scores with them (differently from the base
# alone); `merge` writes a model that scores the same within 1e-5; eval takes --adapter too;
# bad adapters and target names fail with messages naming the file or key.
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$MMRM" synth --out "$tmp/data" --pairs 24 --seed 6 >/dev/null 2>&1
"$MMRM" init --config configs/model/tiny.json --out "$tmp/base" --seed 11 >/dev/null
cfg="$tmp/empty.ini"; : > "$cfg"
common=(model_name_or_path="$tmp/base" bias_model_path="$tmp/base" dataset_path="$tmp/data/train.jsonl"
        dynamic_image_size=false max_length=512 max_steps=3 learning_rate=5e-3 warmup_steps=0
        per_device_train_batch_size=4 gradient_accumulation_steps=1 num_workers=0 seed=3
        lora_r=4 lora_alpha=8 lora_dropout=0.1
        lora_target_modules=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,qkv,fc2,mlp1.1)
input="$tmp/data/score_input.jsonl"
scores() { sed 's/.*"score":[ ]*//; s/}//' "$1"; }
close() { # close A B: every pair of numbers within 1e-5 absolute
    paste <(echo "$1") <(echo "$2") | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d;
        if (d > 1e-5) { print "differ: " $1 " vs " $2; bad = 1 } n++ }
        END { if (n == 0) { print "nothing compared"; exit 1 } printf "max |diff| %.3g over %d scores\n", m, n; exit bad }'
}

for algo in standard shortcut_aware; do
    out="$tmp/run_$algo"
    "$MMRM" train "$cfg" "${common[@]}" algorithm=$algo output_dir="$out" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
    ck="$out/checkpoint-last"
    subs=(""); [ $algo = shortcut_aware ] && subs=("" "/bias")
    for sub in "${subs[@]}"; do
        [ -f "$ck$sub/adapter_config.json" ] && [ -f "$ck$sub/adapter_model.safetensors" ] || { echo "no adapter in $ck$sub"; exit 1; }
        [ ! -e "$ck$sub/model.safetensors" ] || { echo "$ck$sub holds the full model"; exit 1; }
        grep -q '"peft_type":[[:space:]]*"LORA"' "$ck$sub/adapter_config.json"
        grep -q '"modules_to_save"' "$ck$sub/adapter_config.json"
        "$MMRM" score --model "$tmp/base" --adapter "$ck$sub" --input "$input" --output "$tmp/a.jsonl" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
        grep -q "adapter .*LoRA r 4, alpha 8 on 19 linear layers" "$tmp/log" || { cat "$tmp/log"; exit 1; }
        "$MMRM" merge --model "$tmp/base" --adapter "$ck$sub" --out "$tmp/merged" >/dev/null
        "$MMRM" score --model "$tmp/merged" --input "$input" --output "$tmp/m.jsonl" 2>/dev/null
        echo -n "$algo$sub merged vs adapter: "
        close "$(scores "$tmp/a.jsonl")" "$(scores "$tmp/m.jsonl")"
        "$MMRM" score --model "$tmp/base" --input "$input" --output "$tmp/b.jsonl" 2>/dev/null
        [ "$(scores "$tmp/a.jsonl")" != "$(scores "$tmp/b.jsonl")" ] || { echo "the adapter changed no score"; exit 1; }
        rm -rf "$tmp/merged" "$tmp/a.jsonl" "$tmp/m.jsonl" "$tmp/b.jsonl"
    done
done

# eval takes --adapter as well
"$MMRM" eval --model "$tmp/base" --adapter "$tmp/run_standard/checkpoint-last" --data "$tmp/data/test_id.jsonl" \
    >"$tmp/eval.txt" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
grep -q "adapter" "$tmp/log" || { cat "$tmp/log"; exit 1; }

# errors name the file or the key
set +e
"$MMRM" score --model "$tmp/base" --adapter "$tmp/nowhere" --input "$input" --output "$tmp/x.jsonl" 2>"$tmp/err"
rc=$?
set -e
[ $rc = 1 ] && grep -q "nowhere/adapter_config.json" "$tmp/err" || { echo "missing adapter: rc $rc"; cat "$tmp/err"; exit 1; }
mkdir -p "$tmp/bad"
cp "$tmp/run_standard/checkpoint-last/adapter_model.safetensors" "$tmp/bad/"
sed 's/"r":[[:space:]]*4,/"r": "four",/' "$tmp/run_standard/checkpoint-last/adapter_config.json" > "$tmp/bad/adapter_config.json"
set +e
"$MMRM" merge --model "$tmp/base" --adapter "$tmp/bad" --out "$tmp/x" 2>"$tmp/err"
rc=$?
set -e
[ $rc = 1 ] && grep -q 'adapter_config.json: field "r"' "$tmp/err" || { echo "bad r: rc $rc"; cat "$tmp/err"; exit 1; }
set +e
"$MMRM" train "$cfg" "${common[@]}" lora_target_modules=q_proj,qproj output_dir="$tmp/x" 2>"$tmp/err"
rc=$?
set -e
[ $rc != 0 ] && grep -q 'lora_target_modules: "qproj"' "$tmp/err" || { echo "bad target: rc $rc"; cat "$tmp/err"; exit 1; }
set +e
"$MMRM" train "$cfg" "${common[@]}" lora_target_modules=wqkv output_dir="$tmp/x" 2>"$tmp/err"
rc=$?
set -e
[ $rc != 0 ] && grep -q 'lora_target_modules: "wqkv" is no linear layer of this Qwen2ForCausalLM' "$tmp/err" || { echo "wrong family: rc $rc"; cat "$tmp/err"; exit 1; }
echo "lora_cli: ok"
