/* tiny_model.h - the tiny InternVL-shaped model config several unit tests build (a 2-layer
 * 8-wide ViT on 8x8 images: 4 tokens per tile; a 2-layer 16-wide decoder of arch, 4 heads, 2
 * KV heads, head dim 4, vocabulary 270 with IMG_CONTEXT 262; Hermes-2 template). */
#ifndef MMRM_TESTS_TINY_MODEL_H
#define MMRM_TESTS_TINY_MODEL_H

#include "models/config.h"

ModelConfig test_tiny_config(LlmArch arch);

#endif
