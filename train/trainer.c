/* trainer.c - train_run (trainer.h): a run's stages in order, the loop over its steps and
 * the end of the run. The stages live in the files that run.h lists. */
#include "train/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/strbuf.h"
#include "train/run.h"

static void run_init(Run *r, const TrainConfig *c, const TrainRuntime *rt) {
    memset(r, 0, sizeof *r);
    r->c = c;
    r->rt = rt;
    r->rank = rt->comm ? rt->comm->rank : 0;
    r->world = rt->comm ? rt->comm->world : 1;
    mmrm_set_quiet(rt->quiet || r->rank != 0);
}

static void run_free(Run *r) {
    if (r->loader) batch_loader_close(r->loader);
    if (r->metrics) fclose(r->metrics);
    cJSON_Delete(r->resumed_evals);
    tfevents_close(r->tb);
    free(r->w_step);
    tally_free(r);
    if (r->g.tape) graph_free(&r->g);
    if (r->main.ps.data) rm_free(&r->main);
    if (r->bias.ps.data) rm_free(&r->bias);
    if (r->tok) tokenizer_free(r->tok);
    pairset_free(&r->train);
    pairset_free(&r->eval);
    free(r->blank_cache);
    free(r->st.log);
    adamw_free(&r->opt);
    zero_shard_free(&r->zs[0]);
    zero_shard_free(&r->zs[1]);
    gradsync_free(r->gs);
}

/* every n steps (n > 0) */
static int due(int n, long step) { return n > 0 && step % n == 0; }

/* A non-finite step was skipped: counted; three in a row stop the run. */
static int count_nonfinite(Run *r, const LogEntry *e) {
    if (!e->skipped) {
        r->st.consecutive_nonfinite = 0;
        return 0;
    }
    r->st.skipped_nonfinite++;
    if (++r->st.consecutive_nonfinite >= 3) {
        mmrm_set_error("3 consecutive steps with non-finite loss or gradients (last at step %ld): "
                       "lower learning_rate or check the data", e->step);
        return -1;
    }
    if (r->rank == 0)
        mmrm_warn("step %ld: non-finite loss or gradients, update skipped (%ld so far)", e->step,
                  r->st.skipped_nonfinite);
    return 0;
}

/* The steps up to total_steps, each logged, evaluated and saved when due. 0 after the last
 * step, 1 when stop_after_steps ended the run early, -1 on an error. */
static int train_loop(Run *r) {
    const TrainConfig *c = r->c;
    const TrainRuntime *rt = r->rt;
    log_plan(r);
    r->tty = isatty(2) && !rt->quiet && r->rank == 0;
    r->t0 = clock_seconds();
    r->start_step = r->st.step;
    while (r->st.step < r->total_steps) {
        LogEntry e;
        double t_step = clock_seconds();
        long pairs_before = r->pairs_seen;
        if (train_step(r, &e)) return -1;
        t_step = clock_seconds() - t_step;
        r->st.step = e.step;
        if (log_record(r, &e)) return -1;
        tb_step(r, &e, (r->pairs_seen - pairs_before) / (t_step > 0 ? t_step : 1e-9));
        if (count_nonfinite(r, &e)) return -1;
        int last = e.step == r->total_steps;
        if (!rt->quiet && r->rank == 0 && (r->tty || due(c->logging_steps, e.step) || last)) log_progress(r, &e);
        if (r->eval.n > 0 && (due(c->eval_steps, e.step) || last) && evaluate_and_log(r, e.step)) return -1;
        if (due(c->save_steps, e.step) && !last && checkpoint_save_step(r, e.step)) return -1;
        if (rt->stop_after_steps > 0 && e.step - r->start_step >= rt->stop_after_steps) {
            if (r->tty) fputc('\n', stderr);
            mmrm_log("stopping after %ld steps as asked (stop_after_steps)", rt->stop_after_steps);
            return 1;
        }
    }
    if (r->tty) fputc('\n', stderr);
    return 0;
}

/* Where the run starts (resumed or new) and all it builds before its first step, in this
 * order: each stage reads what the ones before it set up. */
static int setup(Run *r) {
    if (checkpoint_choose_start(r) || setup_models(r) || setup_tokenizer(r) || setup_data(r) ||
        setup_optimizer(r))
        return -1;
    setup_grad_sync(r);
    setup_cuda_graphs(r);
    setup_bf16_weights(r);
    setup_blank_cache(r);
    return metrics_open(r) || tb_open(r) ? -1 : 0;
}

/* the last step's checkpoint, checkpoint-last (the final model) and the summary */
static int finish(Run *r) {
    if (checkpoint_save_step(r, r->st.step) || checkpoint_save_last(r)) return -1;
    log_summary(r);
    return 0;
}

int train_run(const TrainConfig *c, const TrainRuntime *rt) {
    Run r;
    run_init(&r, c, rt);
    int rc = setup(&r);
    if (rc == 0) rc = train_loop(&r); /* 1: stopped early, as asked */
    if (rc == 0) rc = finish(&r);
    if (rc < 0) {
        fflush(stdout);
        fprintf(stderr, "%smmrm: error: %s\n", isatty(2) ? "\n" : "", mmrm_last_error());
    }
    run_free(&r);
    return rc < 0 ? 1 : 0;
}
