/* strbuf.h - a growable, always NUL-terminated string buffer, and the monotonic clock.
 * Zero-initialised (StrBuf b = {0}) is an empty buffer; sb_free releases it. */
#ifndef MMRM_STRBUF_H
#define MMRM_STRBUF_H

#include <stddef.h>

typedef struct StrBuf {
    char *s;    /* NUL-terminated once anything was appended; NULL while empty */
    size_t len; /* bytes, without the NUL */
    size_t cap;
} StrBuf;

void sb_append(StrBuf *b, const char *s, size_t n); /* n bytes of s (may hold NULs) */
void sb_puts(StrBuf *b, const char *s);
void sb_putc(StrBuf *b, char c);
void sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* the contents as a malloc'd string (never NULL; "" when empty); the buffer is emptied */
char *sb_take(StrBuf *b);
/* empties the buffer, keeping its memory for the next contents */
void sb_reset(StrBuf *b);
void sb_free(StrBuf *b);

/* seconds on CLOCK_MONOTONIC (for durations and rates, never for dates) */
double clock_seconds(void);

/* The candidate nearest to s (case-insensitive Levenshtein distance) when it is close enough
 * to be a typo of it, else NULL: the "did you mean" of error messages. */
const char *str_nearest(const char *s, const char *const *cands, int n);

#endif
