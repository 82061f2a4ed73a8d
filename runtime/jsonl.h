/* jsonl.h - a streaming JSONL reader: one JSON value per line, parsed with cJSON, with the
 * file name and 1-based line number kept for messages.
 *
 * Lines end in LF or CRLF; the last line may lack its newline. Blank lines (only spaces, tabs
 * and CR) are skipped but still counted, so line numbers match an editor's. A UTF-8 byte order
 * mark at the start of the file is ignored. A line is malformed, and reported without stopping
 * the reader, when it is not exactly one JSON value, holds a NUL byte or a \u0000 escape (cJSON
 * strings are C strings and would be cut short silently), holds bytes that are not UTF-8, or is
 * longer than the line cap (64 MiB unless changed).
 */
#ifndef MMRM_JSONL_H
#define MMRM_JSONL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#define JSONL_DEFAULT_MAX_LINE ((size_t)64 << 20)

typedef struct JsonlReader JsonlReader;

/* NULL with mmrm_last_error() naming the file when it cannot be opened or is a directory. */
JsonlReader *jsonl_open(const char *path);

/* Reads the next non-blank line into *value (the caller frees it with cJSON_Delete) and sets
 * *lineno. Returns 1 for a parsed value (of any JSON type; records check their own shape),
 * 0 at end of file, -1 for a malformed line (mmrm_last_error() is "file:line: malformed JSON
 * (...)"; the next call continues with the following line), -2 for a read error (stop). */
int jsonl_next(JsonlReader *r, cJSON **value, int *lineno);

/* Lines longer than max_bytes (excluding the newline) are malformed; they are read through to
 * their end without being kept. */
void jsonl_set_max_line(JsonlReader *r, size_t max_bytes);

void jsonl_close(JsonlReader *r);

/* The checks a line passes, for JSON text from elsewhere (an HTTP body): the index of the first
 * byte that does not start well-formed UTF-8, and of the first \u0000 escape; n when none. */
size_t jsonl_utf8_invalid_at(const unsigned char *s, size_t n);
size_t jsonl_nul_escape_at(const char *s, size_t n);

#endif
