#!/usr/bin/env bash
# `mmrm init` and `mmrm info`: a model initialised from configs/model/tiny.json (and from an
# InternLM2 config with an RMSNorm, qk-normalised ViT written here) reports parameter counts
# equal to counts computed in this script from the config's shapes; --json parses; an F16
# checkpoint is named F16 (where python3 is there to write one); the same
# seed gives a byte-identical model.safetensors and another seed does not; an existing model
# is kept without --force; the tokenizer's add_bos follows the template; bad configs and
# directories fail naming the file; --help works.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# value of KEY inside SECTION ("vision_config", "llm_config" or "" for the top level) of a
# config written one key per line, as configs/model/*.json are
json_get() {
    awk -v sec="$2" -v key="\"$3\"" '
        /"vision_config": *\{/ { cur = "vision_config"; next }
        /"llm_config": *\{/    { cur = "llm_config"; next }
        /^  \}/                { cur = "" }
        cur == sec && index($0, key ":") {
            v = $0; sub(/^[^:]*: */, "", v); sub(/,? *$/, "", v); gsub(/"|\[|\]/, "", v)
            print v; exit
        }' "$1"
}

# expected counts per group from the shapes (spec/model.md), printed "vision connector llm head"
expected_counts() {
    local cfg=$1 C NH I L S p Gs H NHl KV Ll Il V arch rms qkn qkvb hd qd kd
    C=$(json_get "$cfg" vision_config hidden_size); I=$(json_get "$cfg" vision_config intermediate_size)
    L=$(json_get "$cfg" vision_config num_hidden_layers); p=$(json_get "$cfg" vision_config patch_size)
    S=$(json_get "$cfg" "" force_image_size); qkvb=$(json_get "$cfg" vision_config qkv_bias)
    rms=$(json_get "$cfg" vision_config norm_type); qkn=$(json_get "$cfg" vision_config qk_normalization)
    H=$(json_get "$cfg" llm_config hidden_size); NHl=$(json_get "$cfg" llm_config num_attention_heads)
    KV=$(json_get "$cfg" llm_config num_key_value_heads); Ll=$(json_get "$cfg" llm_config num_hidden_layers)
    Il=$(json_get "$cfg" llm_config intermediate_size); V=$(json_get "$cfg" llm_config vocab_size)
    arch=$(json_get "$cfg" llm_config architectures)
    Gs=$((S / p)); hd=$((H / NHl)); qd=$((NHl * hd)); kd=$((KV * hd))
    local norm=$((2 * C)); [ "$rms" = rms_norm ] && norm=$C
    local qb=0; [ "$qkvb" = true ] && qb=$((3 * C))
    local qk=0; [ "$qkn" = true ] && qk=$((2 * C))
    local vit_layer=$((2 * norm + 3 * C * C + qb + qk + C * C + C + 2 * C + 2 * C * I + I + C))
    local vision=$((C * 3 * p * p + C + C + (Gs * Gs + 1) * C + L * vit_layer))
    local conn=$((2 * 4 * C + H * 4 * C + H + H * H + H))
    local attn
    case $arch in
        Qwen2ForCausalLM) attn=$((H * qd + qd + 2 * (H * kd + kd) + qd * H)) ;;
        LlamaForCausalLM) attn=$((H * qd + 2 * H * kd + qd * H)) ;;
        InternLM2ForCausalLM) attn=$(((qd + 2 * kd) * H + qd * H)) ;;
        *) fail "unknown architecture $arch in $cfg" ;;
    esac
    local llm=$((V * H + Ll * (2 * H + attn + 3 * H * Il) + H))
    echo "$vision $conn $llm $H"
}

# the exact count printed on the "  GROUP   N  human" line of `mmrm info`
printed_count() { awk -v g="$2" '$1 == g && $2 ~ /^[0-9]+$/ { print $2; exit }' <<<"$1"; }

check_counts() { # DIR CONFIG
    local out exp vision conn llm head
    out=$("$MMRM" info "$1")
    exp=$(expected_counts "$2")
    read -r vision conn llm head <<<"$exp"
    [ "$(printed_count "$out" vision)" = "$vision" ] || fail "$2: vision count, want $vision: $out"
    [ "$(printed_count "$out" connector)" = "$conn" ] || fail "$2: connector count, want $conn: $out"
    [ "$(printed_count "$out" llm)" = "$llm" ] || fail "$2: llm count, want $llm: $out"
    [ "$(printed_count "$out" head)" = "$head" ] || fail "$2: head count, want $head: $out"
    local total=$((vision + conn + llm + head))
    [ "$(printed_count "$out" total)" = "$total" ] || fail "$2: total count, want $total: $out"
    echo "$total"
}

tiny="$root/configs/model/tiny.json"
"$MMRM" init --config "$tiny" --out "$tmp/a" --seed 7 >/dev/null
total=$(check_counts "$tmp/a" "$tiny")
info=$("$MMRM" info "$tmp/a")
grep -q "Qwen2ForCausalLM" <<<"$info" || fail "architecture missing: $info"
grep -q "4 image tokens per tile" <<<"$info" || fail "image tokens per tile (28/7 = 4, r 0.5 -> 4): $info"
grep -q "F32 on disk" <<<"$info" || fail "dtype: $info"
grep -Eq '"add_bos":[[:space:]]*false' "$tmp/a/mmrm_tokenizer.json" || fail "Hermes-2 must not add a BOS"

# --json: one object with the same total
"$MMRM" info --json "$tmp/a" >"$tmp/info.json"
if command -v python3 >/dev/null 2>&1; then
    python3 - "$tmp/info.json" "$total" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["parameters"]
assert p["total"] == int(sys.argv[2]) == p["vision"] + p["connector"] + p["llm"] + p["head"], p
assert d["image"]["tokens_per_tile"] == 4 and d["weights"]["disk_dtype"] == "F32", d
assert d["tokenizer"]["add_bos"] is False and d["flops"]["pair_forward"] > 0, d
EOF
else
    grep -Eq "\"total\":[[:space:]]*$total,?$" "$tmp/info.json" || fail "--json total: $(cat "$tmp/info.json")"
    [ "$(head -c 1 "$tmp/info.json")" = "{" ] || fail "--json is not an object"
fi

# a checkpoint stored in F16 is named F16 (a rewrite of the F32 one, Python's stdlib only)
if command -v python3 >/dev/null 2>&1; then
    mkdir "$tmp/f16"
    cp "$tmp/a/config.json" "$tmp/a/mmrm_tokenizer.json" "$tmp/f16/"
    python3 - "$tmp/a/model.safetensors" "$tmp/f16/model.safetensors" <<'EOF'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr, data = json.loads(raw[8:8 + n]), raw[8 + n:]
out, blob, off = {}, bytearray(), 0
for name, t in sorted(hdr.items()):
    if name == "__metadata__":
        out[name] = t
        continue
    a, b = t["data_offsets"]
    vals = struct.unpack("<%df" % ((b - a) // 4), data[a:b])
    blob += struct.pack("<%de" % len(vals), *vals)
    out[name] = {"dtype": "F16", "shape": t["shape"], "data_offsets": [off, len(blob)]}
    off = len(blob)
h = json.dumps(out, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + bytes(blob))
EOF
    info=$("$MMRM" info "$tmp/f16")
    grep -q "F16 on disk" <<<"$info" || fail "an F16 checkpoint must be named F16: $info"
fi

# determinism: same seed -> same bytes; another seed -> different bytes
"$MMRM" init --config "$tiny" --out "$tmp/b" --seed 7 >/dev/null
cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors" || fail "same seed, different weights"
"$MMRM" init --config "$tiny" --out "$tmp/c" --seed 8 >/dev/null
! cmp -s "$tmp/a/model.safetensors" "$tmp/c/model.safetensors" || fail "seeds 7 and 8 gave the same weights"

# an existing model is kept without --force, replaced with it
before=$(cksum <"$tmp/c/model.safetensors")
set +e
"$MMRM" init --config "$tiny" --out "$tmp/c" --seed 7 2>"$tmp/err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "overwrite without --force exited $rc, want 1"
grep -q -- "--force" "$tmp/err" || fail "overwrite refusal should mention --force: $(cat "$tmp/err")"
[ "$(cksum <"$tmp/c/model.safetensors")" = "$before" ] || fail "refused init still changed the weights"
"$MMRM" init --config "$tiny" --out "$tmp/c" --seed 7 --force >/dev/null
cmp -s "$tmp/a/model.safetensors" "$tmp/c/model.safetensors" || fail "--force did not write seed 7's weights"

# InternLM2 (packed wqkv, no biases) with an RMSNorm ViT and qk-normalisation, BF16 on disk,
# template override: internlm2-chat prepends <s>
sed -e 's/Qwen2ForCausalLM/InternLM2ForCausalLM/' -e 's/"layer_norm"/"rms_norm"/' \
    -e 's/"qk_normalization": false/"qk_normalization": true/' \
    -e 's/"num_hidden_layers": 2,/"num_hidden_layers": 3,/' "$tiny" >"$tmp/ilm.json"
"$MMRM" init --config "$tmp/ilm.json" --out "$tmp/ilm" --dtype BF16 --template internlm2-chat >/dev/null
check_counts "$tmp/ilm" "$tmp/ilm.json" >/dev/null
info=$("$MMRM" info "$tmp/ilm")
grep -q "BF16 on disk" <<<"$info" || fail "BF16 init: $info"
grep -q "template internlm2-chat" <<<"$info" || fail "--template not recorded: $info"
grep -Eq '"add_bos":[[:space:]]*true' "$tmp/ilm/mmrm_tokenizer.json" || fail "internlm2-chat must add a BOS"

# errors name the file and exit 1; usage errors exit 2
expect_error() { # WANT_RC PATTERN COMMAND...
    local want=$1 pat=$2 rc
    shift 2
    set +e
    "$@" >/dev/null 2>"$tmp/err"
    rc=$?
    set -e
    [ "$rc" = "$want" ] || fail "$* exited $rc, want $want"
    grep -q -- "$pat" "$tmp/err" || fail "$*: message lacks '$pat': $(cat "$tmp/err")"
}
expect_error 1 "$tmp/missing.json" "$MMRM" init --config "$tmp/missing.json" --out "$tmp/d"
printf '{"vision_config": {"hidden_size": 32,\n' >"$tmp/broken.json"
expect_error 1 "$tmp/broken.json" "$MMRM" init --config "$tmp/broken.json" --out "$tmp/d"
sed 's/"num_attention_heads": 2,/"num_attention_heads": 3,/' "$tiny" >"$tmp/heads.json"
expect_error 1 "$tmp/heads.json: vision_config.hidden_size" "$MMRM" init --config "$tmp/heads.json" --out "$tmp/d"
[ ! -e "$tmp/d" ] || fail "a failed init left $tmp/d behind"
expect_error 1 "internlm2-chat" "$MMRM" init --config "$tiny" --out "$tmp/d" --template chatml
expect_error 2 "usage: mmrm init" "$MMRM" init --config "$tiny"
mkdir "$tmp/empty"
expect_error 1 "no config.json" "$MMRM" info "$tmp/empty"
cp "$tmp/a/config.json" "$tmp/empty/"
head -c 100 "$tmp/a/model.safetensors" >"$tmp/empty/model.safetensors"
expect_error 1 "model.safetensors" "$MMRM" info "$tmp/empty"
expect_error 2 "usage: mmrm info" "$MMRM" info

grep -q "usage: mmrm init" <<<"$("$MMRM" init --help)"
grep -q "usage: mmrm info" <<<"$("$MMRM" info --help)"
