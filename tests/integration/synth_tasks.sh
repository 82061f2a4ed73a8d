#!/usr/bin/env bash
# `mmrm synth --task/--cue`: --help lists them; every task and cue kind generates, the same
# seed gives the same bytes and README.txt documents the choice; the defaults give the same
# bytes as before the options existed (sha256 sums of the old binary's files, committed); bad
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

# tests/fixtures/synth_default_seed9.sha256: the files of `synth --pairs 120 --seed 9` as
# written by the binary before --task/--cue existed (main at 56377f2), so the defaults must
# still give those bytes
sums=$PWD/tests/fixtures/synth_default_seed9.sha256
for extra in "" "--task color --cue trailing"; do
    rm -rf "$tmp/new"
    # shellcheck disable=SC2086
    "$MMRM" synth --out "$tmp/new" --pairs 120 --seed 9 $extra >/dev/null 2>&1
    (cd "$tmp/new" && sha256sum --quiet -c "$sums") ||
        { echo "synth ${extra:-defaults}: output differs from the pre-option default's bytes"; exit 1; }
    [ "$(cd "$tmp/new" && find . -type f | wc -l)" = "$(wc -l < "$sums")" ] ||
        { echo "synth ${extra:-defaults}: a different set of files"; exit 1; }
done

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
