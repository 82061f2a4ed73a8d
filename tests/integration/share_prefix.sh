#!/usr/bin/env bash
# share_prefix and packing (RewardModel.share_prefix/.packing, on by default) end to end on the
# CPU: for both algorithms, 4 training steps with the defaults give the per-step losses of
# share_prefix=false packing=false within 1e-5 relative (and each option alone too); a run
# stopped after checkpoint-2 and resumed ends bitwise on the uninterrupted run's model (and
# bias model); mmrm score's scores with the defaults equal --no-share-prefix --no-packing's
# within 1e-5 relative, and its throughput line shows fewer tokens computed than the rows hold.
set -euo pipefail
source "$(dirname "$0")/../python_prelude.sh"
d=$tmp
"$MMRM" synth --out "$d/data" --pairs 24 --seed 3 >/dev/null

train() { # algo out [extra]
    local algo=$1 out=$2
    shift 2
    "$MMRM" train "configs/scratch_$algo.ini" dataset_path="$d/data/train.jsonl" eval_dataset_path= \
        output_dir="$out" max_steps=4 per_device_train_batch_size=4 logging_steps=1 save_steps=2 \
        device=cpu num_workers=0 "$@" 2>"$out.log" || { tail -n 20 "$out.log"; exit 1; }
}
losses() { grep -o '"loss":[^,}]*' "$1/metrics.jsonl" | cut -d: -f2; }
# largest |a - b| / max(1e-3, |a|) over paired numbers on stdin
worst() { awk '{ x = $1 - $2; if (x < 0) x = -x; m = $1 < 0 ? -$1 : $1; if (m < 1e-3) m = 1e-3; if (x / m > w) w = x / m } END { printf "%.3g", w + 0 }'; }

for algo in standard robust; do
    train "$algo" "$d/${algo}_off" share_prefix=false packing=false
    train "$algo" "$d/${algo}_on"
    train "$algo" "$d/${algo}_share" packing=false
    train "$algo" "$d/${algo}_pack" share_prefix=false
    [ "$(losses "$d/${algo}_on" | wc -l)" = 4 ] || { echo "FAIL $algo: logged steps"; exit 1; }
    for v in on share pack; do
        w=$(paste <(losses "$d/${algo}_off") <(losses "$d/${algo}_$v") | worst)
        echo "$algo: per-step loss, $v vs off: worst rel $w"
        awk -v w="$w" 'BEGIN { exit !(w <= 1e-5) }' || { echo "FAIL $algo $v: losses differ"; exit 1; }
    done
    # resume: the run cut back to checkpoint-2, rerun, ends on the same bytes
    cp -r "$d/${algo}_on" "$d/${algo}_resume"
    rm -rf "$d/${algo}_resume/checkpoint-4" "$d/${algo}_resume/checkpoint-last"
    train "$algo" "$d/${algo}_resume" resume=true overwrite_output_dir=false
    grep -qi "resum" "$d/${algo}_resume.log" || { tail -n 5 "$d/${algo}_resume.log"; echo "FAIL $algo: did not resume"; exit 1; }
    for f in model.safetensors bias/model.safetensors; do
        [ -e "$d/${algo}_on/checkpoint-last/$f" ] || continue
        cmp "$d/${algo}_on/checkpoint-last/$f" "$d/${algo}_resume/checkpoint-last/$f" ||
            { echo "FAIL $algo: resumed $f differs"; exit 1; }
    done
    echo "$algo: stop + resume ends bitwise on the uninterrupted run"
done

# scoring: 16 responses per prompt, the model of the standard run
python3 - "$d" <<'PY'
import json, random, sys
d = sys.argv[1]
random.seed(7)
recs = [json.loads(l) for l in open(f"{d}/data/train.jsonl")][:6]
with open(f"{d}/score.jsonl", "w") as f:
    for r in recs:
        resp = [" ".join(random.choice(["cat", "dog", "red", "tree", "blue"]) for _ in range(random.randint(1, 30)))
                for _ in range(16)]
        f.write(json.dumps({"prompt": r["prompt"], "img_path": r["img_path"], "responses": resp}) + "\n")
PY
img_root=$(dirname "$d/data/train.jsonl")
m="$d/standard_on/checkpoint-last"
"$MMRM" score --model "$m" --input "$d/score.jsonl" --output "$d/on.jsonl" --image-root "$img_root" \
    --batch-size 16 2>"$d/on.err" || { cat "$d/on.err"; exit 1; }
"$MMRM" score --model "$m" --input "$d/score.jsonl" --output "$d/off.jsonl" --image-root "$img_root" \
    --batch-size 16 --no-share-prefix --no-packing 2>"$d/off.err" || { cat "$d/off.err"; exit 1; }
grep throughput "$d/on.err" "$d/off.err"
python3 - "$d/on.jsonl" "$d/off.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 96, (len(a), len(b))
w = 0.0
for x, y in zip(a, b):
    assert x["response"] == y["response"]
    w = max(w, abs(x["score"] - y["score"]) / max(1e-3, abs(y["score"])))
print(f"score: shared + packed vs off: worst rel {w:.3g}")
assert w <= 1e-5, w
PY
on=$(grep -o '[0-9]* tokens computed for [0-9]*' "$d/on.err")
set -- $on
[ "$1" -lt "$5" ] || { echo "FAIL score: $on (nothing saved)"; exit 1; }
off=$(grep -o '[0-9]* tokens computed for [0-9]*' "$d/off.err")
set -- $off
[ "$1" -ge "$5" ] || { echo "FAIL score off: $off"; exit 1; }
echo "share_prefix: all checks passed"
