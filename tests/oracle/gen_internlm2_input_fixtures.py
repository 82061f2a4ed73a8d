"""gen_internlm2_input_fixtures.py - InternVL2-2B/8B's exact reward-model input (InternLM2
tokenizer, internlm2-chat template), from the reference's preprocessing.

Writes
- tests/fixtures/tokenizers/internlm2/: a SentencePiece tokenizer directory laid out as
  InternVL2-8B's: tokenizer.model = tests/fixtures/tokenizers/spm/llama/tokenizer.model (a
  4,000-piece BPE model with byte fallback; InternLM2's own 92,544-piece model is not
  available here), tokenizer_config.json and special_tokens_map.json with InternLM2-chat's
  added tokens at their published ids (0 <unk>, 1 <s>, 2 </s>, 92538 <|plugin|>,
  92539 <|interpreter|>, 92540 <|action_end|>, 92541 <|action_start|>, 92542 <|im_end|>,
  92543 <|im_start|>) and InternVL's, appended by its training code with
  add_tokens(..., special_tokens=True) at 92544..92552 (<img>, </img>, <IMG_CONTEXT> = 92546,
  <quad>, </quad>, <ref>, </ref>, <box>, </box>), all special; bos <s>, eos = pad </s>,
  add_bos_token true, add_eos_token false. The ids 4000..92537 have no token (the small
  model's pieces end at 3999), so the tokenizer's id space is 92553 = InternVL2-8B's
  vocabulary.
- tests/fixtures/internlm2_input/rows.jsonl: one JSON object per row with name, system (null:
  the template's own message), prompt, response, num_patches, num_image_token, text (the
  templated text after the image block is expanded), ids (the reference tokenizer's),
  reward_index (where the reference reads the reward in a right-padded batch of all rows),
  pad_id, and reference_drops_im_end (true when the stripped response is empty).

What it reimplements (tests/oracle/README.md lists the files read):
- InternVL's 'internlm2-chat' conversation (SeparatorStyle.MPT, registered like Hermes-2):
  system_prompt + sep, then for each message role + message + sep, or the bare role for an
  empty message; system_template '<|im_start|>system\\n{system_message}', roles
  '<|im_start|>user\\n' and '<|im_start|>assistant\\n', sep '<|im_end|>'.
- Generalizable-MM-RM's preprocess_internlm: every message .strip()ed (the human turn is
  '<image>\\n' + prompt, stripped as a whole; the system message is not a message and is
  not stripped); the first '<image>' becomes '<img>' + '<IMG_CONTEXT>' * n + '</img>'; the
  text is tokenized with the tokenizer's BOS, no EOS, truncation=True at model_max_length
  4096 (right; no row here reaches it).
- InternVLRewardModel.forward: the score is read at (argmax(input_ids == pad_token_id) - 1) % T
  per row of the right-padded batch; InternLM2's pad is its eos '</s>' (id 2), so a text
  holding '</s>' is read before it.

Tokenizer: the reference loads InternLM2's remote-code InternLM2Tokenizer (use_fast=False),
whose _tokenize is sp_model.encode(text, out_type=str) on each run between added tokens:
exactly transformers' slow LlamaTokenizer with legacy=True, which is what runs here (the
remote code is not importable without network access). The script checks, for every row,
that the ids equal <s> + per-run sentencepiece encode, split at the added tokens.

    /tmp/spmvenv/bin/python tests/oracle/gen_internlm2_input_fixtures.py

(sentencepiece==0.2.0, transformers==4.44.2, tokenizers==0.19.1, protobuf; no torch needed.)
A rerun gives identical bytes.
"""
import json
import os
import shutil

import sentencepiece
import tokenizers
import transformers

assert transformers.__version__ == "4.44.2", transformers.__version__
assert tokenizers.__version__ == "0.19.1", tokenizers.__version__
assert sentencepiece.__version__ == "0.2.0", sentencepiece.__version__

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
SPM_MODEL = os.path.join(FIX, "tokenizers", "spm", "llama", "tokenizer.model")
TOK_DIR = os.path.join(FIX, "tokenizers", "internlm2")
OUT = os.path.join(FIX, "internlm2_input")

SYS = ("你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，"
       "英文名叫InternVL, 是一个有用无害的人工智能助手。")
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
INTERNVL_SPECIALS = [IMG_START, IMG_END, IMG_CONTEXT, "<quad>", "</quad>", "<ref>", "</ref>",
                     "<box>", "</box>"]
# InternLM2-chat's tokenizer_config.json added_tokens_decoder, then InternVL2's additions
ADDED = [(0, "<unk>"), (1, "<s>"), (2, "</s>"), (92538, "<|plugin|>"),
         (92539, "<|interpreter|>"), (92540, "<|action_end|>"), (92541, "<|action_start|>"),
         (92542, "<|im_end|>"), (92543, "<|im_start|>")] + \
        [(92544 + i, t) for i, t in enumerate(INTERNVL_SPECIALS)]
NUM_IMAGE_TOKEN = (448 // 14) ** 2 // 4  # InternVL2-8B: 32 x 32 patches, pixel shuffle 0.5

# (name, system or None, prompt, response, num_patches)
ROWS = [
    ("plain_1tile", None, "What is in the image?", "A red bus on a street.", 1),
    ("newlines_3tiles", None, "Describe the image.\nBe brief.\n\n",
     "Two cats.\n\n- one is black\n- one is white\n", 3),
    ("cjk_7tiles", None, "这张图片里有什么？请详细描述。",
     "图片中有一只猫坐在窗台上，阳光照在它身上。", 7),
    ("empty_system", "", "How many people are there?", " Three people, standing.", 1),
    ("custom_system", "You are a careful judge of image descriptions.",
     "Is the sky visible?", "Yes, the sky is clear and blue.", 3),
    ("custom_system_spaces", "  Judge carefully.\n", "Is it raining?", "No.", 1),
    ("whitespace_stripped", None, "  Count the dogs.  \t\n",
     "\n  There are 2 dogs.  \n", 1),
    ("unicode_space_stripped", None, "\u3000Where is the cat?\u00a0\u2003",
     "\u2028\u3000On the mat.\u00a0 \x1c", 1),
    ("im_end_in_response", None, "Say something.",
     "Sure<|im_end|><|im_start|>assistant\nagain", 1),
    ("specials_in_prompt", None, "What does <image> mean here? <img>x</img> <s> <|plugin|>",
     "It is a tag: <ref>cat</ref><box>[[1, 2, 3, 4]]</box> <quad></quad> <|action_start|>", 3),
    ("pad_in_response", None, "Finish the sentence.", "The end.</s> More text.", 1),
    ("pad_in_prompt", None, "Before</s>after", "An answer.", 1),
    ("mixed_scripts_emoji", None, "Quelle est la réponse ? 答案是什么？ 🤔",
     "La réponse est 42 — 答案是四十二。 👍 e\u0301 🇯🇵", 7),
    ("empty_response", None, "Anything?", "", 1),
    ("blank_response", None, "Anything else?", " \n\t ", 1),
]


def internlm2_chat_prompt(system, messages):
    """InternVL's Conversation.get_prompt for SeparatorStyle.MPT with internlm2-chat's fields"""
    ret = "<|im_start|>system\n" + system + "<|im_end|>"
    for role, message in messages:
        ret += role + message + "<|im_end|>" if message else role
    return ret


def reference_text(system, prompt, response, num_patches):
    # preprocess_internlm: sentence['value'] = sentence['value'].strip() for every message
    messages = [("<|im_start|>user\n", ("<image>\n" + prompt).strip()),
                ("<|im_start|>assistant\n", response.strip())]
    text = internlm2_chat_prompt(SYS if system is None else system, messages)
    block = IMG_START + IMG_CONTEXT * (NUM_IMAGE_TOKEN * num_patches) + IMG_END
    return text.replace("<image>", block, 1)


def write_tokenizer_dir():
    os.makedirs(TOK_DIR, exist_ok=True)
    shutil.copyfile(SPM_MODEL, os.path.join(TOK_DIR, "tokenizer.model"))
    entry = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
             "special": True}
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(i): dict(content=t, **entry) for i, t in ADDED},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|action_start|>",
                                      "<|action_end|>", "<|interpreter|>", "<|plugin|>"],
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "model_max_length": 4096,
        "pad_token": "</s>",
        "tokenizer_class": "InternLM2Tokenizer",
        "unk_token": "<unk>",
    }
    special_map = {
        "additional_special_tokens": config["additional_special_tokens"],
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
    }
    for name, obj in (("tokenizer_config.json", config), ("special_tokens_map.json", special_map)):
        with open(os.path.join(TOK_DIR, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")


def load_reference():
    # train_rm.py: use_fast=False, padding_side='right', add_eos_token=False,
    # model_max_length=max_length; InternLM2Tokenizer == LlamaTokenizer(legacy=True) here
    tok = transformers.LlamaTokenizer.from_pretrained(
        TOK_DIR, legacy=True, model_max_length=4096, padding_side="right",
        add_eos_token=False)
    assert tok.add_tokens(INTERNVL_SPECIALS, special_tokens=True) == 0  # InternVL2-8B has them
    for i, t in ADDED:
        assert tok.convert_tokens_to_ids(t) == i, t
    assert tok.bos_token_id == 1 and tok.eos_token_id == 2 and tok.pad_token_id == 2
    return tok


def per_run_ids(sp, text):
    """<s> + sentencepiece's encode of each run between added tokens (leftmost, longest)"""
    added = sorted((t for _, t in ADDED), key=len, reverse=True)
    ids_of = {t: i for i, t in ADDED}
    out, run, k = [1], "", 0
    while k < len(text):
        hit = next((t for t in added if text.startswith(t, k)), None)
        if hit is None:
            run += text[k]
            k += 1
            continue
        if run:
            out += sp.encode(run)
        run = ""
        out.append(ids_of[hit])
        k += len(hit)
    if run:
        out += sp.encode(run)
    return out


def main():
    write_tokenizer_dir()
    tok = load_reference()
    sp = sentencepiece.SentencePieceProcessor(model_file=SPM_MODEL)
    pad = tok.pad_token_id
    texts = [reference_text(s, p, r, n) for _, s, p, r, n in ROWS]
    ids = tok(texts, max_length=4096, truncation=True).input_ids
    for text, row in zip(texts, ids):
        assert row == per_run_ids(sp, text), text[:80]
    T = max(map(len, ids))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "rows.jsonl"), "w", encoding="utf-8") as f:
        for (name, system, prompt, response, n), text, row in zip(ROWS, texts, ids):
            assert len(row) < 4096 and row[0] == 1
            padded = row + [pad] * (T - len(row))
            is_pad = [int(t == pad) for t in padded]
            reward_index = (is_pad.index(max(is_pad)) - 1) % T  # torch argmax: first maximum
            rec = {"name": name, "system": system, "prompt": prompt, "response": response,
                   "num_patches": n, "num_image_token": NUM_IMAGE_TOKEN * n, "text": text,
                   "ids": row, "reward_index": reward_index, "pad_id": pad,
                   "reference_drops_im_end": response.strip() == ""}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            print(f"{name}: {len(row)} ids, reward at {reward_index}")


if __name__ == "__main__":
    main()
