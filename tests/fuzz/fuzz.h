/* fuzz.h - what every libFuzzer target in tests/fuzz shares.
 *
 * A target defines LLVMFuzzerInitialize and LLVMFuzzerTestOneInput. `make fuzz` links it with
 * libFuzzer (clang -fsanitize=fuzzer); `make test` links it with driver.c, which runs it once
 * over each committed corpus and regression file (tests/integration/fuzz_regressions.sh).
 *
 * Parsers that read paths get the input as files in a private temporary folder. An input
 * meant as several files is split at FUZZ_SEP: part k becomes names[k] (an empty part, or
 * one past the last separator, means that file is absent). */
#ifndef MMRM_FUZZ_H
#define MMRM_FUZZ_H
#include <stddef.h>
#include <stdint.h>

#define FUZZ_SEP "\n--- next file ---\n"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* a fresh folder /tmp/mmrm_fuzz_XXXXXX, removed with the files named names[0..n) at exit */
const char *fuzz_tmpdir(const char *const *names, int n);
/* writes data[0..size) to dir/name (aborts on an I/O error); returns the path (static) */
const char *fuzz_write(const char *dir, const char *name, const void *data, size_t size);
/* splits data at FUZZ_SEP into dir/names[k] as above */
void fuzz_write_parts(const char *dir, const uint8_t *data, size_t size,
                      const char *const *names, int n);
#endif
