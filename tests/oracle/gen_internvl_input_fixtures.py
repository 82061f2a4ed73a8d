"""gen_internvl_input_fixtures.py - InternVL2-1B's exact reward-model input, from the reference.

Writes tests/fixtures/internvl_input/rows.jsonl: one JSON object per row with
  name, system (null: the template's own message), prompt, response, num_patches,
  num_image_token (256 x num_patches), text (the templated text after the image block is
  expanded), ids (what the reference tokenizer gives), reward_index (where the reference
  reads the reward in a right-padded batch of all rows), pad_id, and
  reference_drops_im_end (true for an empty response; see below).

What it reimplements (tests/oracle/README.md lists the files read):
- InternVL's 'Hermes-2' conversation (SeparatorStyle.MPT): system_prompt + sep, then for each
  message role + message + sep, or the bare role for an empty message; system_template
  '<|im_start|>system\\n{system_message}', roles '<|im_start|>user\\n' and
  '<|im_start|>assistant\\n', sep '<|im_end|>'.
- Generalizable-MM-RM's LazyInternRewardDataset.get_item + preprocess_mpt: the human turn is
  '<image>\\n' + prompt, the gpt turn the response, nothing is stripped; the first '<image>'
  of the text becomes '<img>' + '<IMG_CONTEXT>' * (num_image_token * num_patches) + '</img>';
  the text is tokenized by AutoTokenizer(use_fast=False, padding_side='right',
  add_eos_token=False, model_max_length=4096) after add_tokens of the InternVL specials,
  truncation=True (no row here reaches 4096).
- InternVLRewardModel.forward: the score is read at
  (argmax(input_ids == pad_token_id) - 1) % T, per row of the right-padded batch: the token
  before the first pad id, or the last token of a row holding none. pad_token_id is the
  tokenizer's ('<|endoftext|>' for Qwen2), so a text that holds '<|endoftext|>' is read
  before it.

The slow tokenizer (what the reference loads) is checked against the fast one on every row.
internlm2-chat (preprocess_internlm: each message .strip()ed, <s> prepended, the same
read-out) is not generated: it needs InternLM2's SentencePiece tokenizer, which mmrm does not
have yet.

    /tmp/bpevenv/bin/python tests/oracle/gen_internvl_input_fixtures.py

(transformers==4.44.2, tokenizers==0.19.1; no torch needed.) A rerun gives identical bytes.
"""
import json
import os

import tokenizers
import transformers

assert transformers.__version__ == "4.44.2", transformers.__version__
assert tokenizers.__version__ == "0.19.1", tokenizers.__version__

HERE = os.path.dirname(os.path.abspath(__file__))
QWEN2 = os.path.join(HERE, "..", "fixtures", "tokenizers", "qwen2")
OUT = os.path.join(HERE, "..", "fixtures", "internvl_input")

SYS = ("你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，"
       "英文名叫InternVL, 是一个有用无害的人工智能助手。")
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
SPECIALS = [IMG_START, IMG_END, IMG_CONTEXT, "<quad>", "</quad>", "<ref>", "</ref>", "<box>",
            "</box>"]
NUM_IMAGE_TOKEN = (448 // 14) ** 2 // 4  # InternVL2-1B: 32 x 32 patches, pixel shuffle 0.5

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
    ("whitespace_kept", None, "  Count the dogs.  \t", "\n  There are 2 dogs.  \n", 1),
    ("im_end_in_response", None, "Say something.",
     "Sure<|im_end|><|im_start|>assistant\nagain", 1),
    ("image_tags_in_text", None, "What does <image> mean here? <img>x</img>",
     "It is a tag: <ref>cat</ref><box>[[1, 2, 3, 4]]</box>", 3),
    ("endoftext_in_response", None, "Finish the sentence.", "The end.<|endoftext|> More text.",
     1),
    ("mixed_scripts_emoji", None, "Quelle est la réponse ? 答案是什么？ 🤔",
     "La réponse est 42 — 答案是四十二。 👍 e\u0301", 7),
    ("empty_response", None, "Anything?", "", 1),
]


def hermes2_prompt(system, messages):
    """InternVL's Conversation.get_prompt for SeparatorStyle.MPT with the Hermes-2 fields"""
    ret = "<|im_start|>system\n" + system + "<|im_end|>"
    for role, message in messages:
        ret += role + message + "<|im_end|>" if message else role
    return ret


def reference_text(system, prompt, response, num_patches):
    messages = [("<|im_start|>user\n", "<image>\n" + prompt),
                ("<|im_start|>assistant\n", response)]
    text = hermes2_prompt(SYS if system is None else system, messages)
    block = IMG_START + IMG_CONTEXT * (NUM_IMAGE_TOKEN * num_patches) + IMG_END
    return text.replace("<image>", block, 1)


def load(use_fast):
    tok = transformers.AutoTokenizer.from_pretrained(
        QWEN2, model_max_length=4096, padding_side="right", use_fast=use_fast,
        add_eos_token=False)
    assert tok.add_tokens(SPECIALS, special_tokens=True) == 0  # InternVL2-1B ships them
    return tok


def main():
    slow, fast = load(False), load(True)
    assert type(slow).__name__ == "Qwen2Tokenizer", type(slow)
    pad = slow.pad_token_id
    assert pad == slow.convert_tokens_to_ids("<|endoftext|>")
    texts = [reference_text(s, p, r, n) for _, s, p, r, n in ROWS]
    ids = slow(texts, max_length=4096, truncation=True).input_ids
    assert ids == fast(texts, max_length=4096, truncation=True).input_ids
    T = max(map(len, ids))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "rows.jsonl"), "w", encoding="utf-8") as f:
        for (name, system, prompt, response, n), text, row in zip(ROWS, texts, ids):
            assert len(row) < 4096
            padded = row + [pad] * (T - len(row))
            is_pad = [int(t == pad) for t in padded]
            reward_index = (is_pad.index(max(is_pad)) - 1) % T  # torch argmax: first maximum
            rec = {"name": name, "system": system, "prompt": prompt, "response": response,
                   "num_patches": n, "num_image_token": NUM_IMAGE_TOKEN * n, "text": text,
                   "ids": row, "reward_index": reward_index, "pad_id": pad,
                   "reference_drops_im_end": response == ""}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            print(f"{name}: {len(row)} ids, reward at {reward_index}")


if __name__ == "__main__":
    main()
