#!/usr/bin/env bash
# `mmrm tokenize build`: a word tokenizer for any training JSONL. On a synth set: every word of
# the data is one id (no letter spelled in bytes), encode/decode round-trips every text, the
# words are a subset of synth's own vocabulary, and the same data gives the same bytes. On a
# foreign data set (pairwise and VLFeedback ratings records of its own wording, other images):
# the kept words are exactly the --min-count/--max-vocab selection python3 recomputes from the
# records (word = " ?[A-Za-z0-9]+", each prompt and distinct response once per record, most
# frequent first, ties by text), and a tiny model trained from scratch with it runs and saves
# the same tokenizer. Bad options exit 2 naming the option.
set -euo pipefail
source "$(dirname "$0")/../python_prelude.sh"

"$MMRM" tokenize build --help | grep -q "usage: mmrm tokenize build"
"$MMRM" synth --out "$tmp/s" --pairs 120 --seed 6 >/dev/null 2>&1
"$MMRM" tokenize build --data "$tmp/s/train.jsonl" --data "$tmp/s/test_id.jsonl" --out "$tmp/tok" > "$tmp/sum.txt"
grep -q "vocab_size" "$tmp/sum.txt"
"$MMRM" tokenize build --data "$tmp/s/train.jsonl" --data "$tmp/s/test_id.jsonl" --out "$tmp/tok2" >/dev/null
cmp -s "$tmp/tok/mmrm_tokenizer.json" "$tmp/tok2/mmrm_tokenizer.json" || { echo "same data, different tokenizer"; exit 1; }

# every text of the set, as JSON strings, through encode and decode
python3 - "$tmp" > "$tmp/texts.jsonl" <<'PY'
import json, sys
tmp = sys.argv[1]
for name in ("train", "test_id"):
    for line in open(f"{tmp}/s/{name}.jsonl"):
        r = json.loads(line)
        texts = [r["prompt"]] + ([r["chosen"], r["rejected"]] if "chosen" in r else r["completions"]["response"])
        for t in texts: print(json.dumps(t))
PY
"$MMRM" tokenize --tokenizer "$tmp/tok" --jsonl --input "$tmp/texts.jsonl" > "$tmp/ids.txt"
"$MMRM" tokenize --tokenizer "$tmp/tok" --jsonl --decode --input "$tmp/ids.txt" > "$tmp/back.jsonl"
cmp -s "$tmp/texts.jsonl" "$tmp/back.jsonl" || { echo "encode/decode does not round-trip"; exit 1; }
python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
ours = {w["content"] for w in json.load(open(f"{tmp}/tok/mmrm_tokenizer.json"))["words"]}
synth = {w["content"] for w in json.load(open(f"{tmp}/s/mmrm_tokenizer.json"))["words"]}
assert ours and ours <= synth, sorted(ours - synth)
letters = sum(1 for l in open(f"{tmp}/ids.txt") for i in json.loads(l) if i < 256 and chr(i).isalpha())
assert letters == 0, f"{letters} letters spelled in bytes"
PY

# a foreign data set: its own wording, both training formats, fixture images
mkdir "$tmp/f" "$tmp/f/img"
cp tests/fixtures/images/rgb_37x23.png tests/fixtures/images/rgb_61x113.png "$tmp/f/img/"
python3 - "$tmp/f" <<'PY'
import json, random, sys
d = sys.argv[1]
random.seed(5)
vocab = ["The", "dog", "cat", "sits", "runs", "on", "a", "mat", "near", "tree", "2", "cars", "42", "blue", "sky",
         "photo", "shows", "Describe", "image", "what", "is", "here", "zebra", "qu1x"]
text = lambda: " ".join(random.choice(vocab) for _ in range(random.randint(2, 9))) + random.choice([".", "?", "!", ""])
imgs = ["img/rgb_37x23.png", "img/rgb_61x113.png"]
with open(f"{d}/data.jsonl", "w") as f:
    for i in range(40):
        if i % 4 == 3:
            resp = [text(), text(), text()]
            f.write(json.dumps({"prompt": text(), "img_path": imgs[i % 2], "completions": {
                "annotations": [{"Helpfulness": {"Rating": str(x)}} for x in (5, 3, 1)],
                "model": ["a", "b", "c"], "response": resp}}) + "\n")
        else:
            f.write(json.dumps({"id": i, "prompt": text(), "img_path": imgs[i % 2], "chosen": text(),
                                "rejected": text()}) + "\n")
PY
"$MMRM" tokenize build --data "$tmp/f/data.jsonl" --out "$tmp/ftok" --min-count 3 --max-vocab 15 >/dev/null
python3 - "$tmp" <<'PY'
import collections, json, re, sys
tmp = sys.argv[1]
counts = collections.Counter()
for line in open(f"{tmp}/f/data.jsonl"):
    r = json.loads(line)
    texts = [r["prompt"]] + list(dict.fromkeys([r["chosen"], r["rejected"]] if "chosen" in r else r["completions"]["response"]))
    for t in texts: counts.update(re.findall(r" ?[A-Za-z0-9]+", t))
want = [w for w, n in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if n >= 3][:15]
got = [w["content"] for w in json.load(open(f"{tmp}/ftok/mmrm_tokenizer.json"))["words"]]
assert got == sorted(want), (got, sorted(want))
PY

# a few training steps from scratch on the foreign data with its tokenizer
v=$(grep -o '"vocab_size":[[:space:]]*[0-9]*' "$tmp/ftok/mmrm_tokenizer.json" | grep -o '[0-9]*$')
sed -E "s/\"vocab_size\": *[0-9]+/\"vocab_size\": $v/" configs/model/tiny.json > "$tmp/model.json"
"$MMRM" train configs/scratch_standard.ini init_model_config="$tmp/model.json" tokenizer_path="$tmp/ftok" \
    dataset_path="$tmp/f/data.jsonl" eval_dataset_path= output_dir="$tmp/run" max_steps=3 \
    per_device_train_batch_size=4 report_to=none 2> "$tmp/train.log" || { tail -n 20 "$tmp/train.log"; exit 1; }
grep -q "done: 3 steps" "$tmp/train.log" || { echo "training did not finish 3 steps"; tail -n 5 "$tmp/train.log"; exit 1; }
cmp -s "$tmp/ftok/mmrm_tokenizer.json" "$tmp/run/checkpoint-last/mmrm_tokenizer.json" ||
    { echo "the trained model does not carry the built tokenizer"; exit 1; }

fails() { # want-status, text, args...
    local want=$1 text=$2 rc=0
    shift 2
    "$MMRM" tokenize build "$@" >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" = "$want" ] || { echo "tokenize build $*: exit $rc, want $want"; cat "$tmp/err"; exit 1; }
    grep -qF -- "$text" "$tmp/err" || { echo "tokenize build $*: message lacks '$text':"; cat "$tmp/err"; exit 1; }
}
fails 2 "--data FILE.jsonl is required" --out "$tmp/x"
fails 2 "--out DIR is required" --data "$tmp/f/data.jsonl"
fails 2 "--min-count must be an integer >= 1 (got '0')" --data "$tmp/f/data.jsonl" --out "$tmp/x" --min-count 0
fails 2 "--max-vocab must be an integer" --data "$tmp/f/data.jsonl" --out "$tmp/x" --max-vocab 9x
fails 2 "unknown option '--vocab'" --data "$tmp/f/data.jsonl" --out "$tmp/x" --vocab 3
fails 1 "nothing.jsonl" --data "$tmp/nothing.jsonl" --out "$tmp/x"
[ ! -e "$tmp/x" ] || { echo "a failed build created the output folder"; exit 1; }
