#!/usr/bin/env python3
"""gen_spm_fixtures.py - reference data for the SentencePiece tokenizer kind (models/tokenizer_spm.c).

Needs sentencepiece==0.2.0 and protobuf (for sentencepiece_model_pb2), in a venv, not globally:

    python3 -m venv /tmp/spmvenv
    /tmp/spmvenv/bin/pip install sentencepiece==0.2.0 protobuf==4.25.3
    /tmp/spmvenv/bin/python tests/oracle/gen_spm_fixtures.py --out tests/fixtures/tokenizers/spm

It writes, deterministically (fixed seeds, one training thread):
- corpus.jsonl: one JSON string per line (>= 20,000): CJK, Arabic, Cyrillic, Devanagari,
  emoji and ZWJ sequences, digits and long numbers, code, runs of spaces/tabs/newlines,
  special and added tokens inside text, very long lines. JSON so that a line may hold
  newlines; every line is valid UTF-8 without NUL.
- bytes.txt: raw byte strings in hex, one per line: NUL, invalid UTF-8 (stray continuation
  bytes, overlongs, surrogates, truncated sequences), and U+FFFD itself. sentencepiece's
  Python encode takes bytes as they are, so these are encoded exactly as the C++ library does.
- one folder per model: tokenizer.model, tokenizer_config.json (added_tokens_decoder as
  InternLM2 + InternVL have it), ids.txt (one line of ids per corpus line) and
  ids_bytes.txt (per bytes.txt line).

The models are small SentencePiece BPE models with byte_fallback, trained on the corpus:
- llama: vocab 4000, normalizer "identity", add_dummy_prefix, no whitespace removal: the
  specs of Llama's tokenizer.model; InternLM2's is assumed to have the same specs (its
  tokenizer.model could not be inspected from here).
- user: vocab 2000 with user_defined_symbols (incl. <|im_start|>-like and code symbols).
- noprefix: vocab 2500, add_dummy_prefix false, and 24 merged pieces re-typed UNUSED in the
  proto, so the encoder's resegmentation of unused pieces is exercised.

Reference ids: text is split at the special/added tokens (leftmost, longest match; the
tokenizer's contents in tokenizer_config.json's added_tokens_decoder), as transformers'
slow LlamaTokenizer (legacy) splits added tokens, each added token is its id, and each
non-empty segment between them is sentencepiece's encode(segment) (out_type=int).
--check-transformers confirms that transformers==4.44.2's LlamaTokenizer(legacy=True) gives
the same ids for every line (its decode is not the inverse: it puts spaces around added
tokens and, by clean_up_tokenization_spaces, drops some before punctuation). The
script also checks that sp.decode(ids) == line for lines without added tokens and without
a literal U+2581 (decoding turns every U+2581 into a space), the round trip the C test then
asserts for every such line (with added tokens too: mmrm decodes each run between them alone).
"""
import argparse
import json
import os
import random

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

assert spm.__version__ == "0.2.0", spm.__version__

# InternLM2's added tokens (chat and agent markers) and InternVL's image/grounding tokens
ADDED = ["<|im_start|>", "<|im_end|>", "<|action_start|>", "<|action_end|>", "<|interpreter|>",
         "<|plugin|>", "<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>",
         "<box>", "</box>"]
USER_SYMBOLS = ["<|user_sym|>", "def", "return", "==", "\u2581\u2581"]

WORDS_EN = ("the of and to in is that for it as was with be by on not he this are or his from at "
            "which but have an they you were her she there been one all we their has would when "
            "reward model image picture shows red blue cat dog car tree house person chosen "
            "rejected prompt answer question because however therefore tokenizer merge byte "
            "fallback sentence piece internlm qwen llama vision language").split()
CJK = "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从知"
JA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコ"
KO = "가나다라마바사아자차카타파하한국어문장입니다"
ARABIC = ["مرحبا", "بالعالم", "الذكاء", "الاصطناعي", "نموذج", "اللغة", "صورة", "جميلة", "في", "من"]
CYRILLIC = ["привет", "мир", "модель", "изображение", "красный", "кошка", "Москва", "это", "и", "не"]
DEVANAGARI = ["नमस्ते", "दुनिया", "भाषा", "मॉडल", "चित्र", "लाल", "बिल्ली", "है", "और", "में"]
EMOJI = ["😀", "🎉", "👍🏽", "🇩🇪", "🇯🇵", "👨‍👩‍👧‍👦", "👩🏻‍💻", "🏳️‍🌈", "❤️", "🧑‍🚀", "✨", "🐱"]
RARE = "ꙮ𝔘𝔫𝔦𝔠𝔬𝔡𝔢𐍈ᚠᚢᚦ☃★♞⚙∑∫≈≠√∞ǅǈĳﬁ"
CODE = ["def f(x):\n    return x * 2\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
        "if x == y and not z:", "#include <stdio.h>", "printf(\"%d\\n\", v);", "x = {'a': [1, 2]}",
        "SELECT * FROM t WHERE id = 42;", "fn main() { println!(\"hi\"); }", "a->b.c[0] |= 0xFF;",
        "    # comment with trailing spaces   ", "λx. x + 1", "<div class=\"box\">&nbsp;</div>"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", " \n ", "\r\n", "        ", "\u3000", "\u00a0"]


def rand_number(r):
    k = r.choice([1, 2, 3, 4, 8, 16, 30])
    s = "".join(r.choice("0123456789") for _ in range(k))
    return s if r.random() < 0.7 else s + r.choice([".5", ",000", "e-3", "%"])


def rand_piece(r):
    c = r.random()
    if c < 0.30:
        w = r.choice(WORDS_EN)
        return w.capitalize() if r.random() < 0.15 else w
    if c < 0.42:
        return "".join(r.choice(CJK) for _ in range(r.randint(1, 6)))
    if c < 0.46:
        return "".join(r.choice(JA + KO) for _ in range(r.randint(1, 4)))
    if c < 0.51:
        return r.choice(ARABIC)
    if c < 0.56:
        return r.choice(CYRILLIC)
    if c < 0.61:
        return r.choice(DEVANAGARI)
    if c < 0.66:
        return r.choice(EMOJI)
    if c < 0.74:
        return rand_number(r)
    if c < 0.79:
        return r.choice(CODE)
    if c < 0.82:
        return r.choice(RARE)
    if c < 0.86:
        return r.choice(ADDED + ["<s>", "</s>", "<unk>", "<|im_start", "<im_end|>", "<IMG"])
    if c < 0.88:
        return r.choice(USER_SYMBOLS)
    if c < 0.92:
        return r.choice(".,;:!?-()[]{}\"'/\\@#$%^&*_+=~`|<>") * r.randint(1, 3)
    if c < 0.94:
        return "\u2581" + r.choice(WORDS_EN)
    return chr(r.choice([r.randint(0x21, 0x7E), r.randint(0xA0, 0x2FF), r.randint(0x370, 0x52F),
                         r.randint(0x4E00, 0x9FFF), r.randint(0x1F300, 0x1FAFF),
                         r.randint(0x10000, 0x10FFFF)]))


def rand_line(r, i):
    if i % 997 == 0:
        n = r.randint(800, 3000)  # very long lines
    elif i % 50 == 0:
        n = r.randint(0, 2)
    else:
        n = r.randint(1, 10)
    out = []
    for _ in range(n):
        out.append(rand_piece(r))
        out.append(r.choice(SPACES) if r.random() < 0.25 else (" " if r.random() < 0.6 else ""))
    s = "".join(out)
    if r.random() < 0.1:
        s = r.choice(SPACES) + s
    return "".join(ch for ch in s if ch != "\0" and not (0xD800 <= ord(ch) <= 0xDFFF))


def byte_lines(r):
    fixed = [b"\x00", b"a\x00b", b"\x80", b"\xff", b"abc\xe2\x82", b"\xc0\xaf", b"\xe0\x80\xaf",
             b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xef\xbf\xbd", b" \xef\xbf\xbd x",
             b"\xe4\xbd\xa0\xe5\xa5", b"\xf0\x9f\x98", b"ok \xfe\xfe ok", b"\xc3\x28",
             b"<|im_start|>\x80user<|im_end|>", b"\x80<img>", b"\t\x00\n", b"\xe2\x96\x81\x80"]
    out = list(fixed)
    for _ in range(300):
        base = rand_line(r, 1).encode()[:60]
        b = bytearray(base)
        for _ in range(r.randint(1, 4)):
            b.insert(r.randint(0, len(b)), r.choice([0x00, 0x80, 0xBF, 0xC2, 0xE2, 0xF0, 0xFF]))
        out.append(bytes(b))
    return out


def split_added(text, added):
    """leftmost, longest match of the added tokens: (is_added, piece) list"""
    out, plain, i = [], 0, 0
    by_first = {}
    for a in added:
        by_first.setdefault(a[:1], []).append(a)
    while i < len(text):
        best = None
        for a in by_first.get(text[i:i + 1], ()):
            if text.startswith(a, i) and (best is None or len(a) > len(best)):
                best = a
        if best is None:
            i += 1
            continue
        if i > plain:
            out.append((False, text[plain:i]))
        out.append((True, best))
        i += len(best)
        plain = i
    if plain < len(text):
        out.append((False, text[plain:]))
    return out


def encode(sp, text, added_ids):
    ids = []
    for is_added, piece in split_added(text, list(added_ids)):
        ids.extend([added_ids[piece]] if is_added else sp.encode(piece))
    return ids


def train(out_dir, corpus_txt, name, **kw):
    os.makedirs(out_dir, exist_ok=True)
    prefix = os.path.join(out_dir, "tokenizer")
    spm.SentencePieceTrainer.train(
        input=corpus_txt, model_prefix=prefix, model_type="bpe", byte_fallback=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        split_digits=True, allow_whitespace_only_pieces=True, num_threads=1,
        input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2,
        max_sentence_length=100000, **kw)
    os.remove(prefix + ".vocab")
    return prefix + ".model"


def mark_unused(path, n, seed):
    m = pb.ModelProto()
    with open(path, "rb") as f:
        m.ParseFromString(f.read())
    r = random.Random(seed)
    merged = [i for i, p in enumerate(m.pieces)
              if p.type == pb.ModelProto.SentencePiece.NORMAL and len(p.piece) >= 2]
    for i in sorted(r.sample(merged[:300], n)):
        m.pieces[i].type = pb.ModelProto.SentencePiece.UNUSED
    with open(path, "wb") as f:
        f.write(m.SerializeToString())


def write_config(out_dir, sp):
    n = sp.get_piece_size()
    dec = {}
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i):
            dec[str(i)] = {"content": sp.id_to_piece(i), "special": True}
    for k, a in enumerate(ADDED):
        dec[str(n + k)] = {"content": a, "special": True}
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
           "pad_token": "</s>", "unk_token": "<unk>", "added_tokens_decoder": dec,
           "tokenizer_class": "InternLM2Tokenizer"}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return {v["content"]: int(k) for k, v in dec.items()}


def check_transformers(d, lines):
    """the reference ids are what HF's slow LlamaTokenizer (legacy) gives, added tokens and all"""
    import transformers
    from transformers import LlamaTokenizer
    assert transformers.__version__ == "4.44.2", transformers.__version__
    tok = LlamaTokenizer.from_pretrained(d, legacy=True, add_bos_token=False, add_eos_token=False)
    with open(os.path.join(d, "ids.txt")) as f:
        ref = [list(map(int, line.split())) for line in f]
    bad = sum(tok.encode(s, add_special_tokens=False) != r for s, r in zip(lines, ref))
    print(f"  transformers {transformers.__version__} LlamaTokenizer(legacy=True): "
          f"{bad} of {len(lines)} lines differ")
    assert bad == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--check-transformers", action="store_true",
                    help="also check that transformers==4.44.2's slow LlamaTokenizer (legacy) "
                         "gives the same ids for every line (pip install transformers==4.44.2)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    r = random.Random(20261205)
    lines = [rand_line(r, i) for i in range(args.lines)]
    blines = byte_lines(r)
    with open(os.path.join(args.out, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for s in lines:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    with open(os.path.join(args.out, "bytes.txt"), "w") as f:
        for b in blines:
            f.write(b.hex() + "\n")
    # training text: one sentence per line, without the added tokens, newlines as spaces
    train_txt = os.path.join("/tmp", "spm_train_corpus.txt")
    with open(train_txt, "w", encoding="utf-8") as f:
        for s in lines:
            for a in ADDED:
                s = s.replace(a, " ")
            f.write(s.replace("\n", " ").replace("\r", " ") + "\n")

    models = {
        "llama": dict(vocab_size=4000, character_coverage=0.995, add_dummy_prefix=True),
        "user": dict(vocab_size=2000, character_coverage=0.98, add_dummy_prefix=True,
                     user_defined_symbols=USER_SYMBOLS),
        "noprefix": dict(vocab_size=2500, character_coverage=0.98, add_dummy_prefix=False),
    }
    for name, kw in models.items():
        d = os.path.join(args.out, name)
        path = train(d, train_txt, name, **kw)
        if name == "noprefix":
            mark_unused(path, 24, seed=7)
        sp = spm.SentencePieceProcessor(model_file=path)
        added_ids = write_config(d, sp)
        n_round = 0
        with open(os.path.join(d, "ids.txt"), "w") as f:
            for s in lines:
                ids = encode(sp, s, added_ids)
                if "\u2581" not in s and not any(a in s for a in added_ids):
                    assert sp.decode(ids) == s, (name, s)
                    n_round += 1
                f.write(" ".join(map(str, ids)) + "\n")
        with open(os.path.join(d, "ids_bytes.txt"), "w") as f:
            for b in blines:
                ids = []
                for is_added, piece in split_added(b, [a.encode() for a in added_ids]):
                    ids.extend([added_ids[piece.decode()]] if is_added else sp.encode(piece))
                f.write(" ".join(map(str, ids)) + "\n")
        print(f"{name}: {sp.get_piece_size()} pieces, {len(lines)} lines "
              f"({n_round} checked to round-trip through sp.decode), {len(blines)} byte lines")
        if args.check_transformers:
            check_transformers(d, lines)


if __name__ == "__main__":
    main()
