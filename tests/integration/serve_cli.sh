#!/usr/bin/env bash
# mmrm serve end to end with curl as the client, on a tiny random model (mmrm init) and fixture
# images: 200 requests from 8 concurrent clients (single records, {"records": [...]} bodies,
# inline base64 images, a corrupt image) are all answered 200 with the scores `mmrm score
# --grouped` gives the same records, and were batched across clients (/health); malformed JSON
# and wrong fields (400, the field named), a body over --max-request-bytes with and without
# Content-Length (413), img_path escaping the root by ../, by an absolute path, by a symlinked
# file and a symlinked folder (403), an unknown path (404), wrong methods (405) and a taken port
# are refused; SIGTERM with requests in flight answers them, exits 0 and removes the inline
# images' folder; with --blank-image the scores are mmrm score --blank-image's, and a full
# queue (503) or a request larger than it (413) is refused; SIGINT stops it too.
# The requests and checks are written with python3's json module.
set -euo pipefail
for tool in curl python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "skipped: $tool not installed"
        exit 77
    fi
done
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export TMPDIR="$tmp/tmpdir" # the server's inline-image folder goes here: checked at the end
mkdir "$TMPDIR"

"$MMRM" init --config configs/model/tiny.json --out "$tmp/model" >/dev/null
root="$tmp/root"
mkdir -p "$root/img" "$tmp/outside"
for f in rgb_37x23.png rgb_61x113.png grey_45x30.png palette_50x31.gif; do
    cp "tests/fixtures/images/$f" "$root/img/"
done
cp tests/fixtures/jpeg/s422_48x32.jpg "$root/img/"
head -c 60 tests/fixtures/images/rgb_101x101.png >"$root/img/corrupt.png" # header, no pixels
cp tests/fixtures/images/rgb_37x23.png "$tmp/outside/secret.png"
ln -s "$tmp/outside/secret.png" "$root/img/link.png"
ln -s "$tmp/outside" "$root/linkdir"

# records.jsonl (the reference's input) and 200 request bodies built from its records
python3 - "$tmp" <<'EOF'
import base64, json, os, random, sys
tmp = sys.argv[1]
random.seed(11)
imgs = ["rgb_37x23.png", "rgb_61x113.png", "grey_45x30.png", "palette_50x31.gif", "s422_48x32.jpg"]
words = ["cat", "dog", "red", "blue", "tree", "два", "猫", "a \"quoted\" word", "tab\there"]
recs = []
for i in range(40):
    recs.append({"prompt": f"question {i}: what is in the picture?",
                 "img_path": "img/" + imgs[i % len(imgs)],
                 "responses": [" ".join(random.choice(words) for _ in range(random.randint(1, 10)))
                               + f" #{i}.{j}" for j in range(random.randint(1, 4))]})
with open(f"{tmp}/records.jsonl", "w") as f:
    for r in recs: f.write(json.dumps(r, ensure_ascii=False) + "\n")
corrupt = {"prompt": "broken", "img_path": "img/corrupt.png", "responses": ["x", "y"]}
os.mkdir(f"{tmp}/req")
plan = []  # per request: the record indices (-1: the corrupt one), and whether it is a list
for k in range(200):
    kind = k % 4
    if kind == 3:
        idx = random.sample(range(len(recs)), random.randint(2, 4))
        if k % 20 == 3: idx.insert(1, -1)
        body = {"records": [corrupt if i < 0 else recs[i] for i in idx]}
    else:
        idx = [random.randrange(len(recs))]
        r = dict(recs[idx[0]])
        if kind == 2:  # the image inline instead of by path
            del r["img_path"]
            r["image_base64"] = base64.b64encode(open(f"{tmp}/root/" + recs[idx[0]]["img_path"], "rb").read()).decode()
        body = r
    plan.append({"idx": idx, "list": kind == 3})
    with open(f"{tmp}/req/{k}.json", "w") as f: json.dump(body, f, ensure_ascii=False)
json.dump(plan, open(f"{tmp}/plan.json", "w"))
EOF

# the reference: the same records through mmrm score
"$MMRM" score --model "$tmp/model" --input "$tmp/records.jsonl" --output "$tmp/ref.jsonl" \
    --grouped --batch-size 8 --image-root "$root" 2>/dev/null

# ---- start the server on a free port (--port 0), wait until /health answers
"$MMRM" serve --model "$tmp/model" --port 0 --image-root "$root" --batch-size 8 --max-batch 32 \
    --batch-wait-ms 20 --max-request-bytes 200000 2>"$tmp/serve.log" &
pid=$!
url=
for _ in $(seq 1 600); do
    url=$(grep -o 'on http://127\.0\.0\.1:[0-9]*' "$tmp/serve.log" | head -1 | cut -c4-) || true
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.log"; echo "the server exited"; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { cat "$tmp/serve.log"; echo "no listening line"; exit 1; }
curl -sf --retry 20 --retry-connrefused --retry-delay 0 "$url/health" >"$tmp/health0.json" ||
    { cat "$tmp/serve.log"; echo "/health did not answer"; exit 1; }

# ---- 200 requests from 8 concurrent clients
mkdir "$tmp/resp"
seq 0 199 | xargs -P 8 -I{} curl -s -o "$tmp/resp/{}.json" -w '{} %{http_code}\n' \
    -H 'Content-Type: application/json' --data-binary "@$tmp/req/{}.json" "$url/score" \
    >"$tmp/codes.txt" || true
curl -sf "$url/health" >"$tmp/health1.json"
python3 - "$tmp" <<'EOF'
import json, math, struct, sys
tmp = sys.argv[1]
f32 = lambda x: struct.unpack("f", struct.pack("f", x))[0]
recs = [json.loads(l) for l in open(f"{tmp}/records.jsonl")]
ref = {}
for l in map(json.loads, open(f"{tmp}/ref.jsonl")):
    ref[(l["prompt"], l["img_path"], tuple(l["responses"]))] = l["scores"]
assert len(ref) == 40, len(ref)
plan = json.load(open(f"{tmp}/plan.json"))
codes = dict(l.split() for l in open(f"{tmp}/codes.txt"))
assert len(codes) == 200, f"{len(codes)} of 200 requests answered"
bad = {k: v for k, v in codes.items() if v != "200"}
assert not bad, f"not 200: {bad}"
exact = compared = 0
for k, p in enumerate(plan):
    got = json.load(open(f"{tmp}/resp/{k}.json"))
    results = got["records"] if p["list"] else [got]
    assert len(results) == len(p["idx"]), (k, got)
    for i, res in zip(p["idx"], results):
        if i < 0:  # the corrupt image: its record fails, the others are scored
            assert res["scores"] == [None, None] and res["error"].startswith("img/corrupt.png: "), (k, res)
            assert tmp not in res["error"], f"the server's paths in an answer: {res}"
            continue
        r = recs[i]
        want = ref[(r["prompt"], r["img_path"], tuple(r["responses"]))]
        assert "error" not in res, (k, res)
        assert len(res["scores"]) == len(want), (k, res)
        for s, w in zip(res["scores"], want):
            assert isinstance(s, float) and math.isfinite(s), (k, res)
            assert abs(s - w) <= 1e-6 * abs(w) + 1e-9, (k, s, w)
            compared += 1
            exact += f32(s) == f32(w)
h0, h1 = json.load(open(f"{tmp}/health0.json")), json.load(open(f"{tmp}/health1.json"))
assert h1["status"] == "ok" and h1["model"].endswith("/model"), h1
assert h1["requests"] >= 201 and h1["score_requests"] == 200, h1
assert h1["batches"] < 200 and h1["batch_requests_max"] > 1, f"no batching across clients: {h1}"
assert h1["batch_responses_max"] <= 32, h1
assert h1["responses_failed"] == 2 * sum(-1 in p["idx"] for p in plan), h1
print(f"200 requests from 8 clients: all 200; {compared} scores equal to mmrm score's "
      f"({exact} bitwise); {h1['batches']} batches, {h1['batch_requests_mean']:.1f} requests and "
      f"{h1['batch_responses_mean']:.1f} responses per batch on average (max {h1['batch_requests_max']})")
EOF

# ---- refusals: code and message
expect() { # CODE MESSAGE-PART CURL-ARGS...
    local code=$1 part=$2
    shift 2
    local got
    got=$(curl -s -o "$tmp/body" -w '%{http_code}' "$@")
    [ "$got" = "$code" ] && grep -qF -- "$part" "$tmp/body" ||
        { echo "curl $*: expected $code with '$part', got $got: $(cat "$tmp/body")"; exit 1; }
}
post() { expect "$1" "$2" -H 'Content-Type: application/json' --data-binary "$3" "$url/score"; }
post 400 "malformed JSON" '{"prompt": "x", "img_path": "img/rgb_37x23.png", "responses": ["a"'
post 400 "malformed JSON" '{"prompt": "x", "img_path": "img/rgb_37x23.png", "responses": ["a"]} x'
post 400 "empty body" ''
post 400 "prompt: expected a string" '{"prompt": 3, "img_path": "img/rgb_37x23.png", "responses": ["a"]}'
post 400 'field \"responses\" is missing' '{"prompt": "x", "img_path": "img/rgb_37x23.png"}'
post 400 "records[1].responses[1]: expected a string" \
    '{"records": [{"prompt": "x", "img_path": "img/rgb_37x23.png", "responses": ["a"]}, {"prompt": "x", "img_path": "img/rgb_37x23.png", "responses": ["a", 2]}]}'
post 400 "image_base64: not base64" '{"prompt": "x", "image_base64": "ab$cd", "responses": ["a"]}'
post 403 "outside the image root" '{"prompt": "x", "img_path": "../outside/secret.png", "responses": ["a"]}'
post 403 "outside the image root" '{"prompt": "x", "img_path": "img/../../outside/none.png", "responses": ["a"]}'
post 403 "absolute paths" "{\"prompt\": \"x\", \"img_path\": \"$tmp/outside/secret.png\", \"responses\": [\"a\"]}"
post 403 "outside the image root" '{"prompt": "x", "img_path": "img/link.png", "responses": ["a"]}'
post 403 "outside the image root" '{"prompt": "x", "img_path": "linkdir/secret.png", "responses": ["a"]}'
head -c 300000 /dev/zero | tr '\0' 'a' >"$tmp/big.txt"
expect 413 "max-request-bytes" -H 'Content-Type: application/json' --data-binary "@$tmp/big.txt" "$url/score"
expect 413 "max-request-bytes" -H 'Transfer-Encoding: chunked' --data-binary "@$tmp/big.txt" "$url/score"
expect 404 "no such path" "$url/nope"
expect 405 "takes POST" "$url/score"
expect 405 "takes GET" -X POST -d '{}' "$url/health"
# a missing image fails its record, not the request
post 200 '{"scores":[null],"error":"img/none.png: image not found' \
    '{"records": [{"prompt": "x", "img_path": "img/none.png", "responses": ["a"]}]}'
# the server still answers after all that
post 200 '"scores"' '{"prompt": "x", "img_path": "img/rgb_37x23.png", "responses": ["a"]}'

# ---- a second server on the same port is refused with a clear message
port=${url##*:}
set +e
"$MMRM" serve --model "$tmp/model" --port "$port" 2>"$tmp/taken.log"
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "cannot listen on 127.0.0.1 port $port: Address already in use" "$tmp/taken.log" ||
    { cat "$tmp/taken.log"; echo "a taken port: exit $rc"; exit 1; }

# ---- SIGTERM with requests in flight: they are answered, the server exits 0 and cleans up
for k in $(seq 0 11); do
    curl -s -o /dev/null -w '%{http_code}\n' --data-binary "@$tmp/req/$((k * 4 + 3)).json" \
        "$url/score" >"$tmp/late.$k" 2>/dev/null &
done
sleep 0.05
kill -TERM "$pid"
set +e
wait "$pid"
rc=$?
set -e
pid=
wait # the clients
[ "$rc" = 0 ] || { cat "$tmp/serve.log"; echo "the server exited $rc after SIGTERM"; exit 1; }
grep -q "SIGTERM: stopping" "$tmp/serve.log" && grep -q "serve: stopped after" "$tmp/serve.log" ||
    { cat "$tmp/serve.log"; echo "no shutdown lines"; exit 1; }
# every client got 200, 503 (arrived while stopping) or no connection (000): never a dropped answer
late=$(cat "$tmp"/late.*)
for c in $late; do
    case $c in 200 | 503 | 000) ;; *) echo "a request in flight at SIGTERM got $c"; exit 1 ;; esac
done
[ -z "$(ls -A "$TMPDIR")" ] || { ls -la "$TMPDIR"; echo "inline images left behind"; exit 1; }
# ---- --blank-image without an image root: images are ignored, the scores are those of mmrm
# score --blank-image; a full queue answers 503 (a request waits 3 s for company while the
# queue holds 3 of --max-queue 4 responses), a request larger than the queue 413; SIGINT stops
"$MMRM" score --model "$tmp/model" --input "$tmp/records.jsonl" --output "$tmp/ref_blank.jsonl" \
    --image-root "$root" --grouped --blank-image 2>/dev/null
python3 - "$tmp" <<'EOF2'
import json, sys
tmp = sys.argv[1]
recs = [json.loads(l) for l in open(f"{tmp}/records.jsonl")]
three = next(r for r in recs if len(r["responses"]) == 3)
json.dump(three, open(f"{tmp}/three.json", "w"))
json.dump({"prompt": "p", "img_path": "nowhere.png", "responses": ["a", "b"]}, open(f"{tmp}/two.json", "w"))
json.dump({"prompt": "p", "responses": ["a", "b", "c", "d", "e"]}, open(f"{tmp}/five.json", "w"))
EOF2
"$MMRM" serve --model "$tmp/model" --port 0 --blank-image --max-queue 4 --batch-wait-ms 3000 \
    2>"$tmp/blank.log" &
pid=$!
url=
for _ in $(seq 1 600); do
    url=$(grep -o 'on http://127\.0\.0\.1:[0-9]*' "$tmp/blank.log" | head -1 | cut -c4-) || true
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { cat "$tmp/blank.log"; echo "the blank-image server did not start"; exit 1; }
curl -s -o "$tmp/three.out" -w '%{http_code}' --data-binary "@$tmp/three.json" "$url/score" >"$tmp/three.code" &
client=$!
for _ in $(seq 1 200); do
    curl -s "$url/health" | grep -q '"queue_responses":3' && break
    sleep 0.02
done
expect 503 "queue is full" --data-binary "@$tmp/two.json" "$url/score"
expect 413 "more than --max-queue 4" --data-binary "@$tmp/five.json" "$url/score"
wait "$client"
[ "$(cat "$tmp/three.code")" = 200 ] || { echo "the queued request got $(cat "$tmp/three.code")"; exit 1; }
python3 - "$tmp" <<'EOF2'
import json, sys
tmp = sys.argv[1]
three = json.load(open(f"{tmp}/three.json"))
ref = {(l["prompt"], tuple(l["responses"])): l["scores"] for l in map(json.loads, open(f"{tmp}/ref_blank.jsonl"))}
want = ref[(three["prompt"], tuple(three["responses"]))]
got = json.load(open(f"{tmp}/three.out"))["scores"]
assert len(got) == 3 and all(abs(g - w) <= 1e-6 * abs(w) + 1e-9 for g, w in zip(got, want)), (got, want)
EOF2
kill -INT "$pid"
set +e
wait "$pid"
rc=$?
set -e
pid=
[ "$rc" = 0 ] && grep -q "SIGINT: stopping" "$tmp/blank.log" || { cat "$tmp/blank.log"; echo "SIGINT: exit $rc"; exit 1; }

echo "refusals: 400 x7, 403 x5, 413 x3, 503, 404, 405 x2 as expected; taken port refused;" \
    "blank-image scores equal; SIGTERM: in-flight answers $(echo $late | tr ' ' '\n' | sort | uniq -c | tr '\n' ' ' | tr -s ' ')"
echo "serve_cli: ok"
