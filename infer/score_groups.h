/* score_groups.h - every response of a list of scoring groups through a scorer, in chunks of
 * whole groups, with progress on stderr and a warning per group that failed (eval and bon). */
#ifndef MMRM_INFER_SCORE_GROUPS_H
#define MMRM_INFER_SCORE_GROUPS_H

#include "infer/scorer.h"

/* outs gets the groups' responses back to back (NaN and a status for those not scored);
 * group_line (ngroups) names each group's input line in warnings "data:line: ...", what is the
 * progress unit. 0, or -1 with mmrm_last_error() for a failure that is not the data's. */
int score_groups(Scorer *sc, const ScoreGroup *groups, int ngroups, const int *group_line,
                 const char *data, const char *what, ScoreOut *outs);

#endif
