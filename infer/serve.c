/* serve.c - `mmrm serve`: the reward model behind HTTP (libmicrohttpd), with requests of
 * many clients scored together.
 *
 * Threads: libmicrohttpd runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION). A
 * POST /score is read and checked in its connection's thread, put on the queue as a Job, and
 * that thread blocks on a condition variable until the job is done. ONE scorer thread owns the
 * model: it takes everything queued (whole jobs, up to --max-batch responses; the first job
 * always, however large), after waiting up to --batch-wait-ms from the oldest job's arrival for
 * more, scores it with one scorer_score call and wakes the waiting connections. Padding does
 * not change a score; shared prefixes and packed rows (the default) change it only at the level
 * of fp32 rounding (--no-share-prefix --no-packing: bitwise independent of the batch).
 *
 * Images: img_path resolves inside --image-root (realpath; a path that resolves outside it is
 * refused with 403, and without a root every img_path is), or image_base64 carries the file's
 * bytes: they are written to a file in a private mkdtemp folder (0700, names from a counter,
 * O_EXCL), which the scorer reads like any image, and removed once the request is scored.
 * Every image's header is read (image_info) before queueing: a missing or unreadable image, or
 * one of more than SERVE_MAX_PIXELS pixels, fails its record (scores null, "error"), not the
 * request.
 *
 * Shutdown (SIGINT, SIGTERM): new requests get 503, what is queued is scored and answered,
 * then the daemon stops. The signal handler only writes a byte to a pipe the main thread reads.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "infer/commands.h"
#include "infer/scorer.h"
#include "infer/serve.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/jsonl.h"
#include "runtime/strbuf.h"

#define SERVE_MAX_CONNECTIONS 256

static const char usage_text[] =
    "usage: mmrm serve --model DIR [options]\n"
    "\n"
    "Serves the reward model in DIR over HTTP. Requests of concurrent clients are queued and\n"
    "scored together by one scorer thread.\n"
    "\n"
    "  POST /score  body: one record {\"prompt\", \"img_path\" | \"image_base64\", \"responses\":\n"
    "               [...]}, answered {\"scores\": [...]}, or {\"records\": [record, ...]},\n"
    "               answered {\"records\": [{\"scores\": [...]}, ...]}. A response or record\n"
    "               that could not be scored has score null and its record an \"error\".\n"
    "               img_path is relative to --image-root; image_base64 is the image file's\n"
    "               bytes in base64.\n"
    "  GET /health  {\"status\": \"ok\", \"model\", \"uptime_s\", \"requests\", batch counters}\n"
    "\n"
    "Codes: 200 scored (per-record errors inside), 400 malformed JSON or a wrong field (named),\n"
    "403 an img_path outside --image-root (or any img_path without one), 404 unknown path, 405\n"
    "wrong method, 413 body over --max-request-bytes, 503 queue full or shutting down.\n"
    "\n"
    "options:\n"
    "  --model DIR             the reward model (config.json, weights, tokenizer file)\n"
    "  --host ADDR             address to listen on (default 127.0.0.1)\n"
    "  --port P                port (default 8000; 0 picks a free one, printed on stderr)\n"
    "  --max-request-bytes N   largest request body (default 16777216)\n"
    "  --max-batch N           most responses per scorer call (default 64)\n"
    "  --batch-wait-ms MS      how long the oldest queued request waits for others to join\n"
    "                          its batch (default 5)\n"
    "  --max-queue N           most responses waiting; beyond that 503 (default 4096)\n"
    "  --blank-image           show every record the blank white image (text-only scores;\n"
    "                          img_path and image_base64 are then ignored)\n"
    "%s"
    "  --help                  this text\n"
    "(--image-root here is the only folder img_path may name; without it only image_base64\n"
    "is accepted)\n";

static int usage_error(const char *fmt, const char *arg) {
    return scorer_cli_usage_error(usage_text, fmt, arg);
}

/* ---- the queue ---- */


/* A group of a batch, in the order it goes to the scorer. */
typedef struct {
    long length;
    int order; /* position in the queue: equal lengths keep it (qsort is not stable) */
    Job *job;
    int g;
} Slot;

static int slot_cmp(const void *a, const void *b) {
    const Slot *x = a, *y = b;
    if (x->length != y->length) return x->length < y->length ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

/* The scorer thread: batches of whole jobs, one scorer_score call each. The batch's groups go
 * to the scorer sorted by their rough token length (image tiles first), so that a forward
 * packs sequences of similar length: a forward is as long as its longest sequence, and
 * records of 1-tile and 7-tile images mixed would mostly pay for padding. */
static void *scorer_main(void *arg) {
    Server *s = arg;
    ScoreGroup *groups = NULL;
    ScoreOut *outs = NULL;
    Slot *slots = NULL;
    char (*msg)[SCORER_MSG_LEN] = NULL;
    int cap_g = 0, cap_r = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stopping) pthread_cond_wait(&s->queued, &s->mu);
        if (!s->head) break; /* stopping, and nothing left */
        /* wait for company until the oldest job has waited batch_wait_ms */
        double deadline = s->head->queued_at + s->batch_wait_ms / 1e3;
        while (s->queue_resp < s->max_batch && !s->stopping) {
            double left = deadline - clock_seconds();
            if (left <= 0) break;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            long ns = ts.tv_nsec + (long)(left * 1e9);
            ts.tv_sec += ns / 1000000000L;
            ts.tv_nsec = ns % 1000000000L;
            pthread_cond_timedwait(&s->queued, &s->mu, &ts);
        }
        Job *first = s->head, *last = first;
        int nresp = first->nresp, ng = first->ngroups, njobs = 1;
        while (last->next && nresp + last->next->nresp <= s->max_batch) {
            last = last->next;
            nresp += last->nresp;
            ng += last->ngroups;
            njobs++;
        }
        s->head = last->next;
        if (!s->head) s->tail = NULL;
        last->next = NULL;
        s->queue_resp -= nresp;
        pthread_mutex_unlock(&s->mu);

        if (ng > cap_g) {
            cap_g = ng;
            groups = xrealloc(groups, (size_t)cap_g * sizeof *groups);
            slots = xrealloc(slots, (size_t)cap_g * sizeof *slots);
            msg = xrealloc(msg, (size_t)cap_g * sizeof *msg);
        }
        if (nresp > cap_r) {
            cap_r = nresp;
            outs = xrealloc(outs, (size_t)cap_r * sizeof *outs);
        }
        int at_g = 0;
        for (Job *j = first; j; j = j->next)
            for (int g = 0; g < j->ngroups; g++, at_g++)
                slots[at_g] = (Slot){j->length[g], at_g, j, g};
        qsort(slots, (size_t)ng, sizeof *slots, slot_cmp);
        for (int k = 0; k < ng; k++) groups[k] = slots[k].job->groups[slots[k].g];
        double t0 = clock_seconds();
        int rc = ng ? scorer_score(s->sc, groups, ng, outs, msg) : 0;
        double secs = clock_seconds() - t0;
        if (rc) mmrm_warn("serve: scoring a batch of %d responses failed: %s", nresp,
                          mmrm_last_error());
        long ok = 0;
        for (int k = 0, at_r = 0; k < ng && !rc; k++) {
            Job *j = slots[k].job;
            int g = slots[k].g;
            memcpy(j->outs + j->first[g], outs + at_r, (size_t)groups[k].n * sizeof *outs);
            memcpy(j->msg[g], msg[k], sizeof msg[k]);
            for (int x = 0; x < groups[k].n; x++) ok += outs[at_r + x].status == SCORE_OK;
            at_r += groups[k].n;
        }

        pthread_mutex_lock(&s->mu);
        s->batches++;
        s->batch_jobs += njobs;
        s->batch_resp += nresp;
        if (nresp > s->max_batch_resp) s->max_batch_resp = nresp;
        if (njobs > s->max_batch_jobs) s->max_batch_jobs = njobs;
        s->scored += ok;
        s->failed_resp += nresp - ok;
        s->score_seconds += secs;
        s->st = *scorer_stats(s->sc);
        for (Job *j = first, *next; j; j = next) {
            next = j->next;
            j->failed = rc != 0;
            j->done = 1;
        }
        pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->mu);
    free(groups);
    free(slots);
    free(outs);
    free(msg);
    return NULL;
}

/* ---- requests ---- */


static Reply score_request(Server *s, const char *body, size_t len) {
    cJSON *doc = NULL;
    Job *j = NULL;
    Reply reply = {0};
    if (parse_request(s, body, len, &doc, &j, &reply) == 0) {
        pthread_mutex_lock(&s->mu);
        if (s->stopping) {
            reply = reply_error(503, "the server is shutting down");
        } else if (j->nresp > s->max_queue) {
            reply = reply_error(413, "%d responses in one request: more than --max-queue %d",
                                j->nresp, s->max_queue);
        } else if (s->queue_resp + j->nresp > s->max_queue) {
            reply = reply_error(503, "the queue is full (%d responses waiting, --max-queue %d): "
                                "retry later", s->queue_resp, s->max_queue);
        } else if (j->ngroups > 0) {
            j->queued_at = clock_seconds();
            if (s->tail) s->tail->next = j;
            else s->head = j;
            s->tail = j;
            s->queue_resp += j->nresp;
            pthread_cond_signal(&s->queued);
            while (!j->done) pthread_cond_wait(&s->done, &s->mu);
        }
        pthread_mutex_unlock(&s->mu);
    }
    if (!reply.body && j->failed)
        reply = reply_error(500, "scoring failed; see the server's log");
    if (!reply.body) {
        cJSON *out;
        if (j->single) {
            out = record_result(j, 0);
        } else {
            out = cJSON_CreateObject();
            cJSON *arr = cJSON_AddArrayToObject(out, "records");
            for (int r = 0; r < j->nrec; r++) cJSON_AddItemToArray(arr, record_result(j, r));
        }
        reply = (Reply){200, cJSON_PrintUnformatted(out)};
        cJSON_Delete(out);
    }
    job_free(j);
    cJSON_Delete(doc);
    return reply;
}

static Reply health(Server *s) {
    cJSON *o = cJSON_CreateObject();
    pthread_mutex_lock(&s->mu);
    cJSON_AddStringToObject(o, "status", s->stopping ? "stopping" : "ok");
    cJSON_AddStringToObject(o, "model", s->model_dir);
    cJSON_AddNumberToObject(o, "uptime_s", clock_seconds() - s->started);
    cJSON_AddNumberToObject(o, "requests", (double)s->requests);
    cJSON_AddNumberToObject(o, "score_requests", (double)s->score_requests);
    cJSON_AddNumberToObject(o, "http_4xx", (double)s->http_4xx);
    cJSON_AddNumberToObject(o, "http_5xx", (double)s->http_5xx);
    cJSON_AddNumberToObject(o, "responses_scored", (double)s->scored);
    cJSON_AddNumberToObject(o, "responses_failed", (double)s->failed_resp);
    cJSON_AddNumberToObject(o, "batches", (double)s->batches);
    cJSON_AddNumberToObject(o, "batch_requests_mean",
                            s->batches ? (double)s->batch_jobs / (double)s->batches : 0.0);
    cJSON_AddNumberToObject(o, "batch_requests_max", (double)s->max_batch_jobs);
    cJSON_AddNumberToObject(o, "batch_responses_mean",
                            s->batches ? (double)s->batch_resp / (double)s->batches : 0.0);
    cJSON_AddNumberToObject(o, "batch_responses_max", (double)s->max_batch_resp);
    cJSON_AddNumberToObject(o, "scoring_s", s->score_seconds);
    cJSON_AddNumberToObject(o, "forwards", (double)s->st.forwards);
    cJSON_AddNumberToObject(o, "padding_pct", s->st.padded ? 100.0 * (double)(s->st.padded -
                            s->st.tokens) / (double)s->st.padded : 0.0);
    cJSON_AddNumberToObject(o, "queue_responses", s->queue_resp);
    cJSON_AddNumberToObject(o, "max_batch", s->max_batch);
    cJSON_AddNumberToObject(o, "batch_wait_ms", s->batch_wait_ms);
    pthread_mutex_unlock(&s->mu);
    Reply r = {200, cJSON_PrintUnformatted(o)};
    cJSON_Delete(o);
    return r;
}

/* ---- HTTP ---- */

typedef struct {
    StrBuf body;
    int too_big;
} Upload;

static enum MHD_Result send_reply(Server *s, struct MHD_Connection *c, Reply r,
                                  const char *allow) {
    size_t n = strlen(r.body);
    char *body = xmalloc(n + 2);
    memcpy(body, r.body, n);
    body[n] = '\n';
    body[n + 1] = '\0';
    free(r.body);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(n + 1, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (r.code == 503) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    pthread_mutex_lock(&s->mu);
    s->http_4xx += r.code >= 400 && r.code < 500;
    s->http_5xx += r.code >= 500;
    pthread_mutex_unlock(&s->mu);
    enum MHD_Result ret = MHD_queue_response(c, r.code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    Server *s = cls;
    Upload *u = *con_cls;
    if (!u) {
        pthread_mutex_lock(&s->mu);
        s->requests++;
        pthread_mutex_unlock(&s->mu);
        int is_get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
        if (!strcmp(url, "/health")) {
            if (!is_get)
                return send_reply(s, c, reply_error(405, "/health takes GET"), "GET, HEAD");
            return send_reply(s, c, health(s), NULL);
        }
        if (strcmp(url, "/score") != 0)
            return send_reply(s, c, reply_error(404, "no such path %.200s (POST /score, GET "
                                                "/health)", url), NULL);
        if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
            return send_reply(s, c, reply_error(405, "/score takes POST"), "POST");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->max_body)
            return send_reply(s, c, reply_error(413, "body of %s bytes: over --max-request-bytes "
                                                "%zu", cl, s->max_body), NULL);
        pthread_mutex_lock(&s->mu);
        s->score_requests++;
        pthread_mutex_unlock(&s->mu);
        *con_cls = xcalloc(1, sizeof(Upload));
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!u->too_big && u->body.len + *upload_data_size > s->max_body) {
            u->too_big = 1;
            sb_free(&u->body);
        }
        if (!u->too_big) sb_append(&u->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (u->too_big)
        return send_reply(s, c, reply_error(413, "body over --max-request-bytes %zu",
                                            s->max_body), NULL);
    return send_reply(s, c, score_request(s, u->body.s ? u->body.s : "", u->body.len), NULL);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    Upload *u = *con_cls;
    if (!u) return;
    sb_free(&u->body);
    free(u);
    *con_cls = NULL;
}

/* ---- the listening socket and signals ---- */

/* A socket bound and listening on host:port; -1 with the error set (the port is taken, ...).
 * *url gets "http://HOST:PORT" with the bound port. */
static int listen_on(const char *host, int port, char *url, size_t url_n) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int e = getaddrinfo(host, ps, &hints, &ai);
    MMRM_REQUIRE(e == 0, "--host %s: %s", host, gai_strerror(e));
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        mmrm_set_error("socket: %s", strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        e = errno;
        mmrm_set_error("cannot listen on %s port %d: %s%s", host, port, strerror(e),
                       e == EADDRINUSE ? " (another process has it: pick another --port, or "
                                         "--port 0 for a free one)" : "");
        close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    char h[NI_MAXHOST], p[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) != 0 ||
        getnameinfo((struct sockaddr *)&sa, sl, h, sizeof h, p, sizeof p,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        mmrm_set_error("getsockname: %s", strerror(errno));
        close(fd);
        return -1;
    }
    snprintf(url, url_n, sa.ss_family == AF_INET6 ? "http://[%s]:%s" : "http://%s:%s", h, p);
    return fd;
}

static int stop_pipe[2] = {-1, -1};
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) {
    int saved = errno;
    stop_signal = sig;
    ssize_t w = write(stop_pipe[1], "x", 1);
    (void)w;
    errno = saved;
}

/* ---- the command ---- */

static int parse_long(const char *opt, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "mmrm: error: %s %s: expected an integer in [%ld, %ld]\n", opt, v, lo,
                hi);
        return -1;
    }
    *out = x;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    const char *model = NULL, *host = "127.0.0.1";
    long port = 8000, max_body = 16L << 20, max_batch = 64, wait_ms = 5, max_queue = 4096;
    int blank = 0;
    ScorerCli cli = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = scorer_cli_option(&cli, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf(usage_text, SCORER_CLI_USAGE);
            return 0;
        }
        if (!strcmp(a, "--blank-image")) {
            blank = 1;
            continue;
        }
        static const struct { const char *name; long lo, hi; long *dst; } nums[] = {
            {"--port", 0, 65535, NULL}, {"--max-request-bytes", 1, 1L << 40, NULL},
            {"--max-batch", 1, 1 << 20, NULL}, {"--batch-wait-ms", 0, 60000, NULL},
            {"--max-queue", 1, 1 << 24, NULL}};
        long *dsts[] = {&port, &max_body, &max_batch, &wait_ms, &max_queue};
        int k = 0, nk = (int)(sizeof nums / sizeof nums[0]);
        while (k < nk && strcmp(a, nums[k].name)) k++;
        if (k < nk) {
            if (i + 1 >= argc) return usage_error("%s needs a value", a);
            if (parse_long(a, argv[++i], nums[k].lo, nums[k].hi, dsts[k])) return 2;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--host")) {
            if (i + 1 >= argc) return usage_error("%s needs a value", a);
            *(a[2] == 'm' ? &model : &host) = argv[++i];
        } else {
            return usage_error("serve: unknown option '%s'", a);
        }
    }
    if (!model) return usage_error("serve: %s is missing", "--model");

    Server s = {.model_dir = model, .max_body = (size_t)max_body, .max_batch = (int)max_batch,
                .batch_wait_ms = (int)wait_ms, .max_queue = (int)max_queue};
    if (cli.image_root) {
        char real[PATH_MAX];
        struct stat st;
        if (!realpath(cli.image_root, real) || stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "mmrm: error: --image-root %s: not a folder (%s)\n", cli.image_root,
                    errno ? strerror(errno) : "not a directory");
            return 1;
        }
        s.root = xstrdup(real);
    }
    char url[NI_MAXHOST + 32];
    int lfd = listen_on(host, (int)port, url, sizeof url);
    if (lfd < 0) {
        fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
        free(s.root);
        return 1;
    }

    int rc = 1;
    RewardModel m;
    Tokenizer *tok = NULL;
    Device dev;
    int bf16 = 0;
    struct MHD_Daemon *d = NULL;
    pthread_t scorer_thread;
    if (scorer_cli_device(&cli, 0, &dev, &bf16)) {
        close(lfd);
        free(s.root);
        return 2;
    }
    if (scorer_load_model(model, dev, bf16, &m, &tok)) {
        fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
        close(lfd);
        free(s.root);
        return 1;
    }
    ScorerOptions so;
    scorer_cli_options(&cli, &m.cfg, &so);
    so.blank = blank;
    s.sc = scorer_new(&m, tok, &so);
    if (!s.sc) {
        fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
        close(lfd);
        goto out;
    }
    const char *tmpbase = getenv("TMPDIR");
    StrBuf tb = {0};
    sb_printf(&tb, "%s/mmrm-serve-XXXXXX", tmpbase && *tmpbase ? tmpbase : "/tmp");
    s.tmp_dir = sb_take(&tb);
    if (!mkdtemp(s.tmp_dir)) {
        fprintf(stderr, "mmrm: error: mkdtemp %s: %s\n", s.tmp_dir, strerror(errno));
        free(s.tmp_dir);
        s.tmp_dir = NULL;
        close(lfd);
        goto out;
    }

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.queued, &ca);
    pthread_cond_init(&s.done, NULL);
    pthread_condattr_destroy(&ca);
    s.started = clock_seconds();
    if (pipe2(stop_pipe, O_CLOEXEC) != 0) {
        fprintf(stderr, "mmrm: error: pipe: %s\n", strerror(errno));
        close(lfd);
        goto out_sync;
    }
    if (pthread_create(&scorer_thread, NULL, scorer_main, &s) != 0) {
        fprintf(stderr, "mmrm: error: cannot start the scorer thread\n");
        close(lfd);
        goto out_sync;
    }
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                             MHD_USE_ITC | MHD_USE_ERROR_LOG,
                         0, NULL, NULL, on_request, &s, MHD_OPTION_LISTEN_SOCKET, lfd,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)SERVE_MAX_CONNECTIONS,
                         MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "mmrm: error: libmicrohttpd could not start on %s\n", url);
        close(lfd);
        goto out_threads;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    mmrm_log("serving %s on %s (POST /score, GET /health; batches of up to %d responses, "
             "%d ms wait; images: %s)", model, url, s.max_batch, s.batch_wait_ms,
             s.root ? s.root : "inline only");
    fflush(stderr);
    char ch;
    while (read(stop_pipe[0], &ch, 1) < 0 && errno == EINTR) continue;
    pthread_mutex_lock(&s.mu);
    int left = s.queue_resp;
    pthread_mutex_unlock(&s.mu);
    mmrm_log("serve: %s: stopping (no new requests; finishing %d queued responses)",
             stop_signal == SIGINT ? "SIGINT" : "SIGTERM", left);
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends it at once */
    signal(SIGTERM, SIG_DFL);
    MHD_socket q = MHD_quiesce_daemon(d);
    if (q != MHD_INVALID_SOCKET) close(q);
    rc = 0;
out_threads:
    pthread_mutex_lock(&s.mu);
    s.stopping = 1;
    pthread_cond_broadcast(&s.queued);
    pthread_mutex_unlock(&s.mu);
    pthread_join(scorer_thread, NULL);
    if (d) {
        /* the connections that were scored are sending their answers: give them up to 5 s
         * (an idle keep-alive connection holds this wait; MHD_stop_daemon then closes it) */
        for (int t = 0; t < 500; t++) {
            const union MHD_DaemonInfo *inf =
                MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
            if (!inf || inf->num_connections == 0) break;
            usleep(10000);
        }
        MHD_stop_daemon(d);
    }
    mmrm_log("serve: stopped after %.0f s: %ld requests, %ld responses scored in %ld batches "
             "(%.1f responses per batch)", clock_seconds() - s.started, s.requests, s.scored,
             s.batches, s.batches ? (double)s.batch_resp / (double)s.batches : 0.0);
out_sync:
    pthread_cond_destroy(&s.queued);
    pthread_cond_destroy(&s.done);
    pthread_mutex_destroy(&s.mu);
    for (int k = 0; k < 2; k++)
        if (stop_pipe[k] >= 0) close(stop_pipe[k]), stop_pipe[k] = -1;
    rmdir(s.tmp_dir);
    free(s.tmp_dir);
out:
    scorer_free(s.sc);
    tokenizer_free(tok);
    rm_free(&m);
    free(s.root);
    return rc;
}
