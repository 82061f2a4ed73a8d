/* setup.c - building a run before its first step (run.h): the models (resumed from a
 * checkpoint, loaded, or initialised from a config), the tokenizer and chat template, the
 * pair sets, graph and batch loader, the optimizer state, the gradient reduction across
 * ranks, bf16 weight copies and the blank-image features of a frozen bias ViT. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/checkpoint.h"
#include "models/image.h"
#include "runtime/safetensors.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "train/run.h"

/* ---------------------------------------------------------------- models */

static void freeze_of(const TrainConfig *c, int f[PG_COUNT]) {
    memset(f, 0, sizeof(int) * PG_COUNT);
    f[PG_VISION] = c->freeze_backbone;
    f[PG_CONNECTOR] = c->freeze_mlp;
    f[PG_LLM] = c->freeze_llm;
    if (c->lora_r > 0) f[PG_VISION] = f[PG_CONNECTOR] = f[PG_LLM] = 1; /* LoRA: the base is frozen */
}

static LoraConfig lora_of(const TrainConfig *c) {
    LoraConfig lc = {.r = c->lora_r, .alpha = c->lora_alpha, .dropout = c->lora_dropout,
                     .n_targets = c->n_lora_target_modules};
    for (int i = 0; i < c->n_lora_target_modules; i++)
        snprintf(lc.targets[i], LORA_NAME_LEN, "%s", c->lora_target_modules[i]);
    return lc;
}

/* the model directory dir, or (dir unset) a random init from the config.json init; with
 * lora_r > 0 plus fresh adapters, or those of a checkpoint (adapter, a resume) */
static int load_or_init(const Run *r, RewardModel *m, const char *dir, const char *init,
                        uint64_t seed, const char *what, const char *adapter) {
    const TrainConfig *c = r->c;
    int freeze[PG_COUNT];
    freeze_of(c, freeze);
    LoraConfig lc = lora_of(c);
    if (dir && *dir) {
        LoadReport rep;
        if (rm_load_ex(m, dir, r->rt->device, freeze, seed, c->force_image_size, c->drop_path_rate,
                       &lc, adapter, &rep))
            return -1;
        if (!r->rt->quiet)
            mmrm_log("%s model: %s (%d tensors, %s on disk, %d ignored%s%s)", what, dir, rep.n_loaded,
                     rep.disk_dtype, rep.n_ignored, rep.score_initialised ? ", score.weight initialised" : "",
                     rep.pos_resized_from ? ", position embedding resized" : "");
        return 0;
    }
    ModelConfig cfg;
    if (config_load(init, &cfg)) return -1;
    if (c->force_image_size > 0) cfg.image_size = cfg.vision.image_size = c->force_image_size;
    if (c->drop_path_rate >= 0) cfg.vision.drop_path_rate = c->drop_path_rate;
    if (config_validate(&cfg, init)) return -1;
    if (adapter && lora_read_config(adapter, &lc)) return -1;
    if (lc.r > 0 && lora_check(&lc, &cfg, init)) return -1;
    rm_create_lora(m, &cfg, DEV_CPU, freeze, &lc);
    rm_init_random(m, seed);
    if (adapter && lora_load_weights(m, adapter)) {
        rm_free(m);
        return -1;
    }
    rm_to_device(m, r->rt->device);
    if (!r->rt->quiet) mmrm_log("%s model: random init from %s (seed %llu)", what, init, (unsigned long long)seed);
    return 0;
}

/* what a LoRA run trains, and the memory that costs beside the frozen base (fp32: weights
 * of every parameter; gradients and both AdamW moments of the trainable ones) */
static void log_lora(const Run *r, const RewardModel *m, const char *what) {
    if (r->rt->quiet || !m->lora_of) return;
    const ParamStore *ps = &m->ps, *bs = m->shared_base ? &m->shared_base->ps : ps;
    size_t ad = params_count_group(ps, PG_LORA), tr = ps->n_trainable;
    /* a shared base's frozen weights count as this model's parameters, not as its memory */
    size_t total = ps->numel + (m->shared_base ? bs->numel - bs->n_trainable : 0);
    double mib = 1024.0 * 1024.0;
    mmrm_log("%s model: LoRA r %d, alpha %g, dropout %g on %d linear layers: %zu trainable parameters "
             "(adapters %zu, head %zu) of %zu (%.3f%%); weights %.1f MiB, gradients + AdamW moments "
             "%.2f MiB (full fine-tuning with the ViT frozen: %.1f MiB)", what, m->lora.r, m->lora.alpha,
             m->lora.dropout, lora_count(m), tr, ad, tr - ad, total, 100.0 * tr / total,
             4.0 * ps->numel / mib, 12.0 * tr / mib,
             12.0 * (double)(total - ad - params_count_group(bs, PG_VISION)) / mib);
}

/* resumed: the checkpoint's trainer state, weights and AdamW moments */
static int main_model(Run *r) {
    const TrainConfig *c = r->c;
    uint64_t seed = (uint64_t)c->seed;
    if (!*r->resume_dir) return load_or_init(r, &r->main, c->model_name_or_path, c->init_model_config, seed, "main", NULL);
    /* a LoRA checkpoint holds the adapters: the base comes from where the run started */
    if (checkpoint_load_state(r) ||
        (c->lora_r > 0 ? load_or_init(r, &r->main, c->model_name_or_path, c->init_model_config, seed, "main", r->resume_dir)
                       : load_or_init(r, &r->main, r->resume_dir, NULL, seed, "main", NULL)) ||
        checkpoint_load_optimizer(&r->main.ps, r->resume_dir))
        return -1;
    mmrm_log("resuming from %s (step %ld)", r->resume_dir, r->st.step);
    return 0;
}

/* LoRA with bias_model_path = model_name_or_path: the bias model runs on the main model's
 * frozen base weights (one copy in memory) with adapters and a head of its own, as a bias
 * model loaded from the same directory would (its head from there, or the spec's init when
 * the directory has none) */
static int shared_bias_model(Run *r, uint64_t seed) {
    const TrainConfig *c = r->c;
    char dir[PATH_MAX];
    int resumed = *r->resume_dir != '\0';
    if (resumed && !fs_join(dir, sizeof dir, r->resume_dir, "bias")) return -1;
    int init_score = 0;
    if (!resumed) {
        ModelWeights *w = mw_open(c->bias_model_path);
        if (!w) return -1;
        init_score = mw_find(w, "score.weight", NULL) == NULL;
        mw_close(w);
        /* the main model's head is still the one it loaded: copy it, or init as rm_load would */
    }
    if (lora_create_shared(&r->bias, &r->main, seed, init_score, resumed ? dir : NULL)) return -1;
    rm_to_device(&r->bias, r->rt->device);
    if (resumed && checkpoint_load_optimizer(&r->bias.ps, dir)) return -1;
    r->bias.grad_checkpoint = c->grad_checkpoint;
    r->bias.share_prefix = c->share_prefix, r->bias.packing = c->packing;
    if (!r->rt->quiet)
        mmrm_log("bias model: shares the main model's frozen base (%.1f MiB of weights not "
                 "duplicated), adapters and score head of its own", 4.0 * (double)(r->main.ps.numel -
                 r->main.ps.n_trainable) / (1024.0 * 1024.0));
    return 0;
}

/* the bias model reads the main model's rows: same image size, tokens, vocabulary, system
 * message */
static int bias_model(Run *r) {
    const TrainConfig *c = r->c;
    uint64_t seed = (uint64_t)c->seed + 1;
    char dir[PATH_MAX];
    if (c->lora_r > 0 && *c->model_name_or_path && !strcmp(c->bias_model_path, c->model_name_or_path))
        return shared_bias_model(r, seed);
    if (!*r->resume_dir) {
        if (load_or_init(r, &r->bias, c->bias_model_path, c->init_bias_model_config, seed, "bias", NULL)) return -1;
    } else if (!fs_join(dir, sizeof dir, r->resume_dir, "bias") ||
               (c->lora_r > 0 ? load_or_init(r, &r->bias, c->bias_model_path, c->init_bias_model_config, seed, "bias", dir)
                              : load_or_init(r, &r->bias, dir, NULL, seed, "bias", NULL)) ||
               checkpoint_load_optimizer(&r->bias.ps, dir)) {
        return -1;
    }
    r->bias.grad_checkpoint = c->grad_checkpoint;
    r->bias.share_prefix = c->share_prefix, r->bias.packing = c->packing;
    const ModelConfig *m = &r->main.cfg, *b = &r->bias.cfg;
    if (b->image_size != m->image_size || config_tokens_per_tile(b) != config_tokens_per_tile(m) ||
        b->img_context_id != m->img_context_id || b->llm.vocab != m->llm.vocab) {
        mmrm_set_error("the bias model must take the main model's inputs (image size, tokens per "
                       "tile, vocabulary, IMG_CONTEXT id)");
        return -1;
    }
    const char *ms = config_system_message(m), *bs = config_system_message(b);
    if ((ms == NULL) != (bs == NULL) || (ms && strcmp(ms, bs))) {
        mmrm_set_error("the bias model's system_message (\"%s\") must equal the main model's "
                       "(\"%s\"): both read the same templated rows",
                       bs ? bs : "<the template's>", ms ? ms : "<the template's>");
        return -1;
    }
    return 0;
}

/* t_bucket's value: auto is 64 on a GPU (GEMM plans reused across batches), except under
 * lora_dropout, whose element-wise masks are drawn over the padded (B, T, C) layout: padding
 * would change the mask each real element gets, and the run would no longer match the CPU's.
 * The padded rows and the compact rows (packed stream) are rounded alike. */
static int t_bucket(const Run *r) {
    const TrainConfig *c = r->c;
    return c->t_bucket ? c->t_bucket
                       : r->rt->device != DEV_CPU && !(c->lora_r > 0 && c->lora_dropout > 0) ? RM_T_BUCKET_GPU : 1;
}

int setup_models(Run *r) {
    const TrainConfig *c = r->c;
    if (main_model(r)) return -1;
    r->main.grad_checkpoint = c->grad_checkpoint;
    r->main.share_prefix = c->share_prefix, r->main.packing = c->packing;
    r->main.t_bucket = t_bucket(r);
    log_lora(r, &r->main, "main");
    r->has_bias = c->algorithm == TRAIN_SHORTCUT_AWARE;
    if (r->has_bias && bias_model(r)) return -1;
    if (r->has_bias) r->bias.t_bucket = t_bucket(r);
    if (r->has_bias) log_lora(r, &r->bias, "bias");
    /* the checkpoints record how this run cut its images, so that scoring them cuts alike */
    RewardModel *rms[2] = {&r->main, r->has_bias ? &r->bias : NULL};
    for (int k = 0; k < 2; k++)
        if (rms[k]) {
            ModelConfig *mc = &rms[k]->cfg;
            mc->has_tiling = 1;
            mc->dynamic_image_size = c->dynamic_image_size;
            mc->use_thumbnail = c->use_thumbnail;
            mc->min_dynamic_patch = c->min_dynamic_patch;
            mc->max_dynamic_patch = c->max_dynamic_patch;
        }
    return 0;
}

/* ---------------------------------------------------------------- tokenizer and data */

int setup_tokenizer(Run *r) {
    const TrainConfig *c = r->c;
    const char *res = r->resume_dir;
    const char *tokdir = *res ? res : *c->tokenizer_path ? c->tokenizer_path : c->model_name_or_path;
    const char *tname = *c->conv_style ? c->conv_style : r->main.cfg.template_name;
    if (template_parse(tname, &r->tmpl)) return -1;
    if (tokdir && *tokdir) {
        /* an explicit tokenizer_path must hold one (mmrm's file or HF's BPE files); a model
         * directory may lack it (byte) */
        int want = !*res && *c->tokenizer_path;
        if ((want || tokenizer_present(tokdir)) && !(r->tok = tokenizer_load(tokdir))) return -1;
    }
    if (!r->tok) r->tok = tokenizer_byte_new(r->tmpl == TEMPLATE_INTERNLM2_CHAT);
    if (r->tok->vocab_size > r->main.cfg.llm.vocab) {
        mmrm_set_error("the tokenizer has %d tokens but the model's vocabulary %d", r->tok->vocab_size,
                       r->main.cfg.llm.vocab);
        return -1;
    }
    /* a published config.json has no img_context_token_id: the tokenizer's id is adopted */
    int ctx_id = tokenizer_special_id(r->tok, "<IMG_CONTEXT>");
    if (config_adopt_img_context(&r->main.cfg, ctx_id)) return -1;
    if (r->has_bias && config_adopt_img_context(&r->bias.cfg, ctx_id)) {
        char why[512];
        snprintf(why, sizeof why, "%s", mmrm_last_error());
        mmrm_set_error("bias model: %s", why);
        return -1;
    }
    return 0;
}

BatchOptions batch_options(const Run *r, int eval) {
    const TrainConfig *c = r->c;
    BatchOptions b;
    memset(&b, 0, sizeof b);
    b.pairs = c->per_device_train_batch_size;
    b.rank = r->rank;
    b.world = r->world;
    b.seed = (uint64_t)c->seed;
    b.shuffle = !eval;
    b.layout = BATCH_PADDED;
    b.epochs = eval ? 1 : 0;
    b.start = eval ? (BatchCursor){0, 0} : r->st.cursor;
    b.template_kind = r->tmpl;
    b.system_message = config_system_message(&r->main.cfg);
    b.max_length = c->max_length;
    b.t_bucket = t_bucket(r);
    b.tokens_per_tile = config_tokens_per_tile(&r->main.cfg);
    const ModelConfig *mc = &r->main.cfg; /* setup_models recorded the run's tiling there */
    b.image = (ImageConfig){mc->image_size, mc->min_dynamic_patch, mc->max_dynamic_patch,
                            mc->dynamic_image_size, mc->use_thumbnail};
    b.blank_rows = r->has_bias && !eval;
    b.on_bad = c->on_bad_record;
    b.num_workers = c->num_workers;
    return b;
}

int setup_data(Run *r) {
    const TrainConfig *c = r->c;
    const TrainRuntime *rt = r->rt;
    RecordOptions ro = {c->image_root, c->on_bad_record};
    if (pairset_load(&r->train, (const char *const *)c->dataset_paths, c->n_dataset_paths, &ro)) return -1;
    if (r->train.n == 0) {
        mmrm_set_error("no usable pairs in the training data (%s)", r->train.load.summary);
        return -1;
    }
    if (c->n_eval_dataset_paths > 0 &&
        pairset_load(&r->eval, (const char *const *)c->eval_dataset_paths, c->n_eval_dataset_paths, &ro))
        return -1;
    graph_init(&r->g, rt->device, 64 << 20, (uint64_t)c->seed);
    /* bf16: bf16 GEMMs, activations stored in bf16 too (compute, gradients and statistics
     * stay fp32) */
    if (rt->bf16) {
        graph_set_act_dtype(&r->g, DT_BF16);
        graph_set_precision(&r->g, KP_BF16);
    }
    r->g.training = 1;
    r->g.recompute = c->grad_checkpoint;
    r->g.dropout.counter = r->st.dropout_counter;
    BatchOptions bo = batch_options(r, 0);
    if (!(r->loader = batch_loader_open(&r->train, r->tok, &bo))) return -1;
    const BatchStats *bs = batch_loader_stats(r->loader);
    long per_epoch = bs->steps_per_epoch / c->gradient_accumulation_steps;
    if (per_epoch < 1 && c->max_steps <= 0) {
        mmrm_set_error("one epoch holds %ld micro-batches, fewer than gradient_accumulation_steps %d: "
                       "lower the batch size or accumulation, or set max_steps", bs->steps_per_epoch,
                       c->gradient_accumulation_steps);
        return -1;
    }
    r->total_steps = c->max_steps > 0 ? (long)c->max_steps : (long)ceil(c->num_train_epochs * per_epoch);
    return 0;
}

/* ---------------------------------------------------------------- optimizer and ranks */

int setup_optimizer(Run *r) {
    const TrainConfig *c = r->c;
    const TrainRuntime *rt = r->rt;
    /* AdamW's state: its keys, the warmup in steps and the step it continues from */
    r->opt = (AdamW){.lr = c->learning_rate, .beta1 = c->adam_beta1, .beta2 = c->adam_beta2,
                     .eps = c->adam_epsilon, .weight_decay = c->weight_decay,
                     .max_grad_norm = c->max_grad_norm, .sched = c->lr_scheduler_type,
                     .warmup_steps = c->warmup_steps > 0 ? (long)c->warmup_steps
                                                         : (long)ceil(c->warmup_ratio * r->total_steps),
                     .total_steps = r->total_steps, .t = r->st.opt_t};
    r->zero = c->zero_stage == 1 && r->world > 1;
    if (r->zero && rt->device != DEV_CPU && rt->comm->kind != COMM_NCCL) {
        mmrm_set_error("zero_stage = 1 on GPUs needs NCCL (a build with `make cuda NCCL=1` and one GPU "
                       "per rank); use zero_stage = 0 here");
        return -1;
    }
    if (!r->zero) return 0;
    ParamStore *stores[2] = {&r->main.ps, &r->bias.ps};
    for (int i = 0; i < (r->has_bias ? 2 : 1); i++) {
        ZeroShard *z = &r->zs[i];
        zero_shard_init(z, stores[i], rt->comm);
        if (stores[i]->m) { /* resumed: keep this rank's slice of the full moments */
            Device d = stores[i]->device;
            if (z->count) {
                device_memcpy(d, z->m, stores[i]->m + z->lo, z->count * sizeof(float));
                device_memcpy(d, z->v, stores[i]->v + z->lo, z->count * sizeof(float));
            }
            device_free(d, stores[i]->m);
            device_free(d, stores[i]->v);
            stores[i]->m = stores[i]->v = NULL;
        }
    }
    return 0;
}

void setup_grad_sync(Run *r) {
    const TrainConfig *c = r->c;
    const TrainRuntime *rt = r->rt;
    /* one process with NCCL (MMRM_NCCL=1) runs the same path as many: a check of it */
    if (!((r->world > 1 || (rt->comm && rt->comm->kind == COMM_NCCL)) && !r->zero)) return;
    ParamStore *stores[2] = {&r->main.ps, &r->bias.ps};
    int nccl = rt->comm->kind == COMM_NCCL;
    int overlap = c->overlap_grad_reduce == OVERLAP_AUTO ? nccl : c->overlap_grad_reduce == OVERLAP_TRUE;
    r->gs = gradsync_create(rt->comm, stores, r->has_bias ? 2 : 1,
                            (size_t)(c->grad_bucket_mb * 1048576.0), overlap);
    GradSyncStats gst = gradsync_stats(r->gs);
    if (gst.staged)
        mmrm_log("gradient all-reduce: staged through host memory and MPI (no NCCL)%s",
                 c->overlap_grad_reduce == OVERLAP_TRUE ? "; overlap_grad_reduce needs NCCL on a GPU" : "");
    else
        mmrm_log("gradient all-reduce: %d bucket(s) of at most %.1f MiB through %s, %s", gst.buckets,
                 gst.largest_bytes / 1048576.0, nccl ? "NCCL" : "MPI",
                 gst.overlap ? (nccl ? "overlapped with backward on a second stream"
                                     : "started during backward")
                             : "after backward");
}

void setup_cuda_graphs(Run *r) {
    if (!r->c->cuda_graphs) return;
    if (r->g.device != DEV_CUDA) {
        mmrm_log("cuda_graphs = true: ignored on the CPU (CUDA graphs are a GPU feature)");
        return;
    }
    if (r->gs) { /* its collectives and host staging run inside backward */
        mmrm_log("cuda_graphs = true: every micro-batch runs eagerly: the gradient all-reduce runs "
                 "during backward (data parallel without zero_stage = 1, whose reduce-scatter "
                 "follows backward, can use graphs)");
        return;
    }
    r->graphs = 1;
    mmrm_log("cuda_graphs: each micro-batch's forward and backward captured as a CUDA graph, one per "
             "shape, and replayed; the optimizer step runs eagerly");
}

void setup_bf16_weights(Run *r) {
    const TrainRuntime *rt = r->rt;
    /* bf16: the weights as the GEMMs read them, from here on kept current by AdamW */
    int w16 = 0;
    if (rt->bf16) {
        w16 = params_enable_bf16(&r->main.ps);
        if (r->has_bias) params_enable_bf16(&r->bias.ps);
    }
    size_t trainable = r->main.ps.n_trainable + (r->has_bias ? r->bias.ps.n_trainable : 0);
    size_t total = r->main.ps.numel + (r->has_bias ? r->bias.ps.numel : 0);
    double mib = 1.0 / 1048576.0;
    char copy[96] = "";
    if (w16) snprintf(copy, sizeof copy, " (fp32 master) + bf16 copy %.1f MiB", total * 2 * mib);
    if (rt->bf16) mmrm_log("activations stored in bf16 (fp32 compute, gradients and statistics)");
    mmrm_log("memory per rank: parameters %.1f MiB%s, gradients %.1f MiB, AdamW moments %.1f MiB%s",
             total * 4 * mib, copy, trainable * 4 * mib,
             (r->zero ? 2.0 * comm_shard_size(trainable, r->world) : 2.0 * trainable) * 4 * mib,
             r->zero ? " (ZeRO-1: sharded over the ranks)" : "");
}

/* the frozen bias ViT sees one constant image: its features once per run */
void setup_blank_cache(Run *r) {
    /* (ViT adapters make the bias ViT trainable: no constant features then) */
    int vit_frozen = r->c->freeze_backbone || r->c->lora_r > 0;
    if (!r->has_bias || !vit_frozen || lora_adapts_group(&r->bias, PG_VISION)) return;
    int prev = graph_set_grad(&r->g, 0);
    int S = r->bias.cfg.image_size;
    Image blank;
    image_blank(IMAGE_BLANK_SIZE, IMAGE_BLANK_SIZE, &blank);
    ImageConfig ic = {S, 1, 1, 0, 0};
    float *tile = xmalloc((size_t)3 * S * S * sizeof(float));
    image_preprocess(&blank, &ic, tile, 1);
    image_free(&blank);
    graph_reset(&r->g);
    Tensor *f = rm_vit_features(&r->bias, &r->g, tile, 1);
    r->blank_cache = xmalloc(f->numel * sizeof(float));
    memcpy(r->blank_cache, graph_host(&r->g, f), f->numel * sizeof(float));
    free(tile);
    graph_reset(&r->g);
    graph_set_grad(&r->g, prev);
}
