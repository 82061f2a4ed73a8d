/* score_merge.h - the part files of a multi-rank `mmrm score`: each rank appends its tagged
 * lines to OUT.parts/rank-R, and rank 0 merges them into OUT in input order at the end,
 * through a crash-safe rename sequence (OUT.parts -> OUT.parts.merging -> OUT.parts.merged;
 * score_merge.c tells the story). Part files of a killed job are kept and counted as done
 * by the rerun, with any number of ranks. */
#ifndef MMRM_SCORE_MERGE_H
#define MMRM_SCORE_MERGE_H

#include "infer/score_resume.h"

typedef struct {
    char *live;    /* OUT.parts: the part files of this run (or of a killed one) */
    char *merging; /* OUT.parts.merging: their lines are being appended to OUT */
    char *merged;  /* OUT.parts.merged: their lines are in OUT; only removal is left */
} PartDirs;

void parts_init(PartDirs *d, const char *out);
void parts_free(PartDirs *d);

/* Rank 0, holding the lock on OUT (fd), before anything else: finishes or undoes what a
 * killed merge left. 0 or -1. */
int parts_recover(const PartDirs *d, const char *out, int fd);
/* Rank 0 after reading OUT: the part files of a killed run are kept and their complete lines
 * added to done (*nfiles files holding *lines lines; a torn last line is cut); without them,
 * the folder is created when want (several ranks). *used = 1 when this run writes part
 * files. 0 or -1. */
int parts_prepare(const PartDirs *d, const char *out, int want, int grouped, KeySet *done,
                  int *used, int *nfiles, long *lines);
/* Opens this rank's part file for appending; the fd, or -1 with the error set. *path (the
 * caller frees) names it either way. */
int parts_open(const PartDirs *d, int rank, char **path);
/* Rank 0, once every rank has synced its lines: appends every part line to OUT (fd, locked)
 * in input order and removes the part files. *merged = the lines appended. 0 or -1 (a rerun
 * of the same command finishes a merge that stopped). */
int parts_merge(const PartDirs *d, const char *out, int fd, long *merged);

#endif
