#!/usr/bin/env bash
# crash_train.sh with every run under mpirun with 2 ranks (2 pairs each: the same global
# batch): the whole job (mpirun and both ranks) is killed at once, as on a lost node.
RANKS=2 exec bash "$(dirname "$0")/crash_train.sh"
