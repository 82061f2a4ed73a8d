/* tokenizer_spm.h - the SentencePiece BPE kind (TOKENIZER_SPM), private to models/tokenizer*.c.
 *
 * models/tokenizer.h describes the kind; this header is the hook points tokenizer.c calls. */
#ifndef MMRM_TOKENIZER_SPM_H
#define MMRM_TOKENIZER_SPM_H

#include <stddef.h>

#include "models/tokenizer.h"

#define SPM_MODEL_FILE "tokenizer.model"

/* DIR/tokenizer.model plus the added tokens of DIR's tokenizer_config.json, added_tokens.json
 * and special_tokens_map.json when present; NULL with an error naming the file and what is
 * wrong. */
Tokenizer *tokenizer_spm_load(const char *dir);
/* writes DIR/tokenizer.model (the loaded file's bytes) and DIR/tokenizer_config.json (the
 * special tokens and roles), which tokenizer_load reads back as the same tokenizer */
int tokenizer_spm_save(const Tokenizer *tok, const char *dir);
void spm_model_free(SpmModel *m);
/* text between special tokens: appends its ids (up to cap) and counts every id in *count */
void spm_encode(const SpmModel *m, const char *s, size_t n, int *ids, int cap, size_t *count);
/* the whole of tokenizer_decode for this kind */
char *spm_decode(const Tokenizer *tok, const int *ids, int n, size_t *len_out);

#endif
