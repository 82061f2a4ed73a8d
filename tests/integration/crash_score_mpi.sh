#!/usr/bin/env bash
# crash_score.sh with every run under mpirun with 2 ranks (per-rank part files, merged by
# rank 0 at the end or by the rerun); the whole job is killed at once, as on a lost node.
RANKS=2 exec bash "$(dirname "$0")/crash_score.sh"
