#!/usr/bin/env bash
# cuda_graphs = true on the CPU emulator (build/emu_mmrm; tests/cuda_emu records a stream
# capture's launches, copies and cuBLASLt products with their arguments and replays them):
# for both objectives, training with each micro-batch captured as a CUDA graph and launched
# must equal eager training bitwise (every step's loss, the final checkpoint's sha256), over
# steps whose rows have different lengths within one T bucket and at least two buckets
# (padded rows, t_bucket = 32: with a short system message the synth rows are 111-149
# tokens long, buckets 128 and 160), with graphs both
# captured and replayed and the log saying so; the first micro-batch must fall back to
# eager (its GEMM plans are not cached yet: a heuristic query cannot be captured) and say why,
# and so must a whole run whose gradient all-reduce overlaps backward.
# Packing (the compact rows: the stream's length rounded up to t_bucket with a tail of its own):
# micro-batches of different stream lengths within one bucket replay a graph and training
# equals eager bitwise (standard packed, and shortcut-aware with both layouts on: the blank
# rows' stream too); without the bucket (t_bucket = 1) the same run replays nothing and its
# GEMM plan cache misses more; with one bucket for every batch the misses ("plans: H hits,
# M misses", logged on a GPU) are the same after 1 step and after 4: bounded by the buckets x
# GEMM shapes, not by the steps.
# Stale arguments: every graph run sets EMU_GRAPH_STRICT=1, under which the emulator stops
# when a new capture of a key changes any argument (pointer or value) of any node: a replay
# of the old exec would then have run stale arguments. That this check fires (and that the
# update gives a replay its new arguments) is shown by the parity suite's graph group, whose
# second capture changes a by-value factor: it passes plainly and stops under the strict mode.
set -euo pipefail
steps=8
# Under ASan/UBSan (build/san, where the emulator runs ~3x slower) a representative subset:
# standard unpacked with accumulation (the eager fallback of the first micro-batch, two
# buckets), shortcut-aware packed with prefix sharing (two stores, the packed key), bf16 with
# recompute, the NCCL fallback and the parity group; the shortcut-aware unpacked, standard
# packed, t_bucket = 1 and one-bucket plan-count runs only repeat those code paths with other
# lengths or counts, and the plain pass runs them all.
sanitized=0
case "$MMRM" in */san/*) sanitized=1 ;; esac
emu="$(dirname "$MMRM")/emu_mmrm"
[ -x "$emu" ] || { echo "FAIL: $emu is missing (make $emu)"; exit 1; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$emu" synth --out "$d/data" --pairs 24 --seed 3 > /dev/null
# the tiny model with a short system message: shorter rows, a faster emulated run
sed 's/^{/{ "system_message": "Rate the answer.",/' configs/model/tiny.json > "$d/tiny.json"

train() { # algo out graphs [extra]
    local algo=$1 out=$2 graphs=$3
    shift 3
    "$emu" train "configs/scratch_$algo.ini" dataset_path="$d/data/train.jsonl" eval_dataset_path= \
        init_model_config="$d/tiny.json" $( [ "$algo" = robust ] && echo init_bias_model_config="$d/tiny.json") \
        output_dir="$out" max_steps=$steps per_device_train_batch_size=1 logging_steps=1 save_steps=0 \
        device=cuda share_prefix=false packing=false t_bucket=32 \
        cuda_graphs="$graphs" precision=fp32 "$@" 2> "$out.log"
}
misses() { sed -n 's/.*plans: [0-9]* hits, \([0-9]*\) misses.*/\1/p' "$1"; }
losses() { grep -o '"loss":[^,}]*' "$1/metrics.jsonl" | cut -d: -f2; }
sums() { # the final checkpoint's files
    (cd "$1/checkpoint-last" && sha256sum model.safetensors $( [ -f bias/model.safetensors ] && echo bias/model.safetensors))
}
same() { # eager graphs what
    [ "$(losses "$1")" = "$(losses "$2")" ] || { echo "FAIL $3: per-step losses differ"; paste <(losses "$1") <(losses "$2"); exit 1; }
    [ "$(losses "$1" | wc -l)" = $steps ] || { echo "FAIL $3: $(losses "$1" | wc -l) logged steps, want $steps"; exit 1; }
    [ "$(sums "$1")" = "$(sums "$2")" ] || { echo "FAIL $3: final checkpoints differ"; sums "$1"; sums "$2"; exit 1; }
}
counts() { # log -> "captured replayed eager"
    sed -n 's/.*cuda_graphs: \([0-9]*\) graph(s) captured, \([0-9]*\) replay(s), \([0-9]*\) micro.*/\1 \2 \3/p' "$1"
}

# standard: 4 steps of 2 accumulated micro-batches; robust: 8 steps of one
algos="standard robust"
[ $sanitized = 1 ] && algos=standard
for algo in $algos; do
    steps=8 accum=1
    [ "$algo" = standard ] && steps=4 accum=2
    train "$algo" "$d/${algo}_eager" false gradient_accumulation_steps=$accum || { tail -n 20 "$d/${algo}_eager.log"; exit 1; }
    EMU_GRAPH_STRICT=1 train "$algo" "$d/${algo}_graphs" true gradient_accumulation_steps=$accum ||
        { tail -n 20 "$d/${algo}_graphs.log"; exit 1; }
    same "$d/${algo}_eager" "$d/${algo}_graphs" "$algo"
    read -r cap rep eager <<<"$(counts "$d/${algo}_graphs.log")"
    echo "$algo: cuda_graphs = true equals eager bitwise over $steps steps of $accum micro-batch(es): $cap graph(s) captured, $rep replay(s), $eager eager micro-batch(es)"
    [ "${cap:-0}" -ge 2 ] && [ "${rep:-0}" -ge 1 ] ||
        { echo "FAIL $algo: want >= 2 graphs (two T buckets) and >= 1 replay"; exit 1; }
    grep -q "step 1: a micro-batch runs eagerly: a cuBLASLt plan-cache miss" "$d/${algo}_graphs.log" ||
        { echo "FAIL $algo: the first micro-batch did not fall back with its reason"; tail -n 20 "$d/${algo}_graphs.log"; exit 1; }
done

# packing: standard packed alone (4 steps of 2 micro-batches), shortcut-aware with prefix
# sharing and packing (the defaults; 8 steps of one, t_bucket = 64: its key holds four
# lengths, the main and blank rows' and their streams', and the tiles)
algos="standard robust"
[ $sanitized = 1 ] && algos=robust
for algo in $algos; do
    steps=4 accum=2 lay="share_prefix=false packing=true"
    [ "$algo" = robust ] && steps=8 accum=1 lay="share_prefix=true packing=true t_bucket=64"
    # shellcheck disable=SC2086
    train "$algo" "$d/${algo}_pk_eager" false gradient_accumulation_steps=$accum $lay || { tail -n 20 "$d/${algo}_pk_eager.log"; exit 1; }
    # shellcheck disable=SC2086
    EMU_GRAPH_STRICT=1 train "$algo" "$d/${algo}_pk_graphs" true gradient_accumulation_steps=$accum $lay ||
        { tail -n 20 "$d/${algo}_pk_graphs.log"; exit 1; }
    same "$d/${algo}_pk_eager" "$d/${algo}_pk_graphs" "$algo packing"
    read -r cap rep eager <<<"$(counts "$d/${algo}_pk_graphs.log")"
    echo "$algo, $lay: graphs equal eager bitwise over $steps steps of $accum micro-batch(es): $cap captured, $rep replay(s), $eager eager; $(grep -o 'plans: .*' "$d/${algo}_pk_graphs.log")"
    [ "${rep:-0}" -ge 1 ] || { echo "FAIL $algo packing: no replay within a bucket"; exit 1; }
done
if [ $sanitized = 0 ]; then
# the same packed run without the bucket: every micro-batch a new shape
steps=4
EMU_GRAPH_STRICT=1 train standard "$d/pk_nobucket" true gradient_accumulation_steps=2 share_prefix=false packing=true t_bucket=1 ||
    { tail -n 20 "$d/pk_nobucket.log"; exit 1; }
read -r cap rep eager <<<"$(counts "$d/pk_nobucket.log")"
m1=$(misses "$d/pk_nobucket.log") m32=$(misses "$d/standard_pk_graphs.log")
echo "packed, t_bucket = 1: $cap captured, $rep replay(s), $eager eager; plan misses $m1 (t_bucket = 32: $m32)"
[ "${rep:-1}" = 0 ] && [ "${m1:-0}" -gt "${m32:-0}" ] ||
    { echo "FAIL: the unbucketed packed run replayed or missed no more plans than the bucketed one"; exit 1; }
# one bucket for every batch (rows: 512 = max_length; streams of two rows: 512): the misses
# of the first micro-batch are all there are
for s in 1 4; do
    steps=$s
    train standard "$d/pk_one$s" false gradient_accumulation_steps=2 share_prefix=false packing=true t_bucket=512 ||
        { tail -n 20 "$d/pk_one$s.log"; exit 1; }
done
a=$(misses "$d/pk_one1.log") b=$(misses "$d/pk_one4.log")
echo "packed, one bucket: plan misses $a after 1 step, $b after 4 ($(grep -o 'plans: .*' "$d/pk_one4.log"))"
[ -n "$a" ] && [ "$a" -gt 0 ] && [ "$a" = "$b" ] || { echo "FAIL: plan misses grow with the steps within one bucket"; exit 1; }
fi

# bf16 (activations in bf16, the staging arena of one op's operands) with recompute segments
# (the arena compacted by overlapping device copies, captured too)
steps=6
train standard "$d/bf16_eager" false precision=bf16 grad_checkpoint=true || { tail -n 20 "$d/bf16_eager.log"; exit 1; }
EMU_GRAPH_STRICT=1 train standard "$d/bf16_graphs" true precision=bf16 grad_checkpoint=true ||
    { tail -n 20 "$d/bf16_graphs.log"; exit 1; }
same "$d/bf16_eager" "$d/bf16_graphs" "bf16 + grad_checkpoint"
read -r cap rep eager <<<"$(counts "$d/bf16_graphs.log")"
echo "bf16 + grad_checkpoint: equal bitwise over $steps steps: $cap graph(s) captured, $rep replay(s), $eager eager"
[ "${rep:-0}" -ge 1 ] || { echo "FAIL bf16: no replay"; exit 1; }

# a run that cannot use graphs at all says why: the bucketed all-reduce overlapping backward
# (one process through the NCCL path, MMRM_NCCL=1) would run collectives inside the capture
MMRM_NCCL=1 steps=1 train standard "$d/nccl" true || { tail -n 20 "$d/nccl.log"; exit 1; }
grep -q "cuda_graphs = true: every micro-batch runs eagerly: the gradient all-reduce runs during backward" "$d/nccl.log" ||
    { echo "FAIL MMRM_NCCL=1: no eager fallback with its reason"; tail -n 20 "$d/nccl.log"; exit 1; }
grep -q "cuda_graphs: [0-9]* graph" "$d/nccl.log" && { echo "FAIL MMRM_NCCL=1: graphs were used"; exit 1; }
echo "MMRM_NCCL=1 (all-reduce during backward): eager, reason logged"

# the emulator's argument check fires: the parity suite's graph group captures a scale by one
# factor, then under the same key by another (the update must give the replay the new factor)
par="$(dirname "$MMRM")/emu_parity"
[ -x "$par" ] || { echo "FAIL: $par is missing (make $par)"; exit 1; }
"$par" --precision fp32 --only graph > "$d/par.log" 2>&1 || { cat "$d/par.log"; echo "FAIL the graph parity group"; exit 1; }
echo "emu_parity --only graph: $(tail -n 1 "$d/par.log")"
if EMU_GRAPH_STRICT=1 "$par" --precision fp32 --only graph > "$d/strict.log" 2>&1; then
    echo "FAIL EMU_GRAPH_STRICT=1 did not stop the update that changed an argument"; exit 1
fi
grep -q "EMU_GRAPH_STRICT=1.*other arguments than the exec holds" "$d/strict.log" ||
    { echo "FAIL strict: not stopped by the argument check"; tail -n 5 "$d/strict.log"; exit 1; }
echo "EMU_GRAPH_STRICT=1 stops the changed factor: $(grep -o 'node [0-9]* of [0-9]*, [^,]*' "$d/strict.log" | head -1)"
