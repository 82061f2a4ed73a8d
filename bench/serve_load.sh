#!/usr/bin/env bash
# bench/serve_load.sh - mmrm serve under load: CLIENTS concurrent curl clients send REQUESTS
# POST /score requests (one record of RESPONSES responses each, an image from
# tests/fixtures/images by path) to a server on 127.0.0.1; prints requests/s, responses/s and
# the p50/p99 latency from curl's %{time_total}, and the server's batch counters. It runs each
# mode of MODES: "batched" (--max-batch MAX_BATCH, --batch-wait-ms WAIT_MS: requests of several
# clients share a scorer call) and "single" (--max-batch RESPONSES, --batch-wait-ms 0: one request
# per scorer call), so the gain of batching across clients shows. "scorer busy" is the share of
# the wall time spent inside scorer_score.
# Env: MMRM (build/mmrm), MODEL (a model folder; default: mmrm init of CONFIG, default
# configs/model/small.json), CLIENTS (8), REQUESTS (200), RESPONSES (4), MAX_BATCH (64),
# WAIT_MS (5), BATCH_SIZE (8, sequences per forward), MODES ("batched single").
set -euo pipefail
mmrm=${MMRM:-build/mmrm}
clients=${CLIENTS:-8}
requests=${REQUESTS:-200}
responses=${RESPONSES:-4}
max_batch=${MAX_BATCH:-64}
wait_ms=${WAIT_MS:-5}
batch_size=${BATCH_SIZE:-8}
modes=${MODES:-batched single}
command -v curl >/dev/null || { echo "serve_load: curl is needed (apt-get install curl)"; exit 1; }
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
model=${MODEL:-}
if [ -z "$model" ]; then
    model="$tmp/model"
    "$mmrm" init --config "${CONFIG:-configs/model/small.json}" --out "$model" >/dev/null
fi
mkdir -p "$tmp/root" "$tmp/req"
imgs=(rgb_37x23.png rgb_61x113.png grey_45x30.png palette_50x31.gif rgb_300x7.png)
for f in "${imgs[@]}"; do cp "tests/fixtures/images/$f" "$tmp/root/"; done
words=(the cat sat on a red mat while two dogs ran past blue trees near old houses)
for ((k = 0; k < requests; k++)); do # distinct text per request, 8-24 words per response
    resp=""
    for ((j = 0; j < responses; j++)); do
        text=""
        for ((w = 0; w < 8 + (k * 7 + j * 5) % 17; w++)); do text+="${words[(k * 3 + j + w * w) % ${#words[@]}]} "; done
        resp+="${resp:+, }\"$text#$k.$j\""
    done
    printf '{"prompt": "request %d: describe the picture", "img_path": "%s", "responses": [%s]}' \
        "$k" "${imgs[k % ${#imgs[@]}]}" "$resp" >"$tmp/req/$k.json"
done

field() { grep -o "\"$1\":[^,}]*" "$2" | head -n 1 | cut -d: -f2; }
echo "serve_load: $requests requests x $responses responses from $clients clients, model $model" \
    "(batch size $batch_size), $(nproc) cores"
for mode in $modes; do
    case $mode in
    batched) mb=$max_batch wm=$wait_ms ;;
    single) mb=$responses wm=0 ;;
    *) echo "serve_load: unknown mode $mode (batched, single)"; exit 1 ;;
    esac
    "$mmrm" serve --model "$model" --port 0 --image-root "$tmp/root" --batch-size "$batch_size" \
        --max-batch "$mb" --batch-wait-ms "$wm" 2>"$tmp/serve.log" &
    pid=$!
    url=
    for _ in $(seq 1 600); do
        url=$(grep -o 'on http://127\.0\.0\.1:[0-9]*' "$tmp/serve.log" | head -1 | cut -c4-) || true
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.log"; exit 1; }
        sleep 0.1
    done
    [ -n "$url" ] || { cat "$tmp/serve.log"; echo "serve_load: the server did not start"; exit 1; }
    curl -sf --retry 20 --retry-connrefused --retry-delay 0 "$url/health" >/dev/null
    t0=$(date +%s.%N)
    seq 0 $((requests - 1)) | xargs -P "$clients" -I{} curl -s -o /dev/null --max-time 300 \
        -w '%{http_code} %{time_total}\n' --data-binary "@$tmp/req/{}.json" "$url/score" \
        >"$tmp/times.txt" || true
    t1=$(date +%s.%N)
    curl -sf "$url/health" >"$tmp/health.json"
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
    ok=$(grep -c '^200 ' "$tmp/times.txt" || true)
    [ "$ok" = "$requests" ] || echo "serve_load: only $ok of $requests requests answered 200"
    awk '{print $2}' "$tmp/times.txt" | sort -g >"$tmp/lat.txt"
    pct() { awk -v p="$1" '{v[NR] = $1} END {i = int(p * NR + 0.999999); if (i < 1) i = 1; printf "%.3f", v[i]}' "$tmp/lat.txt"; }
    awk -v n="$requests" -v r="$responses" -v t0="$t0" -v t1="$t1" -v mode="$mode" -v mb="$mb" \
        -v wm="$wm" -v p50="$(pct 0.5)" -v p99="$(pct 0.99)" -v b="$(field batches "$tmp/health.json")" \
        -v bq="$(field batch_requests_mean "$tmp/health.json")" \
        -v pad="$(field padding_pct "$tmp/health.json")" \
        -v busy="$(field scoring_s "$tmp/health.json")" 'BEGIN {
        s = t1 - t0
        printf "%-8s (--max-batch %d, --batch-wait-ms %d): %.2f s | %.1f requests/s, %.1f responses/s | latency p50 %.3f s, p99 %.3f s | %d batches, %.1f requests per batch, %.0f%% padding | scorer busy %.0f%%\n",
               mode, mb, wm, s, n / s, n * r / s, p50, p99, b, bq, pad, 100 * busy / s }'
done
