/* commands.h - the infer/ subcommands of the mmrm command line. Each takes the arguments
 * after its name (argv[0] is the command name) and returns the process exit status:
 * 0 success, 1 failure (message printed), 2 usage error (usage printed). `--help` prints
 * the command's usage to stdout and returns 0. */
#ifndef MMRM_INFER_COMMANDS_H
#define MMRM_INFER_COMMANDS_H

int cmd_info(int argc, char **argv);   /* infer/cmd_model.c */
int cmd_init(int argc, char **argv);   /* infer/cmd_model.c */
int cmd_synth(int argc, char **argv);  /* infer/synth.c */
int cmd_score(int argc, char **argv);  /* infer/score.c */
int cmd_eval(int argc, char **argv);   /* infer/eval.c */
int cmd_bon(int argc, char **argv);    /* infer/bon.c */
int cmd_tokenize(int argc, char **argv); /* infer/cmd_tokenize.c */
int cmd_tokenize_build(int argc, char **argv); /* infer/cmd_tokenize_build.c: `tokenize build` */
int cmd_plot(int argc, char **argv);   /* infer/plot.c */
int cmd_serve(int argc, char **argv);  /* infer/serve.c */
int cmd_merge(int argc, char **argv);  /* infer/cmd_merge.c */

#endif
