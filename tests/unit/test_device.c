/* test_device.c - device selection and moving parameter stores between devices, as far as
 * a machine without a GPU can check them: the `device` setting's parsing and errors, auto
 * falling back to the CPU, host transfers on the CPU, and params_to_device / params_host
 * keeping every tensor's view (the CUDA side runs in tests/gpu/run.sh). */
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/memory.h"
#include "tests/harness.h"

static int gpus(void) { return device_gpu_count(); }

TEST(test_device_auto_and_cpu_resolve_and_bad_names_are_errors_listing_the_valid_ones) {
    Device d = DEV_CUDA;
    CHECK(device_resolve("cpu", -1, 0, &d) == 0 && d == DEV_CPU, "cpu resolves to the CPU");
    d = DEV_CUDA;
    CHECK(device_resolve("auto", 3, 0, &d) == 0, "auto always resolves");
    CHECK(d == (gpus() > 0 ? DEV_CUDA : DEV_CPU), "auto picks the GPU exactly when one is visible");
    d = DEV_CUDA;
    CHECK(device_resolve(NULL, -1, 0, &d) == 0 && d == (gpus() > 0 ? DEV_CUDA : DEV_CPU),
          "no setting means auto");
    const char *bad[] = {"tpu", "cuda:", "cuda:x", "cuda:-1", "cudax", "CPU"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(device_resolve(bad[i], -1, 0, &d) == -1, "'%s' is refused", bad[i]);
        CHECK(strstr(mmrm_last_error(), bad[i]) != NULL, "the error names '%s': %s", bad[i],
              mmrm_last_error());
    }
    CHECK(strstr(mmrm_last_error(), "auto, cpu, cuda") != NULL || strstr(mmrm_last_error(), "cuda:N"),
          "the error lists the valid values: %s", mmrm_last_error());
}

TEST(test_device_cuda_without_a_gpu_or_backend_is_a_clear_error) {
    if (gpus() > 0) return; /* a GPU machine checks the other side in tests/gpu */
    Device d;
    CHECK(device_resolve("cuda", -1, 0, &d) == -1, "cuda without a GPU is refused");
    CHECK(strstr(mmrm_last_error(), device_cuda_compiled() ? "no GPU is visible" : "make cuda") != NULL,
          "the error says what to do: %s", mmrm_last_error());
    CHECK(device_resolve("cuda:1", -1, 0, &d) == -1, "cuda:1 without a GPU is refused");
}

TEST(test_device_host_transfers_on_the_cpu_copy_exactly) {
    TRng r = trng(5);
    float a[37], b[37];
    fill_normal(&r, a, 37, 1.0f);
    float *d = device_alloc(DEV_CPU, sizeof a);
    device_copy_from_host(DEV_CPU, d, a, sizeof a);
    device_sync(DEV_CPU);
    device_copy_to_host(DEV_CPU, b, d, sizeof b);
    CHECK(!memcmp(a, b, sizeof a), "round trip through device memory is exact");
    /* overlapping device_memcpy behaves like memmove (arena compaction relies on it) */
    device_memcpy(DEV_CPU, d, d + 5, 32 * sizeof(float));
    CHECK(!memcmp(d, a + 5, 32 * sizeof(float)), "overlapping move down is a memmove");
    device_free(DEV_CPU, d);
}

TEST(test_params_host_view_and_same_device_move_keep_every_tensor_view) {
    ParamStore s;
    params_init(&s, DEV_CPU);
    int a = params_add(&s, "a.weight", PG_LLM, 1, 2, (int[]){3, 5});
    int b = params_add(&s, "a.bias", PG_LLM, 0, 1, (int[]){5});
    int c = params_add(&s, "v.weight", PG_VISION, 1, 1, (int[]){7});
    params_freeze_group(&s, PG_VISION, 1);
    params_finalize(&s);
    TRng r = trng(9);
    fill_normal(&r, s.data, s.numel, 1.0f);
    float *before = malloc(s.numel * sizeof(float));
    memcpy(before, s.data, s.numel * sizeof(float));
    params_to_device(&s, DEV_CPU); /* a no-op */
    float *tofree;
    const float *h = params_host(&s, s.data, s.numel, &tofree);
    CHECK(h == s.data && tofree == NULL, "on the CPU the host view is the buffer itself");
    CHECK(!memcmp(h, before, s.numel * sizeof(float)), "values unchanged");
    CHECK(params_get(&s, a)->grad && params_get(&s, b)->grad && !params_get(&s, c)->grad,
          "trainable tensors keep gradient views, frozen ones none");
#ifdef MMRM_CUDA
    if (gpus() > 0) { /* there and back: every view follows, values survive */
        params_alloc_optimizer(&s);
        params_to_device(&s, DEV_CUDA);
        CHECK(params_get(&s, a)->device == DEV_CUDA, "tensors are on the GPU");
        params_to_device(&s, DEV_CPU);
        CHECK(!memcmp(s.data, before, s.numel * sizeof(float)), "values survive the round trip");
        CHECK(params_get(&s, b)->data == s.data + (params_get(&s, b)->grad - s.grad),
              "views keep their offsets");
    }
#endif
    free(before);
    params_free(&s);
}
