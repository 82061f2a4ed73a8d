"""bench_tokenizer_hf.py - HF tokenizers' encoding speed on one thread, on the corpus and
tokenizer bench/bench_tokenizer.c reads, printed the same way (first pass, best of the next).

The tokenizer is built with tokenizers alone from the fixture's vocab.json + merges.txt as
Qwen2TokenizerFast is (NFC, Split regex + ByteLevel, the added tokens), and checked against
the fixture ids before timing. Lines are encoded one call each (encode) and as one batch
(encode_batch); RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false keep it on one thread.
Invalid UTF-8 is read with errors="replace" (Python strings cannot hold it).

    python3 -m venv /tmp/bpevenv && /tmp/bpevenv/bin/pip install tokenizers==0.19.1
    /tmp/bpevenv/bin/python bench/bench_tokenizer_hf.py [--passes N]
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import tokenizers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers  # noqa: E402

assert tokenizers.__version__ == "0.19.1", tokenizers.__version__
PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def load(d):
    tok = Tokenizer(models.BPE.from_file(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt")))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    added = json.load(open(os.path.join(d, "tokenizer_config.json")))["added_tokens_decoder"]
    for i in sorted(added, key=int):
        a = added[i]
        tok.add_special_tokens([AddedToken(a["content"], special=True, normalized=False)])
        assert tok.token_to_id(a["content"]) == int(i)
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default="tests/fixtures/tokenizers/qwen2")
    ap.add_argument("--corpus", default="tests/fixtures/tokenizers/bpe_corpus.txt")
    ap.add_argument("--ids", default="tests/fixtures/tokenizers/bpe_ids.txt")
    ap.add_argument("--passes", type=int, default=5)
    args = ap.parse_args()
    t0 = time.perf_counter()
    tok = load(args.tokenizer)
    t_load = time.perf_counter() - t0
    raw = open(args.corpus, "rb").read()
    lines = [ln.decode("utf-8", "replace") for ln in raw.split(b"\n")[:-1]]
    want = open(args.ids).read().split("\n")
    for k, ln in enumerate(lines[:2000]):
        if "\ufffd" not in ln:
            assert " ".join(map(str, tok.encode(ln, add_special_tokens=False).ids)) == want[k], k
    print(f"tokenizer {args.tokenizer} ({tok.get_vocab_size()} ids, loaded in {t_load:.2f} s); corpus "
          f"{args.corpus}: {len(lines)} lines, {len(raw) / 1e6:.2f} MB")
    for name, run in (("encode per line", lambda: sum(len(tok.encode(ln, add_special_tokens=False).ids) for ln in lines)),
                      ("encode_batch", lambda: sum(len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False)))):
        tok = load(args.tokenizer)  # a fresh cache for the first pass
        best = None
        for p in range(args.passes):
            t = time.perf_counter()
            n = run()
            t = time.perf_counter() - t
            if p == 0:
                print(f"HF tokenizers {tokenizers.__version__}, 1 thread, {name}, first pass (cold cache): "
                      f"{len(raw) / 1e6 / t:.2f} MB/s, {n / t:.0f} tokens/s ({n} tokens in {t:.3f} s)")
            elif best is None or t < best:
                best = t
        if best:
            print(f"HF tokenizers {tokenizers.__version__}, 1 thread, {name}, best of {args.passes - 1} more "
                  f"passes: {len(raw) / 1e6 / best:.2f} MB/s, {n / best:.0f} tokens/s ({best:.3f} s)")


if __name__ == "__main__":
    main()
