#!/usr/bin/env bash
# max_tokens_per_batch (train/chunks.c) end to end on the CPU, for both objectives:
# - a budget that splits every micro-batch, and one below a single pair (each pair alone, said
#   once in the log), give the per-step losses, the evaluation and the final parameters (main
#   and bias model, as ||a - b|| / ||a||) of the run without a budget within 1e-6 relative
#   (its evaluation's mean margin within 1e-5); also with LoRA + grad_checkpoint, and on 2
#   ranks under mpirun (where present; there also bitwise with the bucketed all-reduce
#   started during the last chunk's backward);
# - the forwards per step (metrics.jsonl) and per evaluation are what the budget implies,
#   computed here from the rows' tokens (`mmrm tokenize --template`) with the layout's
#   arithmetic (a pair's rows share their common prefix; the bias model's rows of a chunk all
#   share theirs; packed, no padding): on a data set of equal-cost pairs at and one token
#   below the cost of 1, 2, 3 and 4 pairs, on varied data for the training steps (a budget
#   that fits any 2 pairs and no 4) and for the evaluation (unshuffled, so chunked here pair
#   by pair);
# - a run stopped after checkpoint-2 and resumed with the budget ends bitwise on the
#   uninterrupted one (models and metrics.jsonl);
# - a negative or non-integer budget is an error naming the key.
set -euo pipefail
command -v python3 >/dev/null 2>&1 || { echo "skipped: python3 not installed"; exit 77; }
d=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] && echo "kept $d" || rm -rf "$d"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
"$MMRM" synth --out "$d/data" --pairs 8 --seed 5 >/dev/null 2>&1
"$MMRM" init --config configs/model/tiny.json --out "$d/model" >/dev/null 2>&1
head -n 16 "$d/data/test_id.jsonl" >"$d/data/train16.jsonl" # 2 steps an epoch; C(16, 4) subsets below
P=4 ACCUM=2

train() { # algo out [key=value ...]
    local algo=$1 out=$2
    shift 2
    "$MMRM" train "configs/scratch_$algo.ini" dataset_path="$d/data/train16.jsonl" \
        eval_dataset_path="$d/data/test_ood.jsonl" output_dir="$out" max_steps=4 \
        per_device_train_batch_size=$P gradient_accumulation_steps=$ACCUM logging_steps=1 \
        save_steps=2 device=cpu num_workers=0 report_to=none "$@" 2>"$out.log" ||
        { tail -n 20 "$out.log"; echo "FAIL: train $algo $*"; exit 1; }
}
field() { grep -v eval_ "$1/metrics.jsonl" | grep -o "\"$2\":[^,}]*" | cut -d: -f2; }
efield() { grep eval_ "$1/metrics.jsonl" | grep -o "\"$2\":[^,}]*" | cut -d: -f2; }
# largest |a - b| / max(1e-3, |a|) over paired numbers on stdin
worst() { awk '{ x = $1 - $2; if (x < 0) x = -x; m = $1 < 0 ? -$1 : $1; if (m < 1e-3) m = 1e-3; if (x / m > w) w = x / m; n++ }
               END { if (n == 0) { print "nothing"; exit } printf "%.3g", w + 0 }'; }
within() { awk -v w="$1" -v t="$2" 'BEGIN { exit !(w != "nothing" && w <= t) }'; }

# the rows' tokens and the layout's arithmetic, independent of train/chunks.c
cat >"$d/cost.py" <<'PY'
import itertools, json, subprocess, sys

def rows(mmrm, model, path):
    """[(chosen ids, rejected ids)] of a pairwise JSONL file, one tile per image"""
    recs = [json.loads(l) for l in open(path) if l.strip()]
    q = "".join(json.dumps({"prompt": r["prompt"], "response": r[k], "tiles": 1}) + "\n"
                for r in recs for k in ("chosen", "rejected"))
    out = subprocess.run([mmrm, "tokenize", "--model", model, "--template"], input=q, text=True,
                         capture_output=True, check=True).stdout.splitlines()
    ids = [json.loads(l)["ids"] for l in out]
    return [(ids[2 * i], ids[2 * i + 1]) for i in range(len(recs))]

def group(rs):
    """tokens of rows computed as one group: their common prefix once (short of every row's
    last token), then each row's rest"""
    if len(rs) == 1:
        return len(rs[0])
    p = 0
    while p < min(map(len, rs)) - 1 and all(r[p] == rs[0][p] for r in rs):
        p += 1
    return p + sum(len(r) - p for r in rs)

def cost(pairs, bias):
    """a chunk's tokens: each pair's two rows (its own image), and with the bias model all
    the chunk's rows (one blank image)"""
    t = sum(group([c, r]) for c, r in pairs)
    return t + (group([x for p in pairs for x in p]) if bias else 0)

def chunks(pairs, budget, bias):
    """greedy consecutive chunks of whole pairs within the budget"""
    n, i = 0, 0
    while i < len(pairs):
        j = i + 1
        while j < len(pairs) and cost(pairs[i:j + 1], bias) <= budget:
            j += 1
        n, i = n + 1, j
    return n

if __name__ == "__main__":
    mmrm, model, what = sys.argv[1:4]
    if what == "uniform":  # the equal-cost set: cost of k = 1..4 pairs, both objectives
        pr = rows(mmrm, model, sys.argv[4])
        for bias in (0, 1):
            cs = {cost([p], bias) for p in pr}
            assert len(cs) == 1, f"pairs of unequal cost {cs}"
            print(" ".join(str(cost(pr[:k], bias)) for k in range(1, 5)), cost(pr[:1], 0))
    elif what == "mid":  # a budget fitting any 2 pairs of the training set, and no 4
        P, bias = int(sys.argv[5]), int(sys.argv[6])
        pr = rows(mmrm, model, sys.argv[4])
        b = max(cost(list(s), bias) for s in itertools.combinations(pr, 2))
        low = min(cost(list(s), bias) for s in itertools.combinations(pr, P))
        assert low > b, f"some {P} pairs fit in {b} tokens ({low}): no split guaranteed"
        print(b, min(cost([p], bias) for p in pr))
    elif what == "eval":  # forwards of an unshuffled evaluation: batches of P, tail left out
        P, budget = int(sys.argv[5]), int(sys.argv[6])
        pr = rows(mmrm, model, sys.argv[4])
        batches = [pr[i:i + P] for i in range(0, len(pr) - len(pr) % P, P)]
        print(sum(chunks(b, budget, 0) if budget else 1 for b in batches))
PY
cost() { python3 "$d/cost.py" "$MMRM" "$d/model" "$@"; }

# params A B: ||a - b|| / ||a|| over the tensors of two safetensors files, the k_proj.bias
# ones apart: they have no true gradient (softmax ignores a shift shared by a row's scores),
# so AdamW scales the rounding noise of their gradient up to lr-sized steps either way; and
# not element by element, for the same reason wherever a gradient element is near 0.
params() {
    python3 - "$1" "$2" <<'PY'
import json, math, struct, sys
from array import array
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", v["dtype"]
        s, e = v["data_offsets"]
        out[k] = array("f", b[8 + n + s:8 + n + e])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys() and a
for k in [k for k in a if k.endswith("k_proj.bias")]:
    del a[k]
d2 = sum((x - y) ** 2 for k in a for x, y in zip(a[k], b[k]))
a2 = sum(x * x for k in a for x in a[k])
print(f"{math.sqrt(d2 / a2):.3g}")
PY
}

same_run() { # label ref got: losses and final models within 1e-6 relative, the evaluation's
    # mean margin within 1e-5 (a mean of reward differences: the rewards' rounding, relative
    # to a margin near 0)
    local wl wm w f pw
    wl=$(paste <(field "$2" loss) <(field "$3" loss) | worst)
    within "$wl" 1e-6 || { echo "FAIL $1: per-step losses differ (worst rel $wl)"; exit 1; }
    [ "$(field "$2" loss | wc -l)" = 4 ] || { echo "FAIL $1: 4 steps expected"; exit 1; }
    [ "$(efield "$2" eval_accuracy)" = "$(efield "$3" eval_accuracy)" ] || { echo "FAIL $1: eval accuracy"; exit 1; }
    wm=$(paste <(efield "$2" eval_mean_margin) <(efield "$3" eval_mean_margin) | worst)
    within "$wm" 1e-5 || { echo "FAIL $1: eval margin differs (worst rel $wm)"; exit 1; }
    w=""
    for f in model.safetensors bias/model.safetensors adapter_model.safetensors; do
        [ -e "$2/checkpoint-last/$f" ] || continue
        pw=$(params "$2/checkpoint-last/$f" "$3/checkpoint-last/$f")
        within "$pw" 1e-6 || { echo "FAIL $1: $f differs (relative norm $pw)"; exit 1; }
        w="$w, $f $pw"
    done
    echo "$1: same run (worst rel: losses $wl, eval margin $wm$w)"
}
forwards_are() { # label dir want: every step's forwards
    local got
    got=$(field "$2" forwards | sort -u | tr '\n' ' ')
    [ "$got" = "$3 " ] || { echo "FAIL $1: forwards per step '$got', want $3"; exit 1; }
}

for algo in standard robust; do
    bias=$([ $algo = robust ] && echo 1 || echo 0)
    train $algo "$d/${algo}_off"
    forwards_are "$algo off" "$d/${algo}_off" $ACCUM
    set -- $(cost mid "$d/data/train16.jsonl" $P $bias)
    mid=$1 single=$2
    # every pair alone: a budget below the smallest pair's tokens
    train $algo "$d/${algo}_alone" max_tokens_per_batch=$((single - 1))
    same_run "$algo, each pair alone" "$d/${algo}_off" "$d/${algo}_alone"
    forwards_are "$algo alone" "$d/${algo}_alone" $((ACCUM * P))
    [ "$(grep -c 'over max_tokens_per_batch' "$d/${algo}_alone.log")" = 1 ] ||
        { echo "FAIL $algo: the pair over the budget is not said once"; exit 1; }
    # any 2 pairs fit, no 4: 2 forwards per micro-batch
    train $algo "$d/${algo}_mid" max_tokens_per_batch=$mid
    same_run "$algo, budget $mid" "$d/${algo}_off" "$d/${algo}_mid"
    forwards_are "$algo budget $mid" "$d/${algo}_mid" $((ACCUM * 2))
    ! grep -q 'over max_tokens_per_batch' "$d/${algo}_mid.log" || { echo "FAIL $algo: no pair is over $mid"; exit 1; }
    for b in 0 $((single - 1)) $mid; do
        run=$([ $b = 0 ] && echo off || ([ $b = $mid ] && echo mid || echo alone))
        want=$(cost eval "$d/data/test_ood.jsonl" $P $b)
        got=$(efield "$d/${algo}_$run" eval_forwards)
        [ "$got" = "$want" ] || { echo "FAIL $algo: evaluation with budget $b took $got forwards, want $want"; exit 1; }
    done
    echo "$algo: forwards per step ($ACCUM, $((ACCUM * P)), $((ACCUM * 2))) and per evaluation as the budgets imply"
    # resume with the budget: cut back to checkpoint-2, rerun
    cp -r "$d/${algo}_mid" "$d/${algo}_resume"
    rm -rf "$d/${algo}_resume/checkpoint-4" "$d/${algo}_resume/checkpoint-last"
    train $algo "$d/${algo}_resume" max_tokens_per_batch=$mid overwrite_output_dir=false
    grep -q "resuming from" "$d/${algo}_resume.log" || { echo "FAIL $algo: did not resume"; exit 1; }
    for f in model.safetensors bias/model.safetensors metrics.jsonl; do
        a="$d/${algo}_mid/checkpoint-last/$f" b="$d/${algo}_resume/checkpoint-last/$f"
        [ $f = metrics.jsonl ] && a="$d/${algo}_mid/$f" b="$d/${algo}_resume/$f"
        [ -e "$a" ] || continue
        cmp "$a" "$b" || { echo "FAIL $algo: resumed $f differs"; exit 1; }
    done
    echo "$algo: stop + resume with the budget ends bitwise on the uninterrupted run"
    # LoRA + gradient checkpointing
    lora=(lora_r=4 lora_alpha=8 grad_checkpoint=true)
    train $algo "$d/${algo}_lora_off" "${lora[@]}"
    train $algo "$d/${algo}_lora_mid" "${lora[@]}" max_tokens_per_batch=$mid
    forwards_are "$algo lora" "$d/${algo}_lora_mid" $((ACCUM * 2))
    same_run "$algo, LoRA + grad_checkpoint, budget $mid" "$d/${algo}_lora_off" "$d/${algo}_lora_mid"
done

# the budget's boundaries: pairs of equal cost, budgets at and one token below k pairs' cost
python3 - "$d/data" <<'PY'
import json, random, sys
d = sys.argv[1]
random.seed(11)
src = [json.loads(l) for l in open(f"{d}/test_id.jsonl")]
with open(f"{d}/uniform.jsonl", "w") as f:
    for r in src[:24]:
        # chosen and rejected differ from their first letter on, every pair alike in length
        c = random.choice("abcdefghijklm") + "".join(random.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(11))
        j = random.choice("nopqrstuvwxyz") + "".join(random.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(29))
        f.write(json.dumps({"prompt": "Which colour is the shape?", "img_path": r["img_path"],
                            "chosen": c, "rejected": j}) + "\n")
PY
cost uniform "$d/data/uniform.jsonl" >"$d/uniform.cost"
for algo in standard robust; do
    read -r c1 c2 c3 c4 main1 < <(sed -n "$([ $algo = robust ] && echo 2 || echo 1)p" "$d/uniform.cost")
    # budget -> pairs per chunk k -> ACCUM x ceil(P / k) forwards per step
    for spec in "$((c1 - 1)):1" "$c1:1" "$((c2 - 1)):1" "$c2:2" "$((c3 - 1)):2" "$c3:3" "$((c4 - 1)):3" "$c4:4"; do
        b=${spec%:*} k=${spec#*:}
        train $algo "$d/u_${algo}_$b" dataset_path="$d/data/uniform.jsonl" eval_dataset_path= max_steps=2 save_steps=0 \
            max_tokens_per_batch=$b
        forwards_are "$algo uniform budget $b" "$d/u_${algo}_$b" $((ACCUM * ((P + k - 1) / k)))
        said=$(grep -c 'over max_tokens_per_batch' "$d/u_${algo}_$b.log" || true)
        [ "$said" = "$([ "$b" -lt "$c1" ] && echo 1 || echo 0)" ] || { echo "FAIL $algo budget $b: over-budget message said $said times"; exit 1; }
    done
    echo "$algo: equal-cost pairs of $c1 tokens each (k pairs: $c1 $c2 $c3 $c4): forwards at each boundary as implied"
done

# data parallel: each rank chunks its own micro-batch
if command -v mpirun >/dev/null && grep -q "multi-process: mpi" <<<"$("$MMRM" version)"; then
    mpi="mpirun --allow-run-as-root --oversubscribe -np 2"
    for algo in standard robust; do
        # 1o: each pair alone with the gradient buckets started during the last chunk's backward
        for b in 0 1 1o; do
            out="$d/mpi_${algo}_$b"
            extra=()
            [ $b = 1o ] && extra=(overlap_grad_reduce=true grad_bucket_mb=0.01)
            $mpi "$MMRM" train "configs/scratch_$algo.ini" dataset_path="$d/data/train16.jsonl" eval_dataset_path= \
                output_dir="$out" max_steps=4 per_device_train_batch_size=2 gradient_accumulation_steps=$ACCUM \
                logging_steps=1 save_steps=0 device=cpu num_workers=0 report_to=none max_tokens_per_batch=${b%o} \
                "${extra[@]}" 2>"$out.log" || { tail -n 20 "$out.log"; echo "FAIL: mpirun train"; exit 1; }
        done
        w=$(paste <(field "$d/mpi_${algo}_0" loss) <(field "$d/mpi_${algo}_1" loss) | worst)
        within "$w" 1e-6 || { echo "FAIL $algo on 2 ranks: losses differ (worst rel $w)"; exit 1; }
        forwards_are "$algo 2 ranks" "$d/mpi_${algo}_1" $((2 * ACCUM * 2))
        cmp "$d/mpi_${algo}_1/checkpoint-last/model.safetensors" "$d/mpi_${algo}_1o/checkpoint-last/model.safetensors" ||
            { echo "FAIL $algo on 2 ranks: the overlapped all-reduce changed the model"; exit 1; }
        grep -q "started during backward" "$d/mpi_${algo}_1o.log" || { echo "FAIL $algo: no overlapped all-reduce"; exit 1; }
        echo "$algo on 2 ranks: each pair alone gives the losses within 1e-6 (worst rel $w), $((2 * ACCUM * 2)) forwards per step, the same bytes with the all-reduce overlapping backward"
    done
else
    echo "note: no mpirun or no MPI build: the 2-rank check did not run"
fi

# bad values name the key
for v in -1 two; do
    if "$MMRM" train configs/scratch_standard.ini dataset_path="$d/data/test_id.jsonl" output_dir="$d/bad" \
        max_tokens_per_batch=$v 2>"$d/bad.err"; then
        echo "FAIL: max_tokens_per_batch=$v accepted"; exit 1
    fi
    grep -q "max_tokens_per_batch = '*$v" "$d/bad.err" || { cat "$d/bad.err"; echo "FAIL: the error does not name the key"; exit 1; }
done
echo "max_tokens: all checks passed"
