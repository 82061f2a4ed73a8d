#!/usr/bin/env bash
# `mmrm synth --task/--cue`: --help lists them; every task and cue kind generates, the same
# seed gives the same bytes and README.txt documents the choice; the defaults give the same
# bytes as before the options existed (checked against a reference binary: REF_MMRM, default
# /work/main/build/mmrm when present; without one that check is skipped with a note); bad
# values exit 2 naming the option and the accepted values.
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

help=$("$MMRM" synth --help)
for w in "--task T" "--cue C" mixed hedge; do
    grep -qF -- "$w" <<<"$help" || { echo "synth --help lacks '$w'"; exit 1; }
done

for task in color count position size mixed; do
    "$MMRM" synth --out "$tmp/$task" --pairs 40 --seed 2 --task "$task" --cue style >/dev/null 2>&1
    grep -q -- "--task $task --cue style" "$tmp/$task/README.txt" || { echo "README.txt of $task lacks the options"; exit 1; }
done
for cue in trailing length hedge position; do
    "$MMRM" synth --out "$tmp/c_$cue" --pairs 40 --seed 2 --task count --cue "$cue" >/dev/null 2>&1
    grep -qi "cue $cue" "$tmp/c_$cue/README.txt" || { echo "README.txt of cue $cue does not describe it"; exit 1; }
done
"$MMRM" synth --out "$tmp/again" --pairs 40 --seed 2 --task=mixed --cue=style >/dev/null 2>&1
diff -r "$tmp/mixed" "$tmp/again" >/dev/null || { echo "same seed, task and cue, different output"; exit 1; }
grep -q '"category":"count"' "$tmp/mixed/train.jsonl" || { echo "mixed has no count question"; exit 1; }
grep -q '"category":"size"' "$tmp/mixed/train.jsonl" || { echo "mixed has no size question"; exit 1; }

ref=${REF_MMRM:-/work/main/build/mmrm}
if [ -x "$ref" ] && ! "$ref" synth --help | grep -q -- "--task"; then
    "$ref" synth --out "$tmp/ref" --pairs 120 --seed 9 >/dev/null 2>&1
    "$MMRM" synth --out "$tmp/new" --pairs 120 --seed 9 >/dev/null 2>&1
    diff -r "$tmp/ref" "$tmp/new" >/dev/null || { echo "the default output differs from $ref's"; exit 1; }
    "$MMRM" synth --out "$tmp/new2" --pairs 120 --seed 9 --task color --cue trailing >/dev/null 2>&1
    diff -r "$tmp/ref" "$tmp/new2" >/dev/null || { echo "--task color --cue trailing differs from $ref's default"; exit 1; }
else
    echo "note: no reference binary without --task (REF_MMRM); byte identity with the old default not checked"
fi

fails() { # text the message must hold, args...
    local text=$1 rc=0
    shift
    "$MMRM" synth "$@" >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" = 2 ] || { echo "synth $*: exit $rc, want 2"; cat "$tmp/err"; exit 1; }
    grep -qF -- "$text" "$tmp/err" || { echo "synth $*: message lacks '$text':"; cat "$tmp/err"; exit 1; }
}
fails "--task must be color, count, position, size or mixed (got 'colour')" --out "$tmp/x" --task colour
fails "--cue must be trailing, length, style, hedge or position (got '')" --out "$tmp/x" --cue ""
fails "--task needs a value" --out "$tmp/x" --task
[ ! -e "$tmp/x" ] || { echo "bad arguments still created the output folder"; exit 1; }
