/* score_groups.c - scoring whole groups in chunks of about a batch (score_groups.h). */
#include "infer/score_groups.h"

#include <stdlib.h>

#include "runtime/error.h"

int score_groups(Scorer *sc, const ScoreGroup *groups, int ngroups, const int *group_line,
                 const char *data, const char *what, ScoreOut *outs) {
    int B = scorer_options(sc)->batch_size;
    char (*msg)[SCORER_MSG_LEN] = xmalloc((size_t)4 * B * sizeof *msg);
    long failed[SCORE_NSTATUS] = {0}, total = 0;
    for (int g = 0; g < ngroups; g++) total += groups[g].n;
    Progress prog;
    progress_start(&prog, what, total);
    size_t at = 0;
    int rc = 0;
    for (int g0 = 0; g0 < ngroups && rc == 0;) {
        /* whole groups, ending where the responses fill whole forwards or pass 4 forwards */
        int ng = 0, nresp = 0;
        while (g0 + ng < ngroups && ng < 4 * B &&
               !(nresp >= B && (nresp % B == 0 || nresp >= 4 * B)))
            nresp += groups[g0 + ng++].n;
        if (scorer_score(sc, groups + g0, ng, outs + at, msg)) {
            rc = -1;
            break;
        }
        for (int g = 0; g < ng; g++) {
            if (msg[g][0]) {
                if (prog.tty) fputs("\r\033[K", stderr);
                mmrm_warn("%s:%d: %s", data, group_line[g0 + g], msg[g]);
            }
        }
        for (int k = 0; k < nresp; k++) failed[outs[at + (size_t)k].status]++;
        at += (size_t)nresp;
        g0 += ng;
        progress_add(&prog, nresp);
    }
    progress_end(&prog);
    for (int s = 1; s < SCORE_NSTATUS; s++)
        if (failed[s]) mmrm_log("  %s: %ld responses not scored: %s", what, failed[s],
                                score_status_name((ScoreStatus)s));
    free(msg);
    return rc;
}
