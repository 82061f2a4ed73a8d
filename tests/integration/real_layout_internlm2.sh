#!/usr/bin/env bash
# A model directory laid out as a published InternVL2-8B one, on the CPU: the published
# config.json (tests/fixtures/hf_configs/InternVL2-8B: InternLM2 decoder, internlm2-chat, no
# img_context_token_id, dynamic tiling up to 12 tiles, 448-pixel tiles of 14-pixel patches,
# vocabulary 92553) with the depth and widths reduced, the SentencePiece tokenizer directory
# tests/fixtures/tokenizers/internlm2 (tokenizer.model + tokenizer_config.json +
# special_tokens_map.json: a 4,000-piece test model with InternLM2-chat's and InternVL2's
# added tokens at InternVL2-8B's ids 92538..92552, <IMG_CONTEXT> 92546; its pieces end at
# 3999, the ids between have no token) and random weights stored in BF16.
# Checks: the tokenizer's <IMG_CONTEXT> (92546) is adopted for the config's missing
# img_context_token_id; `mmrm train` runs 2 steps with both algorithms and writes a checkpoint
# whose config.json keeps the published keys and records 92546; `mmrm score` scores with it;
# `mmrm tokenize --model` on the trained checkpoint gives transformers' LlamaTokenizer(legacy)
# ids of a known text, and `--template` puts <s>, the image block and the reward index where
# internlm2-chat puts them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=${KEEP:-$(mktemp -d)}
[ -n "${KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT
tokdir="$root/tests/fixtures/tokenizers/internlm2"

# the published config, reduced in depth and width (every other key, vocab_size included, as
# published)
perl -MJSON::PP -e '
    my $j = JSON::PP->new->canonical;
    local $/; my $c = $j->decode(<STDIN>);
    my $v = $c->{vision_config};
    @$v{qw(hidden_size intermediate_size num_attention_heads num_hidden_layers)} = (32, 64, 2, 1);
    my $l = $c->{llm_config};
    @$l{qw(hidden_size intermediate_size num_attention_heads num_key_value_heads num_hidden_layers)} =
        (64, 128, 4, 2, 1);
    die "vocab_size $l->{vocab_size}\n" if $l->{vocab_size} != 92553;
    die "template $c->{template}\n" if $c->{template} ne "internlm2-chat";
    print $j->encode($c);' <"$root/tests/fixtures/hf_configs/InternVL2-8B/config.json" >"$tmp/config.json"
grep -q img_context_token_id "$tmp/config.json" && { echo "the published config has no img_context_token_id"; exit 1; }

"$MMRM" init --config "$tmp/config.json" --out "$tmp/model" --dtype BF16 >"$tmp/init.log" 2>&1 ||
    { cat "$tmp/init.log"; exit 1; }
cp "$tokdir"/{tokenizer.model,tokenizer_config.json,special_tokens_map.json} "$tmp/model/"
rm -f "$tmp/model/mmrm_tokenizer.json"
"$MMRM" info "$tmp/model" >"$tmp/info.log" 2>&1 || { cat "$tmp/info.log"; exit 1; }
grep -q "BF16" "$tmp/info.log" || { echo "mmrm info does not say BF16:"; cat "$tmp/info.log"; exit 1; }
grep -qi "sentencepiece" "$tmp/info.log" || { echo "mmrm info does not name the sentencepiece tokenizer:"; cat "$tmp/info.log"; exit 1; }
grep -q "<IMG_CONTEXT> id 92546" "$tmp/info.log" || { echo "mmrm info does not show the adopted <IMG_CONTEXT> id 92546:"; cat "$tmp/info.log"; exit 1; }

"$MMRM" synth --out "$tmp/data" --pairs 8 --seed 5 >/dev/null
for algo in standard shortcut_aware; do
    bias=()
    [ $algo = shortcut_aware ] && bias=(bias_model_path="$tmp/model")
    "$MMRM" train "$root/configs/scratch_standard.ini" init_model_config= model_name_or_path="$tmp/model" \
        "${bias[@]}" algorithm=$algo dataset_path="$tmp/data/train.jsonl" eval_dataset_path= \
        output_dir="$tmp/out_$algo" max_steps=2 per_device_train_batch_size=2 \
        dynamic_image_size=true use_thumbnail=true max_length=1024 max_dynamic_patch=2 logging_steps=1 \
        >"$tmp/train_$algo.log" 2>&1 || { tail -n 20 "$tmp/train_$algo.log"; exit 1; }
    grep -q "step 2/2" "$tmp/train_$algo.log" || { echo "$algo: no step 2/2"; tail -n 20 "$tmp/train_$algo.log"; exit 1; }
    ck="$tmp/out_$algo/checkpoint-last"
    grep -q '"img_context_token_id":[[:space:]]*92546' "$ck/config.json" ||
        { echo "$algo: checkpoint config lacks img_context_token_id 92546"; exit 1; }
    grep -q '"vocab_size":[[:space:]]*92553' "$ck/config.json" ||
        { echo "$algo: checkpoint config lost vocab_size 92553"; exit 1; }
    for key in use_backbone_lora use_llm_lora _commit_hash; do
        grep -q "\"$key\"" "$ck/config.json" || { echo "$algo: checkpoint config lost $key"; exit 1; }
    done
    [ -f "$ck/tokenizer.model" ] || { echo "$algo: checkpoint has no tokenizer.model"; ls "$ck"; exit 1; }
    echo "train $algo: 2 steps on the InternVL2-8B layout, checkpoint keeps the published keys"
done

ck="$tmp/out_standard/checkpoint-last"
"$MMRM" score --model "$ck" --input "$tmp/data/score_input.jsonl" --output "$tmp/scores.jsonl" \
    >"$tmp/score.log" 2>&1 || { tail -n 20 "$tmp/score.log"; exit 1; }
want=$(perl -MJSON::PP -ne '$n += @{decode_json($_)->{responses}}; END { print $n }' "$tmp/data/score_input.jsonl")
got=$(grep -c '"score":[[:space:]]*-\?[0-9]' "$tmp/scores.jsonl")
[ "$got" = "$want" ] || { echo "score: $got finite scores, want $want"; tail -n 20 "$tmp/score.log"; exit 1; }
echo "score: $got responses scored with the trained checkpoint"

# the checkpoint's tokenizer is the fixture's: the ids transformers 4.44.2's
# LlamaTokenizer(legacy=True) gives for this text from tests/fixtures/tokenizers/internlm2
# with add_special_tokens=False ([1029, 290, 2852, 274, 296, 2866, 2865, 92546])
ids=$(printf 'Hello world<IMG_CONTEXT>\n' | "$MMRM" tokenize --model "$ck")
[ "$ids" = "[1029, 290, 2852, 274, 296, 2866, 2865, 92546]" ] || { echo "tokenize --model: $ids"; exit 1; }
echo "tokenize --model on the checkpoint: the reference's ids"

# --template: the model's input row (internlm2-chat, the published system prompt, 256 tokens
# per tile): <s> 1 first, <|im_start|> 92543, <img> 92544, 256 x tiles <IMG_CONTEXT> 92546,
# </img> 92545 where "image" says, and the reward index on the final <|im_end|> 92542
printf '%s\n' '{"prompt": "  What is shown?  ", "response": " A red cube. ", "tiles": 2}' \
    '{"prompt": "No image here", "response": "ok", "tiles": 0}' |
    "$MMRM" tokenize --model "$ck" --template >"$tmp/rows.jsonl"
perl -MJSON::PP -ne '
    my $r = decode_json($_); my @ids = @{$r->{ids}}; my $tiles = $. == 1 ? 2 : 0;
    my $ctx = grep { $_ == 92546 } @ids;
    die "row $.: $ctx IMG_CONTEXT tokens, want " . 256 * $tiles . "\n" if $ctx != 256 * $tiles;
    if ($tiles) {
        my ($a, $b) = @{$r->{image}};
        die "row $.: image span [$a, $b)\n" if $ids[$a] != 92544 || $ids[$b - 1] != 92545 || $b - $a != 2 + 256 * $tiles;
    } else { die "row $.: image should be null\n" if defined $r->{image}; }
    die "row $.: reward index\n" if $r->{reward_index} != $#ids || $ids[-1] != 92542;
    die "row $.: starts with $ids[0] $ids[1]\n" if $ids[0] != 1 || $ids[1] != 92543;
    die "row $.: id $_ has no token in the tokenizer\n" for grep { $_ >= 4000 && $_ < 92538 } @ids;' "$tmp/rows.jsonl" ||
    { echo "tokenize --template:"; cat "$tmp/rows.jsonl"; exit 1; }
echo "tokenize --template: <s>, image block and reward index where internlm2-chat puts them"
