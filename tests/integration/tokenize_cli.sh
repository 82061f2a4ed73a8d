#!/usr/bin/env bash
# `mmrm tokenize` on the BPE oracle fixtures (tests/oracle/gen_bpe_fixtures.py): every corpus
# line, from --input and from stdin, gives HF's ids; --jsonl texts with newlines too; --decode
# gives ASCII lines back byte for byte and every line back as text that encodes to the same
# ids (decoding gives the NFC form); bad input fails naming the line; --help works; a model
# trained with a BPE tokenizer_path keeps its HF files in the checkpoint and scores with them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
MMRM=${MMRM:-$root/build/mmrm}
fix=$root/tests/fixtures/tokenizers
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
# the fixtures' "1 2 3" lines as the command's JSON arrays
as_json() { sed 's/ /, /g; s/^/[/; s/$/]/' "$1"; }

as_json "$fix/bpe_ids.txt" > "$tmp/want.txt"
"$MMRM" tokenize --model "$fix/qwen2" --input "$fix/bpe_corpus.txt" > "$tmp/got.txt"
cmp -s "$tmp/want.txt" "$tmp/got.txt" || fail "corpus ids differ from HF: $(diff "$tmp/want.txt" "$tmp/got.txt" | head -c 300)"
echo "corpus: $(wc -l < "$tmp/got.txt") lines, ids identical to HF tokenizers"

head -n 500 "$fix/bpe_corpus.txt" | "$MMRM" tokenize --tokenizer "$fix/qwen2" > "$tmp/stdin.txt"
head -n 500 "$tmp/want.txt" | cmp -s - "$tmp/stdin.txt" || fail "stdin gives other ids than --input"

as_json "$fix/bpe_multi_ids.txt" > "$tmp/want_multi.txt"
"$MMRM" tokenize --model "$fix/qwen2" --jsonl --input "$fix/bpe_multi.jsonl" > "$tmp/got_multi.txt"
cmp -s "$tmp/want_multi.txt" "$tmp/got_multi.txt" || fail "--jsonl ids differ from HF"

# decode: lines without bytes >= 0x80 come back exactly; every line re-encodes to its ids
"$MMRM" tokenize --model "$fix/qwen2" --decode --input "$tmp/got.txt" > "$tmp/decoded.txt"
[ "$(wc -l < "$tmp/decoded.txt")" = "$(wc -l < "$fix/bpe_corpus.txt")" ] || fail "--decode: line count"
bad=$(LC_ALL=C awk 'NR == FNR { a[NR] = $0; next } a[FNR] !~ /[\200-\377]/ && a[FNR] != $0 { n++ }
                    END { print n + 0 }' "$fix/bpe_corpus.txt" "$tmp/decoded.txt")
[ "$bad" = 0 ] || fail "--decode: $bad ASCII lines did not come back"
"$MMRM" tokenize --model "$fix/qwen2" --input "$tmp/decoded.txt" | cmp -s - "$tmp/got.txt" ||
    fail "decoded text does not encode to the same ids"
"$MMRM" tokenize --model "$fix/qwen2" --decode --jsonl --input "$tmp/got_multi.txt" > "$tmp/multi_back.jsonl"
"$MMRM" tokenize --model "$fix/qwen2" --jsonl --input "$tmp/multi_back.jsonl" | cmp -s - "$tmp/want_multi.txt" ||
    fail "--decode --jsonl texts do not encode to the same ids"

# errors
expect_fail() { # status needle command...
    local want=$1 needle=$2; shift 2
    set +e; "$@" > "$tmp/out" 2> "$tmp/err"; local rc=$?; set -e
    [ "$rc" = "$want" ] || fail "$* exited $rc, not $want: $(cat "$tmp/err")"
    grep -qF -- "$needle" "$tmp/err" || fail "$*: no \"$needle\" in: $(cat "$tmp/err")"
}
mkdir "$tmp/empty"
expect_fail 1 "mmrm_tokenizer.json" "$MMRM" tokenize --model "$tmp/empty" --input /dev/null
expect_fail 1 "<stdin>:2: element 1 of the array is not an integer id" \
    sh -c "printf '[1, 2]\n[3, \"x\"]\n' | \"$MMRM\" tokenize --model \"$fix/qwen2\" --decode"
expect_fail 1 "id 999999 at position 0 has no token" \
    sh -c "echo '[999999]' | \"$MMRM\" tokenize --model \"$fix/qwen2\" --decode"
expect_fail 1 "<stdin>:1: expected one JSON string" \
    sh -c "echo 'not json' | \"$MMRM\" tokenize --model \"$fix/qwen2\" --jsonl"
expect_fail 2 "--tokenizer DIR or --model DIR is required" "$MMRM" tokenize
expect_fail 2 "unknown argument --bogus" "$MMRM" tokenize --model "$fix/qwen2" --bogus
"$MMRM" tokenize --help | grep -q "usage: mmrm tokenize" || fail "--help"

# training and scoring with a BPE tokenizer_path: a tiny model whose vocabulary is the
# 2,000-merge tokenizer.json's; the checkpoint carries the HF files and scoring reads them
mkdir "$tmp/tok"
cp "$fix/tiny_json/tokenizer.json" "$tmp/tok/"
printf '{"pad_token": "<|endoftext|>", "eos_token": "<|im_end|>"}\n' > "$tmp/tok/special_tokens_map.json"
ctx=$(echo '<IMG_CONTEXT>' | "$MMRM" tokenize --model "$tmp/tok" | tr -d '[]')
sed -e "s/\"img_context_token_id\": 262/\"img_context_token_id\": $ctx/" \
    -e 's/"vocab_size": 270/"vocab_size": 2268/' "$root/configs/model/tiny.json" > "$tmp/tiny_bpe.json"
grep -q "\"img_context_token_id\": $ctx" "$tmp/tiny_bpe.json" || fail "could not write the BPE model config"
"$MMRM" synth --out "$tmp/data" --pairs 24 > "$tmp/synth.log" 2>&1 || fail "synth: $(tail -3 "$tmp/synth.log")"
OMP_NUM_THREADS=1 "$MMRM" train "$root/configs/scratch_standard.ini" init_model_config="$tmp/tiny_bpe.json" \
    tokenizer_path="$tmp/tok" dataset_path="$tmp/data/train.jsonl" eval_dataset_path="$tmp/data/test_id.jsonl" \
    output_dir="$tmp/run" max_steps=2 > "$tmp/train.log" 2>&1 || fail "train with a BPE tokenizer: $(tail -3 "$tmp/train.log")"
cmp -s "$tmp/tok/tokenizer.json" "$tmp/run/checkpoint-last/tokenizer.json" || fail "the checkpoint lacks the tokenizer.json"
OMP_NUM_THREADS=1 "$MMRM" score --model "$tmp/run/checkpoint-last" --input "$tmp/data/score_input.jsonl" \
    --output "$tmp/scores.jsonl" > "$tmp/score.log" 2>&1 || fail "score: $(tail -3 "$tmp/score.log")"
[ "$(grep -c '"score"' "$tmp/scores.jsonl")" -gt 0 ] || fail "no scores"
echo "tokenize_cli: all checks passed"
