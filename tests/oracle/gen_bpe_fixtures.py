"""gen_bpe_fixtures.py - the reference token ids of mmrm's byte-level BPE tokenizer.

Writes into tests/fixtures/tokenizers/:
  bpe_corpus.txt      >= 20,000 texts, one per line (raw bytes: any byte but '\\n', invalid
                      UTF-8 included): scripts, emoji, numbers, code, whitespace runs, added
                      tokens inside text, NFC cases, very long lines
  bpe_ids.txt         the ids of each line, space-separated, one line per text
  bpe_multi.jsonl     texts holding newlines, one JSON string per line
  bpe_multi_ids.txt   their ids
  tiny_json/tokenizer.json   a 2,000-merge cut of Qwen2 as an HF tokenizer.json (merges as
                      "a b" strings, what tokenizers 0.19 writes), and tiny_json_pairs/ the same
                      with [a, b] pairs (what tokenizers >= 0.20 writes)
  tiny_ids.txt        the ids of the first 2,000 corpus lines under the tiny tokenizer
The reference is HF's fast Qwen2 tokenizer (transformers 4.44.2 converting
tests/fixtures/tokenizers/qwen2/, tokenizers 0.19.1). Set up a venv outside the tree:

    python3 -m venv /tmp/bpevenv
    /tmp/bpevenv/bin/pip install tokenizers==0.19.1 transformers==4.44.2
    /tmp/bpevenv/bin/python tests/oracle/gen_bpe_fixtures.py

Invalid UTF-8 cannot enter a Python str, so for lines that hold it the reference is composed
from HF's own parts, following mmrm's rule (models/tokenizer_bpe.h): each byte outside a valid
UTF-8 sequence is U+FFFD for NFC and the split regex (HF's normalizer and Split
pre-tokenizer run on that text) and itself for BPE (HF's BPE model run on the byte symbols of
each piece's original bytes). The composition is checked against the full tokenizer on every
valid line without added tokens before anything is written. Deterministic: fixed seeds.
"""
import json
import os
import random
import sys
import unicodedata

import tokenizers
import transformers
from tokenizers import Regex, Tokenizer, pre_tokenizers

assert tokenizers.__version__ == "0.19.1", tokenizers.__version__
assert transformers.__version__ == "4.44.2", transformers.__version__

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures", "tokenizers")
QWEN2 = os.path.join(FIX, "qwen2")
PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>",
         "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_SYM = bytes_to_unicode()

# ---- the corpus ----

WORDS = ("the of and to in is was that for it with as his on be at by had are but from or "
         "have an they which one you were her all she there would their we him been has when "
         "who will more no if out so said what up its about into than them can only other new "
         "some could time these two may then do first any my now such like our over man me even "
         "most made after also did many before must through back years where much your way well "
         "down should because each just those people how too little state good very make world "
         "still own see men work long get here between both life being under never day same "
         "another know while last might us great old year off come since against go came right "
         "used take three reward model image tokenizer InternVL Qwen2 shortcut preference").split()
CYR = "привет мир как дела хорошо спасибо Москва Россия язык модель награда изображение".split()
GREEK = "καλημέρα κόσμε ελληνικά γλώσσα μοντέλο ανταμοιβή".split()
ARAB = "مرحبا بالعالم اللغة العربية نموذج المكافأة الصورة كتاب مدرسة".split()
HEB = "שלום עולם עברית מודל תמונה".split()
DEVA = "नमस्ते दुनिया हिन्दी भाषा मॉडल पुरस्कार चित्र क्षत्रिय".split()
THAI = "สวัสดีชาวโลก ภาษาไทย แบบจำลอง".split()
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇯🇵", "🇺🇸", "👩🏾‍💻", "🧑‍🤝‍🧑", "✨", "🔥", "1️⃣",
         "🫠", "©", "™", "☃", "⚽", "🀄", "🂡", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟙𝟚𝟛"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", " \t ", "\r", "\r\r", "\x0b", "\x0c", "\u00a0", "\u3000",
          "\u2028", "\u2029", "\u0085", "\u2003", "\u200b", "\u180e", "\u202f", "\ufeff",
          "        ", " " * 33]
NUMS = ["0", "7", "42", "3.14159", "1,000,000", "2024-12-05", "12:30", "-17", "1e-5", "0x1F",
        "٣٤٥", "１２３", "²³", "Ⅻ", "½", "१२३", "〇"]
NFC_CASES = ["e\u0301", "E\u0301cole", "A\u030a", "\u212b", "\u2126", "n\u0303", "\u1100\u1161\u11a8",
             "\uf900", "o\u0308\u0304", "q\u0307\u0323", "\u0958", "ﬁ", "①", "Å", "\u0344", "a\u0315\u0300\u05ae\u0301b"]
CODE = [
    "def f(x):\n    return x ** 2  # square", "for (int i = 0; i < n; i++) { a[i] += b[i]; }",
    "if __name__ == '__main__':\n\tmain()", "SELECT * FROM t WHERE id = 42;",
    "const x = {a: 1, 'b': [2, 3]};", "#include <stdio.h>", "x = y != z && w >= 3 || !v",
    "std::vector<int> v{1,2,3};", "  \"key\": \"value\",", "$ ls -la | grep '\\.c$'",
    "<div class=\"x\">&amp;&lt;</div>", "λx.x", "a->b->c", "i++;--j;", "\\n\\t\\\\", "@decorator",
]
CONTRACTIONS = ["I'm", "you're", "it's", "we've", "they'll", "he'd", "don't", "IT'S", "YOU'RE",
                "We'Ve", "'s", "''", "'twas", "rock'n'roll", "l'été"]
SPECIAL_BITS = ADDED + ["<|im_start", "<|im_end|", "im_end|>", "<img", "IMG_CONTEXT>", "< img>",
                        "<|IM_START|>", "<<img>>", "</img></img>"]


def rand_letters(r, lo, hi, n):
    return "".join(chr(r.randint(lo, hi)) for _ in range(n))


def rand_unicode(r, n):
    out = []
    while len(out) < n:
        c = r.choice([r.randint(0x20, 0x7E), r.randint(0xA0, 0x2FFF), r.randint(0x3000, 0xD7FF),
                      r.randint(0xE000, 0xFFFD), r.randint(0x10000, 0x1FAFF), r.randint(0x20000, 0x2A6DF)])
        ch = chr(c)
        if unicodedata.category(ch) in ("Cn", "Co", "Cs"):  # unassigned: Unicode versions differ
            continue
        out.append(ch)
    return "".join(out)


def piece(r, kind):
    if kind == "en":
        words = [r.choice(WORDS) for _ in range(r.randint(1, 14))]
        if r.random() < 0.3:
            words[0] = words[0].capitalize()
        if r.random() < 0.2:
            words = [w.upper() for w in words]
        return " ".join(words) + r.choice(["", ".", "!", "?", ",", ":", ";", "...", " —"])
    if kind == "zh":
        return rand_letters(r, 0x4E00, 0x9FA5, r.randint(1, 30)) + r.choice(["", "。", "，", "！", "？"])
    if kind == "ja":
        return rand_letters(r, 0x3041, 0x3096, r.randint(1, 10)) + rand_letters(r, 0x30A1, 0x30FA, r.randint(0, 8))
    if kind == "ko":
        return rand_letters(r, 0xAC00, 0xD7A3, r.randint(1, 12))
    if kind == "cyr":
        return " ".join(r.choice(CYR) for _ in range(r.randint(1, 8)))
    if kind == "greek":
        return " ".join(r.choice(GREEK) for _ in range(r.randint(1, 6)))
    if kind == "ar":
        return " ".join(r.choice(ARAB) for _ in range(r.randint(1, 8)))
    if kind == "he":
        return " ".join(r.choice(HEB) for _ in range(r.randint(1, 6)))
    if kind == "deva":
        return " ".join(r.choice(DEVA) for _ in range(r.randint(1, 6)))
    if kind == "thai":
        return r.choice(THAI)
    if kind == "emoji":
        return "".join(r.choice(EMOJI) for _ in range(r.randint(1, 6)))
    if kind == "num":
        if r.random() < 0.3:
            return "".join(r.choice("0123456789") for _ in range(r.randint(5, 60)))
        return r.choice(NUMS)
    if kind == "code":
        return r.choice(CODE).replace("\n", r.choice([" ", "\t", "  "]))
    if kind == "space":
        return r.choice(SPACES)
    if kind == "nfc":
        return r.choice(NFC_CASES)
    if kind == "contr":
        return r.choice(CONTRACTIONS)
    if kind == "special":
        return r.choice(SPECIAL_BITS)
    if kind == "uni":
        return rand_unicode(r, r.randint(1, 12))
    if kind == "ctrl":
        return "".join(chr(r.choice([0, 1, 7, 8, 27, 31, 127, 0x80, 0x9f])) for _ in range(r.randint(1, 3)))
    if kind == "punct":
        return "".join(r.choice("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~«»“”‘’…—–·•、。「」（）") for _ in range(r.randint(1, 6)))
    raise ValueError(kind)


KINDS = ["en"] * 8 + ["zh"] * 3 + ["ja", "ko", "cyr", "cyr", "greek", "ar", "ar", "he", "deva", "deva",
         "thai", "emoji", "emoji", "num", "num", "code", "code", "space", "space", "space", "nfc",
         "contr", "special", "uni", "ctrl", "punct"]


def text_line(r, max_parts=3):
    parts = []
    for _ in range(r.randint(1, max_parts)):
        kind = r.choice(KINDS)
        parts.append(piece(r, kind))
        parts.append(r.choice(["", " ", " ", " ", "  ", "\t"]))
    return "".join(parts)


def invalid_bytes(r):
    return r.choice([b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3", b"\xe4\xbd", b"\xed\xa0\x80", b"\xf0\x9f\x98",
                     b"\xf5", b"\xff", b"\xfe\xff", b"\xf8\x88\x80\x80\x80", b"\xe0\x80\xaf",
                     bytes([r.randint(0x80, 0xFF)]), bytes(r.randint(0x80, 0xFF) for _ in range(r.randint(2, 6)))])


def make_corpus():
    r = random.Random(20261205)
    lines = []
    while len(lines) < 19200:
        lines.append(text_line(r).replace("\n", " ").encode("utf-8"))
    # invalid UTF-8 inside text (no added tokens in these lines)
    for _ in range(800):
        parts = []
        for _ in range(r.randint(1, 8)):
            if r.random() < 0.5:
                parts.append(invalid_bytes(r))
            else:
                kind = r.choice([k for k in KINDS if k != "special"])
                parts.append(piece(r, kind).replace("\n", " ").encode("utf-8"))
        lines.append(b"".join(parts))
    # very long lines: the heap path of BPE, long whitespace and digit runs
    lines.append(b"a" * 20000)
    lines.append(b" " * 5000 + b"x")
    lines.append(b"\t " * 3000)
    lines.append(("9" * 8000).encode())
    lines.append(("\u4e2d" * 6000).encode())
    lines.append(("ab" * 5000).encode())
    lines.append(("😀" * 2000).encode())
    lines.append(b"\xff" * 3000)
    for _ in range(12):
        lines.append(" ".join(text_line(r, 6) for _ in range(40)).replace("\n", " ").encode("utf-8"))
    lines.append(b"")
    r.shuffle(lines)
    assert all(b"\n" not in ln for ln in lines)
    multi = []
    for _ in range(800):
        sep = r.choice(["\n", "\n\n", "\r\n", " \n", "\n  ", "\n\t", "\n\n\n  \n", "  \r\n\r\n "])
        text = sep.join(text_line(r) for _ in range(r.randint(2, 5)))
        if r.random() < 0.2:
            text += r.choice(["\n", "\n\n", " \n "])
        if r.random() < 0.1:
            text = r.choice(["\n", " \n", "\n\n"]) + text
        multi.append(text.replace("\x00", "\x01"))
    multi.append("def f(x):\n    if x:\n        return 1\n\n    return 0\n")
    multi.append("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                 "<img>" + "<IMG_CONTEXT>" * 4 + "</img>\nWhat is in the image?<|im_end|>\n"
                 "<|im_start|>assistant\nA red square.<|im_end|>")
    return lines, multi


# ---- the references ----

class Reference:
    def __init__(self, backend):
        self.bt = backend
        self.split = pre_tokenizers.Split(Regex(PATTERN), behavior="isolated", invert=False)

    def full(self, texts):
        return [e.ids for e in self.bt.encode_batch(texts, add_special_tokens=False)]

    def composed(self, raw):
        """mmrm's rule for invalid UTF-8 from HF's parts; raw holds no added token"""
        s = raw.decode("utf-8", "surrogateescape")
        norm_chars, real = [], []
        seg = []

        def flush():
            if seg:
                t = self.bt.normalizer.normalize_str("".join(seg)) if self.bt.normalizer else "".join(seg)
                norm_chars.extend(t)
                real.extend(c.encode("utf-8") for c in t)
                seg.clear()
        for c in s:
            if 0xDC80 <= ord(c) <= 0xDCFF:
                flush()
                norm_chars.append("\ufffd")
                real.append(bytes([ord(c) - 0xDC00]))
            else:
                seg.append(c)
        flush()
        view = "".join(norm_chars)
        ids = []
        at = 0
        for text, (a, b) in self.split.pre_tokenize_str(view):
            assert view[a:b] == text and a == at, (view, text, a, b)
            at = b
            sym = "".join(BYTE_SYM[x] for x in b"".join(real[a:b]))
            ids.extend(t.id for t in self.bt.model.tokenize(sym))
        assert at == len(view)
        return ids


def reference_ids(ref, lines):
    valid = []
    for ln in lines:
        try:
            valid.append(ln.decode("utf-8"))
        except UnicodeDecodeError:
            valid.append(None)
    full = ref.full([v for v in valid if v is not None])
    out, k, checked = [], 0, 0
    for ln, v in zip(lines, valid):
        if v is None:
            out.append(ref.composed(ln))
            continue
        ids = full[k]
        k += 1
        if not any(a in v for a in ADDED):
            assert ref.composed(ln) == ids, ("composition differs from the tokenizer", v)
            checked += 1
        out.append(ids)
    return out, checked


def write_ids(path, all_ids):
    with open(path, "w") as f:
        for ids in all_ids:
            f.write(" ".join(map(str, ids)) + "\n")


def tiny_tokenizer(full_json):
    """the first 2,000 merges of Qwen2 and the tokens they need, as a tokenizer.json"""
    d = json.loads(full_json)
    vocab = d["model"]["vocab"]
    merges = d["model"]["merges"][:2000]
    keep = sorted((i, t) for t, i in vocab.items() if len(t) == 1 and t in BYTE_SYM.values())
    new = {t: n for n, (_, t) in enumerate(keep)}
    for m in merges:
        a, b = m.split(" ")
        if a + b not in new:
            new[a + b] = len(new)
    d["model"]["vocab"] = new
    d["model"]["merges"] = merges
    d["added_tokens"] = [dict(a, id=len(new) + k) for k, a in enumerate(d["added_tokens"])]
    return d


def main():
    tok = transformers.AutoTokenizer.from_pretrained(QWEN2, use_fast=True)
    got = [tok.convert_ids_to_tokens(151646 + k) for k in range(9)]
    assert got == ADDED[3:], got
    ref = Reference(tok.backend_tokenizer)
    lines, multi = make_corpus()
    ids, checked = reference_ids(ref, lines)
    multi_ids = [e.ids for e in tok.backend_tokenizer.encode_batch(multi, add_special_tokens=False)]
    for text, e in zip(multi, multi_ids):  # the slow path agrees where it applies
        if not any(a in text for a in ADDED):
            assert ref.composed(text.encode("utf-8")) == e
    with open(os.path.join(FIX, "bpe_corpus.txt"), "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    write_ids(os.path.join(FIX, "bpe_ids.txt"), ids)
    with open(os.path.join(FIX, "bpe_multi.jsonl"), "w", encoding="utf-8") as f:
        for t in multi:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    write_ids(os.path.join(FIX, "bpe_multi_ids.txt"), multi_ids)

    tiny = tiny_tokenizer(tok.backend_tokenizer.to_str())
    for name, pairs in (("tiny_json", False), ("tiny_json_pairs", True)):
        d = json.loads(json.dumps(tiny))
        if pairs:
            d["model"]["merges"] = [m.split(" ") for m in d["model"]["merges"]]
        os.makedirs(os.path.join(FIX, name), exist_ok=True)
        with open(os.path.join(FIX, name, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(d, f, ensure_ascii=False)
    tiny_ref = Reference(Tokenizer.from_str(json.dumps(tiny)))
    tiny_ids, _ = reference_ids(tiny_ref, lines[:2000])
    write_ids(os.path.join(FIX, "tiny_ids.txt"), tiny_ids)
    n_bytes = sum(len(ln) + 1 for ln in lines)
    print(f"{len(lines)} lines ({n_bytes} bytes, {sum(map(len, ids))} tokens; "
          f"{sum(1 for ln in lines if not is_utf8(ln))} with invalid UTF-8); composition checked on "
          f"{checked} lines; {len(multi)} multi-line texts", file=sys.stderr)


def is_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


if __name__ == "__main__":
    main()
