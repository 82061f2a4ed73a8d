/* error.h - errors, logging and checked allocation.
 *
 * Two ways to fail:
 * - recoverable (bad input a caller may skip or report): set a message with
 *   mmrm_set_error(...) and return an error code; the caller reads mmrm_last_error().
 *   The message is thread-local and should name the file and line/field and give a hint.
 * - fatal (a bug, out of memory, a run that cannot be trusted): MMRM_FATAL prints
 *   "mmrm: error: <message>" plus the source location and exits with status 1.
 */
#ifndef MMRM_ERROR_H
#define MMRM_ERROR_H

#include <stddef.h>

void mmrm_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *mmrm_last_error(void);

_Noreturn void mmrm_fatal(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define MMRM_FATAL(...) mmrm_fatal(__FILE__, __LINE__, __VA_ARGS__)
#define MMRM_CHECK(cond, ...)                   \
    do {                                        \
        if (!(cond)) MMRM_FATAL(__VA_ARGS__);   \
    } while (0)

/* In a function returning int: when cond is false, set the message and return -1. */
#define MMRM_REQUIRE(cond, ...)           \
    do {                                  \
        if (!(cond)) {                    \
            mmrm_set_error(__VA_ARGS__);  \
            return -1;                    \
        }                                 \
    } while (0)

/* "mmrm: ..." lines on stderr; mmrm_log is silenced by mmrm_set_quiet(1) */
void mmrm_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mmrm_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mmrm_set_quiet(int quiet);

/* allocation that cannot return NULL (fatal with the size on failure) */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
