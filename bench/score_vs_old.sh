#!/usr/bin/env bash
# `mmrm score` of two binaries side by side on the same model and JSONL: best-of-N scoring
# with 16 responses per prompt (one record per forward: --batch-size 16), the shape of
# bench/bench_share_prefix.c's scoring row (random weights; one 64-px tile = 256 image tokens,
# a one-layer narrow ViT; LLM 384 wide, 2 layers, Qwen2-0.5B's ratios; a 30-50 character prompt
# and responses of 20-200 characters, one token per character with the byte tokenizer).
# OMP_NUM_THREADS=1; the two binaries alternate, REPS times each, and the best user CPU time
# of each is kept (the machine may be shared: user CPU time is the steadier measure). The
# scores of the two must agree (1e-4 relative to the largest): the same model either way.
#   bash bench/score_vs_old.sh OLD_MMRM [NEW_MMRM (build/mmrm)] [--records N (6)] [--reps N (3)]
# OLD_MMRM: e.g. the main branch before issue 18, built in its own worktree:
#   git worktree add --detach /tmp/old18 dd5a9fc^1 && make -C /tmp/old18 -j2 build/mmrm
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
[ "${1:-}" = --help ] || [ "${1:-}" = -h ] && { usage; exit 0; }
[ $# -ge 1 ] || { usage >&2; exit 2; }
old=$1; shift
new=build/mmrm
if [ $# -ge 1 ] && [ "${1#--}" = "$1" ]; then new=$1; shift; fi
records=6 reps=3
while [ $# -gt 0 ]; do
    case $1 in
    --records) records=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    *) echo "score_vs_old.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
for b in "$old" "$new"; do [ -x "$b" ] || { echo "score_vs_old.sh: $b is not an executable" >&2; exit 2; }; done
export OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/config.json" <<'EOF'
{
  "architectures": ["InternVLChatModel"], "model_type": "internvl_chat",
  "downsample_ratio": 0.5, "ps_version": "v2", "select_layer": -1, "force_image_size": 64,
  "template": "Hermes-2", "img_context_token_id": 262, "dynamic_image_size": false,
  "use_thumbnail": false,
  "vision_config": {
    "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "hidden_size": 64,
    "num_attention_heads": 2, "intermediate_size": 128, "num_hidden_layers": 1, "image_size": 64,
    "patch_size": 2, "num_channels": 3, "qkv_bias": true, "qk_normalization": false,
    "norm_type": "layer_norm", "layer_norm_eps": 1e-06, "hidden_act": "gelu", "drop_path_rate": 0.0
  },
  "llm_config": {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 384,
    "num_attention_heads": 6, "num_key_value_heads": 2, "num_hidden_layers": 2,
    "intermediate_size": 2048, "vocab_size": 270, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06,
    "max_position_embeddings": 32768, "hidden_act": "silu"
  }
}
EOF
"$new" init --config "$tmp/config.json" --out "$tmp/model" --seed 1 >/dev/null
mkdir "$tmp/img"
cp tests/fixtures/images/rgb_61x113.png "$tmp/img/"
# records: a 30-50 character prompt, 16 responses of 20-200 characters (fixed seed)
awk -v n="$records" 'BEGIN {
    srand(18); a = "abcdefghijklmnopqrstuvwxyz     "
    for (i = 0; i < n; i++) {
        p = ""; pl = 30 + int(rand() * 21)
        for (k = 0; k < pl; k++) p = p substr(a, 1 + int(rand() * length(a)), 1)
        printf "{\"prompt\": \"%s\", \"img_path\": \"img/rgb_61x113.png\", \"responses\": [", p
        for (j = 0; j < 16; j++) {
            r = ""; rl = 20 + int(rand() * 181)
            for (k = 0; k < rl; k++) r = r substr(a, 1 + int(rand() * length(a)), 1)
            printf "%s\"%s\"", (j ? ", " : ""), r
        }
        printf "]}\n"
    }
}' >"$tmp/in.jsonl"

best_old=1e30 best_new=1e30 wall_old=1e30 wall_new=1e30
for ((i = 0; i < reps; i++)); do
    for side in old new; do
        bin=$old; [ $side = new ] && bin=$new
        rm -f "$tmp/$side.jsonl"
        /usr/bin/time -f "%U %e" -o "$tmp/time" "$bin" score --model "$tmp/model" \
            --input "$tmp/in.jsonl" --output "$tmp/$side.jsonl" --batch-size 16 2>"$tmp/err" ||
            { cat "$tmp/err" >&2; echo "score_vs_old.sh: $bin score failed" >&2; exit 1; }
        read -r u w <"$tmp/time"
        if [ $side = old ]; then
            best_old=$(awk -v a="$best_old" -v b="$u" 'BEGIN { print (b < a ? b : a) }')
            wall_old=$(awk -v a="$wall_old" -v b="$w" 'BEGIN { print (b < a ? b : a) }')
        else
            best_new=$(awk -v a="$best_new" -v b="$u" 'BEGIN { print (b < a ? b : a) }')
            wall_new=$(awk -v a="$wall_new" -v b="$w" 'BEGIN { print (b < a ? b : a) }')
        fi
    done
done
scores() { sed -n 's/.*"score": *\([-0-9.eE+]*\).*/\1/p' "$1"; }
n=$(scores "$tmp/new.jsonl" | wc -l)
[ "$n" -eq $((records * 16)) ] || { echo "score_vs_old.sh: $n scores, want $((records * 16))" >&2; exit 1; }
paste <(scores "$tmp/old.jsonl") <(scores "$tmp/new.jsonl") | awk '
    { d = $1 - $2; d = d < 0 ? -d : d; if (d > md) md = d; m = $1 < 0 ? -$1 : $1; if (m > mx) mx = m }
    END { printf "scores: largest difference %.3g (largest |score| %.3g)\n", md, mx
          if (md > 1e-4 * mx) { print "score_vs_old.sh: the two binaries disagree" > "/dev/stderr"; exit 1 } }'
awk -v n=$((records * 16)) -v uo="$best_old" -v un="$best_new" -v wo="$wall_old" -v wn="$wall_new" -v r="$reps" 'BEGIN {
    printf "%d responses (16 per prompt), OMP_NUM_THREADS=1, best of %d alternating runs\n", n, r
    printf "old: %.2f s user CPU (%.1f responses/s), %.2f s wall\n", uo, n / uo, wo
    printf "new: %.2f s user CPU (%.1f responses/s), %.2f s wall\n", un, n / un, wn
    printf "new vs old: %.2fx by user CPU time, %.2fx by wall time\n", uo / un, wo / wn
}'
