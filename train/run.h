/* run.h - one training run as the trainer's files share it (private to train/: the public
 * interface is trainer.h). trainer.c runs the stages; setup.c builds the run (models,
 * tokenizer, data, optimizer, gradient reduction, bf16 weights); step.c takes one optimizer
 * step; evaluate.c measures the eval set; checkpointing.c chooses where a run starts, saves
 * and resumes; logging.c writes the log lines, metrics.jsonl and the TensorBoard events. */
#ifndef MMRM_TRAIN_RUN_H
#define MMRM_TRAIN_RUN_H

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "models/batch.h"
#include "models/records.h"
#include "models/reward_model.h"
#include "models/template.h"
#include "models/tokenizer.h"
#include "runtime/autograd.h"
#include "runtime/gradsync.h"
#include "runtime/tfevents.h"
#include "train/optim.h"
#include "train/trainer.h"

/* one optimizer step as logged (metrics.jsonl, trainer_state.json's log_history) */
typedef struct LogEntry {
    long step;
    double loss, acc, lr, grad_norm;
    double margin;          /* mean reward margin r(chosen) - r(rejected) of the step's pairs */
    double loss_bias, acc_bias, w_mean, w_min, w_max; /* shortcut_aware */
    long forwards;          /* chunks of pairs forwarded (max_tokens_per_batch), summed over
                             * ranks; 0 in a history from before it was logged */
    int skipped;
} LogEntry;

/* what trainer_state.json holds: where a resumed run continues */
typedef struct State {
    long step;              /* optimizer steps done */
    BatchCursor cursor;
    long opt_t;
    uint64_t dropout_counter;
    long skipped_nonfinite, consecutive_nonfinite;
    LogEntry *log;          /* (nlog,) the history, grown by log_push */
    long nlog, caplog;
} State;

/* step.c: the values a step logs, copied device to device after each forward and read to
 * the host once at the step's end */
typedef struct TallyForward TallyForward;
typedef struct TallyBuf {
    void *dev;              /* on the run's device: cap bytes, used of them this step */
    size_t cap, used;
    unsigned char *host;    /* the step's read, hcap bytes */
    size_t hcap;
    TallyForward *fw;       /* (nfw,) what each forward of the step kept, and where */
    long nfw, capfw;
} TallyBuf;

typedef struct Run {
    const TrainConfig *c;
    const TrainRuntime *rt;
    int rank, world;
    char resume_dir[PATH_MAX]; /* the checkpoint this run continues from, or "" */
    RewardModel main, bias;
    int has_bias;           /* shortcut_aware */
    Tokenizer *tok;
    TemplateKind tmpl;
    PairSet train, eval;
    Graph g;
    BatchLoader *loader;    /* the training batches */
    float *blank_cache;     /* frozen bias ViT: features of the blank tile */
    State st;
    AdamW opt;
    long total_steps;
    int zero;               /* ZeRO-1 active (zero_stage 1 and world > 1) */
    ZeroShard zs[2];        /* per store: main, bias */
    GradSync *gs;           /* data parallel without ZeRO-1: the bucketed all-reduce */
    int graphs;             /* cuda_graphs in effect: micro-batches captured (step.c) */
    long graph_eager;       /* micro-batches whose capture could not be launched */
    char graph_reasons[4][160]; /* the distinct reasons, each logged once (the first 4) */
    FILE *metrics;          /* metrics.jsonl, rank 0 */
    cJSON *resumed_evals;   /* a resume: the earlier metrics.jsonl's evaluation lines up to
                             * the checkpoint (metrics_open keeps them; tb_open too) */
    TfEventWriter *tb;      /* report_to = tensorboard: output_dir/runs, rank 0 */
    float *w_step;          /* shortcut_aware: the step's per-pair weights w (all ranks' on
                             * rank 0), for the TensorBoard histogram; nw_step of them */
    long nw_step, capw_step;
    TallyBuf tally;         /* step.c */
    int tty;                /* rank 0 logs to a terminal: the progress line redraws */
    double t0;              /* clock_seconds() at the first step of this process */
    long pairs_seen, tokens_seen;
    long start_step;        /* the step this process started from */
    int over_budget_said;   /* a pair over max_tokens_per_batch has been logged */
} Run;

/* setup.c: the stages that build a run, in train_run's order; 0, or -1 with
 * mmrm_last_error() */
int setup_models(Run *r);       /* main (and bias) model: resumed, loaded or initialised */
int setup_tokenizer(Run *r);    /* tokenizer and chat template */
int setup_data(Run *r);         /* pair sets, graph, batch loader, the number of steps */
int setup_optimizer(Run *r);    /* AdamW state, ZeRO-1 shards */
void setup_grad_sync(Run *r);   /* data parallel: the bucketed all-reduce */
void setup_cuda_graphs(Run *r); /* cuda_graphs: in effect, or why not (logged) */
void setup_bf16_weights(Run *r); /* precision = bf16: the weight copies; the memory report */
void setup_blank_cache(Run *r); /* shortcut_aware, frozen ViT: the blank tile's features */
/* the batches of the training (eval = 0) or eval set (eval = 1) */
BatchOptions batch_options(const Run *r, int eval);

/* checkpointing.c */
/* output_dir created; resume_dir set to its newest complete checkpoint when resuming, else
 * any earlier run's checkpoints removed (overwrite_output_dir) or refused */
int checkpoint_choose_start(Run *r);
int checkpoint_load_state(Run *r);    /* resume_dir/trainer_state.json into r->st */
/* a trainer_state.json into s (what checkpoint_load_state does; tests/fuzz reads it directly);
 * s->log is the caller's to free, after an error too */
int checkpoint_read_state(State *s, const char *path);
/* dir/optimizer.safetensors: the AdamW moments of ps */
int checkpoint_load_optimizer(ParamStore *ps, const char *dir);
int checkpoint_save_step(Run *r, long step); /* output_dir/checkpoint-STEP */
int checkpoint_save_last(Run *r);            /* output_dir/checkpoint-last */

/* step.c: one optimizer step over gradient_accumulation_steps micro-batches; fills e.
 * 0, or -1 on a data error. */
int train_step(Run *r, LogEntry *e);
/* frees r->tally (before the graph: on its device) */
void tally_free(Run *r);

/* chunks.c: max_tokens_per_batch. The pairs of b as chunks: chunk k is pairs [first[k],
 * first[k+1]) (first: P + 1); returns their number (1 without a budget). with_bias: the bias
 * model's blank-image rows count too. */
int chunk_plan(Run *r, const Batch *b, int with_bias, int *first);
/* the view of pairs [p0, p1) (rows 2 p0 .. 2 p1) of the pair view v: their rows, their images
 * (pixels of image_size tiles), image_of renumbered into image_of (2 (p1 - p0)) */
void chunk_view(const RmBatch *v, int p0, int p1, int image_size, int *image_of, RmBatch *out);

/* evaluate.c: pairwise accuracy and mean margin of the main model on the eval set, logged
 * and written to metrics.jsonl */
int evaluate_and_log(Run *r, long step);

/* logging.c */
void log_push(State *s, const LogEntry *e);         /* appends to the history */
cJSON *log_json(const LogEntry *e, TrainAlgorithm algo);
int metrics_open(Run *r);               /* metrics.jsonl, starting with the resumed history */
int metrics_write(Run *r, cJSON *o);    /* one line (rank 0); -1 when the write fails */
int log_record(Run *r, const LogEntry *e); /* a step into the history and metrics.jsonl; 0 or -1 */
void log_plan(const Run *r);            /* the run's shape, before the first step */
void log_progress(const Run *r, const LogEntry *e);
void log_summary(const Run *r);         /* the end: rates, final loss, peak memory */
/* report_to = tensorboard, rank 0: output_dir/runs rebuilt to hold one event file with
 * the events of the steps up to the resumed checkpoint (those of the earlier files, then
 * for what they lack the checkpoint's log history and the kept evaluation lines), or a
 * fresh one for a new run */
int tb_open(Run *r);
/* a step's scalars (train/...), its throughput (pairs per second of the step) and, with
 * shortcut_aware, the histogram of w; an evaluation's (eval/...) */
void tb_step(Run *r, const LogEntry *e, double pairs_per_s);
void tb_eval(Run *r, long step, double acc, double margin);

#endif
