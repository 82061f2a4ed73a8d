/* serve.h - private to `mmrm serve` (serve.c: queue, scorer thread, HTTP, the command;
 * serve_request.c: a POST /score body read into a Job, and the answers' JSON). */
#ifndef MMRM_SERVE_H
#define MMRM_SERVE_H

#include <pthread.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "infer/scorer.h"

/* a decoded image of more pixels is refused before the scorer allocates it (a small PNG can
 * claim a huge canvas); 1e8 is the JPEG loader's own limit */
#define SERVE_MAX_PIXELS 100000000L

/* One POST /score: its records, the groups of those that go to the scorer, and the answers. */
typedef struct Job {
    int nrec;
    int *rec_n;          /* (nrec) responses per record */
    char **rec_error;    /* (nrec) NULL, or why the record was not scored (malloc'd) */
    int *group_of;       /* (nrec) the record's index in groups, or -1 */
    ScoreGroup *groups;  /* (ngroups) the records that go to the scorer */
    long *length;        /* (ngroups) the group's rough token length, for packing */
    int *first;          /* (ngroups) the group's first response in outs */
    const char **shown;  /* (ngroups) the image as the client named it, for messages */
    int ngroups, nresp;  /* nresp: responses in groups */
    ScoreOut *outs;      /* (nresp) */
    char (*msg)[SCORER_MSG_LEN]; /* (ngroups) */
    char **tmp_files;    /* (ntmp) inline images written for this job */
    int ntmp;
    int single;          /* the body was one record, not {"records": [...]} */
    int done, failed;    /* failed: the scorer call failed (not the data's fault): 500 */
    double queued_at;
    struct Job *next;
} Job;

typedef struct {
    Scorer *sc;
    const char *model_dir;
    char *root;          /* realpath of --image-root, or NULL */
    char *tmp_dir;       /* the private folder of inline images */
    size_t max_body;
    int max_batch, batch_wait_ms, max_queue;
    double started;

    pthread_mutex_t mu;
    pthread_cond_t queued;  /* a job arrived, or stopping */
    pthread_cond_t done;    /* a batch is done (every waiter checks its own job) */
    Job *head, *tail;
    int queue_resp;         /* responses queued and not yet taken */
    int stopping;
    unsigned long tmp_seq;
    /* counters, under mu */
    long requests, score_requests, http_4xx, http_5xx;
    long batches, batch_jobs, batch_resp, max_batch_resp, max_batch_jobs;
    long scored, failed_resp;
    double score_seconds;
    ScorerStats st;         /* the scorer's, copied after each batch */
} Server;

/* A request's answer: code and a malloc'd JSON body. */
typedef struct {
    unsigned code;
    char *body;
} Reply;

void job_free(Job *j);
Reply reply_error(unsigned code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The body as a job (*job; its strings point into *doc), or a reply (*reply.body set): 0 / -1.
 * Images are checked and inline ones written to s->tmp_dir here, in the connection's thread. */
int parse_request(Server *s, const char *body, size_t len, cJSON **doc, Job **job, Reply *reply);
/* one record's answer: scores (null where not scored), and an error when one failed */
cJSON *record_result(const Job *j, int r);

#endif
