/* tiny_model.c - see tiny_model.h */
#include "tests/unit/tiny_model.h"

#include <stdio.h>
#include <string.h>

ModelConfig test_tiny_config(LlmArch arch) {
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.vision = (VisionConfig){.hidden = 8, .heads = 2, .intermediate = 12, .layers = 2,
                              .image_size = 8, .patch = 2, .channels = 3, .qkv_bias = 1,
                              .qk_norm = 0, .rms_norm = 0, .eps = 1e-6f};
    c.llm = (LlmConfig){.arch = arch, .hidden = 16, .heads = 4, .kv_heads = 2, .head_dim = 4,
                        .intermediate = 16, .layers = 2, .vocab = 270, .rope_theta = 10000.0f,
                        .rms_eps = 1e-6f, .max_positions = 4096};
    c.image_size = 8;
    c.select_layer = -1;
    c.downsample_ratio = 0.5f;
    snprintf(c.template_name, sizeof c.template_name, "Hermes-2");
    c.img_context_id = 262;
    return c;
}
