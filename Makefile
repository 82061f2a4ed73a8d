# mmrm - the single entry point. `make help` lists the targets.
#
# Variables: NATIVE=1 adds -march=native; SANITIZE=1 builds under ASan+UBSan (into
# build/san); CC picks the C compiler (gcc by default); OMP_NUM_THREADS as usual.
# MPI=1 (the default when OpenMPI's mpicc is installed) builds multi-process support with
# mpicc's flags but the same compiler; MPI=0 builds a single-process mmrm. NCCL=1 adds the
# NCCL device collectives (CUDA_HOME, default /usr/local/cuda). CUDA=1 (what `make cuda`
# sets) adds the CUDA backend (kernels/cuda/*.cu through nvcc, for CUDA_ARCHS).

CC       ?= gcc
NATIVE   ?= 0
SANITIZE ?= 0
MPI      ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
NCCL     ?= 0
CUDA     ?= 0
CUDA_HOME ?= /usr/local/cuda
NVCC     ?= $(CUDA_HOME)/bin/nvcc
CUDA_ARCHS ?= 80 90

DEB_PKGS := libstb-dev libjpeg-dev libinih-dev libcjson-dev libpcre2-dev libutf8proc-dev libmicrohttpd-dev openmpi-bin libopenmpi-dev g++ perl \
            libcairo2-dev fonts-dejavu-core
DEP_FILES := /usr/include/stb/stb_image.h /usr/include/jpeglib.h /usr/include/ini.h /usr/include/cjson/cJSON.h /usr/include/pcre2.h /usr/include/utf8proc.h /usr/include/microhttpd.h /usr/bin/g++ /usr/bin/perl \
             /usr/include/cairo/cairo.h /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf

CFLAGS   := -std=c11 -D_GNU_SOURCE -O3 -g -fopenmp -Wall -Wextra -Wmissing-prototypes -Werror -I. -MMD -MP
LDLIBS   := -fopenmp -lstb -ljpeg -linih -lcjson -lpcre2-8 -lutf8proc -lmicrohttpd -lcairo -lfontconfig -lm -lpthread
BUILD    := build
ifeq ($(NATIVE),1)
CFLAGS   += -march=native
endif
ifeq ($(SANITIZE),1)
CFLAGS   := $(filter-out -O3,$(CFLAGS)) -O1 -fsanitize=address,undefined,float-cast-overflow \
            -fno-sanitize-recover=undefined,float-cast-overflow -fno-omit-frame-pointer
LDLIBS   += -fsanitize=address,undefined,float-cast-overflow
BUILD    := build/san
endif
ifeq ($(MPI),1)
ifeq ($(shell command -v mpicc 2>/dev/null),)
$(error MPI=1 but mpicc is missing: apt-get install -y libopenmpi-dev, or build with MPI=0)
endif
# -isystem: MPI's headers are not held to our -Werror
CFLAGS   += -DMMRM_MPI $(patsubst -I%,-isystem %,$(shell mpicc --showme:compile))
LDLIBS   += $(shell mpicc --showme:link)
endif
ifeq ($(NCCL),1)
CFLAGS   += -DMMRM_NCCL -isystem $(CUDA_HOME)/include
LDLIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lnccl -lcudart
endif

NVCCFLAGS := -std=c++20 -O3 -lineinfo -I. -DMMRM_CUDA -MMD -MP -Xcompiler -Wall,-Wextra \
             $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
             -gencode arch=compute_$(lastword $(CUDA_ARCHS)),code=compute_$(lastword $(CUDA_ARCHS))
ifeq ($(CUDA),1)
ifeq ($(SANITIZE),1)
$(error SANITIZE=1 is for the CPU build; ASan does not run under the CUDA driver)
endif
ifeq ($(wildcard $(NVCC)),)
$(error CUDA=1 but $(NVCC) is missing: install the CUDA toolkit or set CUDA_HOME)
endif
CFLAGS   += -DMMRM_CUDA -isystem $(CUDA_HOME)/include
LDLIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcudart -lstdc++
# cuDNN (fused attention, kernels/cuda/attention_cudnn.cu): in the CUDA toolkit, or where
# CUDNN_HOME points (the nvidia-cudnn pip wheel's site-packages/nvidia/cudnn: include/, lib/
# with only libcudnn.so.9); without cudnn.h the build goes on without it (no -DMMRM_CUDNN)
CUDNN_HOME ?= $(CUDA_HOME)
CUDNN_LIBDIR := $(patsubst %/,%,$(firstword $(dir $(wildcard $(CUDNN_HOME)/lib64/libcudnn.so* $(CUDNN_HOME)/lib/libcudnn.so*))))
ifneq ($(and $(wildcard $(CUDNN_HOME)/include/cudnn.h),$(CUDNN_LIBDIR)),)
NVCCFLAGS += -DMMRM_CUDNN -isystem $(CUDNN_HOME)/include
LDLIBS   += -L$(CUDNN_LIBDIR) -Wl,-rpath,$(CUDNN_LIBDIR) -l:libcudnn.so.9
else
$(info make: no cuDNN under CUDNN_HOME=$(CUDNN_HOME) (include/cudnn.h, lib64/ or lib/libcudnn.so.9): building without it, attention_impl = cudnn unavailable)
endif
endif

# Objects depend on the flags they were built with, so switching MPI, NCCL or NATIVE
# rebuilds instead of linking objects compiled for another configuration.
FLAGS_STAMP := $(BUILD)/.flags
ifeq ($(filter clean,$(MAKECMDGOALS)),)
STAMP_TEXT := $(CC) $(CFLAGS) $(LDLIBS) $(if $(filter 1,$(CUDA)),$(NVCC) $(NVCCFLAGS))
$(shell mkdir -p $(BUILD); echo '$(STAMP_TEXT)' | cmp -s - $(FLAGS_STAMP) || \
        echo '$(STAMP_TEXT)' > $(FLAGS_STAMP))
endif

MAIN_SRC := train/main.c
LIB_SRC  := $(filter-out $(MAIN_SRC),$(wildcard runtime/*.c kernels/cpu/*.c models/*.c train/*.c infer/*.c))
TEST_SRC := tests/harness.c $(wildcard tests/unit/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
ifeq ($(CUDA),1)
LIB_OBJ  += $(patsubst %.cu,$(BUILD)/%.o,$(wildcard kernels/cuda/*.cu))
endif
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
# the libFuzzer targets tests/fuzz/fuzz_NAME.c (`make fuzz`, below); make test replays them
FUZZ_TARGETS := records safetensors st_index config train_config image tokenizer trainer_state
FUZZ_REPLAY  := $(FUZZ_TARGETS:%=$(BUILD)/fuzz_replay_%)
.SECONDARY: $(patsubst %,$(BUILD)/tests/fuzz/%.o,$(FUZZ_TARGETS:%=fuzz_%) driver fuzz_util)
# the kernel lab (bench/lab, README.md there): linked into build/bench_cuda and, through
# translate.pl like kernels/cuda, into build/emu_bench_cuda
LAB_CU   := $(wildcard bench/lab/*.cu)

.PHONY: all help deps deps-check fuzz-check test bench demo fuzz clean cuda gpu-test
.DEFAULT_GOAL := all

all: $(BUILD)/mmrm ## build build/mmrm for the CPU

help: ## list the targets
	@echo "mmrm make targets:"
	@grep -hE '^[a-z][a-zA-Z_-]*:.*## ' $(firstword $(MAKEFILE_LIST)) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "variables: NATIVE=1 (-march=native)  SANITIZE=1 (ASan+UBSan, build/san)  CC=gcc"
	@echo "           MPI=0|1 (multi-process; now $(MPI))  NCCL=1 (GPU collectives, CUDA_HOME=$(CUDA_HOME))"
	@echo "           CUDA=1 (the CUDA backend; \`make cuda\` sets it)  CUDA_ARCHS='$(CUDA_ARCHS)'"

deps: ## install the Debian packages mmrm needs (as root), else print the command
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS); \
	else echo "run as root: apt-get install -y $(DEB_PKGS)"; fi

# Installs what is missing when run as root; otherwise stops with one hint line
# instead of a wall of compiler errors.
deps-check:
	@missing=""; for f in $(DEP_FILES); do [ -e $$f ] || missing="$$missing $$f"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "mmrm: installing missing dependencies ($$missing )"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS) >/dev/null || exit 1; \
	  else echo "mmrm: missing$$missing; install with: sudo apt-get install -y $(DEB_PKGS)"; exit 1; fi; \
	fi

$(BUILD)/%.o: %.c $(FLAGS_STAMP) | deps-check
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu $(FLAGS_STAMP) | deps-check
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

cuda: ## build build/mmrm with the CPU and CUDA backends (nvcc; GPUs sm_80 and sm_90)
	$(MAKE) CUDA=1 all $(BUILD)/gpu_parity $(BUILD)/bench_cuda $(BUILD)/bench_step
	@# the shared libraries a bare GPU machine may lack travel with the build (tests/gpu/run.sh);
	@# cairo's (mmrm plot) with their X11/font dependencies, so that mmrm starts there too
	@mkdir -p $(BUILD)/lib && ldd $(BUILD)/mmrm | awk '/libcjson|libinih|libjpeg|libstb|libpcre2|libutf8proc|libmicrohttpd|libgnutls|libnettle|libhogweed|libp11-kit|libidn2|libunistring|libtasn1|libgmp|libffi|libcairo|libfontconfig|libpixman|libfreetype|libpng16|libxcb|libX|libexpat|libbrotli|libbsd|libmd\./ {print $$3}' | xargs -r cp -L -t $(BUILD)/lib

gpu-test: ## on a GPU machine: tests/gpu/run.sh (CUDA vs CPU parity, benchmarks; OUT=dir)
	bash tests/gpu/run.sh

$(BUILD)/gpu_parity: $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/gpu/*.c)) $(patsubst %.cu,$(BUILD)/%.o,$(wildcard tests/gpu/*.cu)) $(LIB_OBJ)
	$(CC) $^ -o $@ $(LDLIBS)

# build/emu_parity: gpu_parity with kernels/cuda/*.cu, unmodified, run on the CPU by the
# emulator in tests/cuda_emu (README.md there; run by tests/integration/cuda_emu.sh).
# translate.pl rewrites the kernel launches into $(BUILD)/emu/kernels/cuda/*.cpp, g++
# compiles them with cuda_emu.h force-included, and the C sources are compiled again into
# $(BUILD)/emu with -DMMRM_CUDA so that DEV_CUDA reaches the emulated backend (the normal
# objects stay CPU-only). -fcf-protection=none: the emulator switches stacks itself, so the
# binary must not be marked for CET shadow stacks.
EMU_CXX      ?= g++
EMU_CPPFLAGS := -I. -Itests/cuda_emu/include -DMMRM_CUDA -DMMRM_CUDA_EMU
EMU_CXXFLAGS := -std=c++20 -O2 -g -fopenmp -Wall -Wextra -Wno-unknown-pragmas -MMD -MP
ifeq ($(SANITIZE),1)
EMU_CXXFLAGS += -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow -fno-omit-frame-pointer
endif
# With MPI, the emulated build also has NCCL: tests/cuda_emu/nccl_emu.c implements the
# NCCL calls over MPI (include/nccl.h there), so the GPU data-parallel path runs in tests.
ifeq ($(MPI),1)
EMU_NCCL_CFLAGS := -DMMRM_NCCL -Itests/cuda_emu/include
EMU_NCCL_OBJ    := $(BUILD)/emu/tests/cuda_emu/nccl_emu.o
endif
EMU_OBJ := $(patsubst %.cu,$(BUILD)/emu/%.o,$(wildcard kernels/cuda/*.cu)) \
           $(BUILD)/emu/tests/cuda_emu/cuda_emu.o $(EMU_NCCL_OBJ) \
           $(patsubst %.c,$(BUILD)/emu/%.o,$(LIB_SRC) $(wildcard tests/gpu/*.c)) \
           $(patsubst %.cu,$(BUILD)/emu/%.o,$(wildcard tests/gpu/*.cu))
.SECONDARY: $(patsubst %.cu,$(BUILD)/emu/%.cpp,$(wildcard kernels/cuda/*.cu) $(wildcard tests/gpu/*.cu))
EMU_STAMP := $(BUILD)/emu/.flags
ifeq ($(filter clean,$(MAKECMDGOALS)),)
$(shell mkdir -p $(BUILD)/emu; echo '$(EMU_CXX) $(EMU_CXXFLAGS) $(EMU_NCCL_CFLAGS)' | cmp -s - $(EMU_STAMP) || \
        echo '$(EMU_CXX) $(EMU_CXXFLAGS) $(EMU_NCCL_CFLAGS)' > $(EMU_STAMP))
endif

$(BUILD)/emu/%.cpp: %.cu tests/cuda_emu/translate.pl
	@mkdir -p $(dir $@)
	perl tests/cuda_emu/translate.pl $< $@

$(BUILD)/emu/kernels/cuda/%.o: $(BUILD)/emu/kernels/cuda/%.cpp tests/cuda_emu/cuda_emu.h $(FLAGS_STAMP) $(EMU_STAMP)
	$(EMU_CXX) $(EMU_CPPFLAGS) -include tests/cuda_emu/cuda_emu.h $(EMU_CXXFLAGS) -c $< -o $@

$(BUILD)/emu/tests/gpu/%.o: $(BUILD)/emu/tests/gpu/%.cpp tests/cuda_emu/cuda_emu.h $(FLAGS_STAMP) $(EMU_STAMP)
	$(EMU_CXX) $(EMU_CPPFLAGS) -include tests/cuda_emu/cuda_emu.h $(EMU_CXXFLAGS) -c $< -o $@

$(BUILD)/emu/tests/cuda_emu/cuda_emu.o: tests/cuda_emu/cuda_emu.cpp tests/cuda_emu/cuda_emu.h $(FLAGS_STAMP) $(EMU_STAMP)
	@mkdir -p $(dir $@)
	$(EMU_CXX) $(EMU_CPPFLAGS) $(EMU_CXXFLAGS) $(if $(filter x86_64,$(shell uname -m)),-fcf-protection=none) -c $< -o $@

$(BUILD)/emu/%.o: %.c $(FLAGS_STAMP) $(EMU_STAMP) | deps-check
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(EMU_NCCL_CFLAGS) -DMMRM_CUDA -DMMRM_CUDA_EMU -c $< -o $@

$(BUILD)/emu_parity: $(EMU_OBJ)
	$(EMU_CXX) $^ -o $@ $(filter-out -lcublasLt -lcudart -lnccl,$(LDLIBS))

# build/emu_mmrm: the whole command line with the emulated CUDA backend, so the GPU code
# paths of train/score (device transfers, staging, the trainer on DEV_CUDA) run in
# tests/integration/cuda_emu_train.sh
$(BUILD)/emu_mmrm: $(BUILD)/emu/$(MAIN_SRC:.c=.o) $(filter-out $(BUILD)/emu/tests/gpu/%,$(EMU_OBJ))
	$(EMU_CXX) $^ -o $@ $(filter-out -lcublasLt -lcudart -lnccl,$(LDLIBS))

# build/emu_bench_cuda: bench_cuda with the kernel lab (bench/lab/*.cu, translated like
# kernels/cuda) on the emulated backend; tests/integration/kernel_lab.sh runs its --check
EMU_LAB_OBJ := $(patsubst %.cu,$(BUILD)/emu/%.o,$(LAB_CU))
.SECONDARY: $(patsubst %.cu,$(BUILD)/emu/%.cpp,$(LAB_CU))

$(BUILD)/emu/bench/lab/%.o: $(BUILD)/emu/bench/lab/%.cpp tests/cuda_emu/cuda_emu.h $(FLAGS_STAMP) $(EMU_STAMP)
	$(EMU_CXX) $(EMU_CPPFLAGS) -include tests/cuda_emu/cuda_emu.h $(EMU_CXXFLAGS) -c $< -o $@

# bench_cuda.c includes <cuda_runtime_api.h>: the emulator's stub (its C declarations)
$(BUILD)/emu/bench/bench_cuda.o: CFLAGS += -Itests/cuda_emu/include

$(BUILD)/emu_bench_cuda: $(BUILD)/emu/bench/bench_cuda.o $(EMU_LAB_OBJ) $(filter-out $(BUILD)/emu/tests/gpu/%,$(EMU_OBJ))
	$(EMU_CXX) $^ -o $@ $(filter-out -lcublasLt -lcudart -lnccl,$(LDLIBS))

# build/emu_bench_step: bench/bench_step.c (one training step at torch_baseline.py's shape)
# on the emulated backend, so that its GPU path runs here (tests/gpu/run.sh times it on a GPU)
$(BUILD)/emu_bench_step: $(BUILD)/emu/bench/bench_step.o $(filter-out $(BUILD)/emu/tests/gpu/%,$(EMU_OBJ))
	$(EMU_CXX) $^ -o $@ $(filter-out -lcublasLt -lcudart -lnccl,$(LDLIBS))

$(BUILD)/mmrm: $(BUILD)/$(MAIN_SRC:.c=.o) $(LIB_OBJ)
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/test_unit: $(TEST_OBJ) $(LIB_OBJ)
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/bench_%: $(BUILD)/bench/bench_%.o $(LIB_OBJ)
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/bench_cuda: $(BUILD)/bench/bench_cuda.o $(patsubst %.cu,$(BUILD)/%.o,$(LAB_CU)) $(LIB_OBJ)
	$(CC) $^ -o $@ $(LDLIBS)

test: $(BUILD)/test_unit $(BUILD)/mmrm $(BUILD)/bench_step $(BUILD)/emu_parity $(BUILD)/emu_mmrm $(BUILD)/emu_bench_cuda $(FUZZ_REPLAY) ## build and run every CPU test; last line "N passed, N failed"
	@bash tests/run.sh $(BUILD)

bench: $(BUILD)/bench_matmul $(BUILD)/bench_pipeline $(BUILD)/bench_model $(BUILD)/bench_tokenizer ## CPU benchmarks: matmul GFLOP/s, data pipeline pairs/s, tokenizer MB/s (printed, not asserted)
	$(BUILD)/bench_matmul
	$(BUILD)/bench_pipeline --pairs 200
	$(BUILD)/bench_model --quick
	$(BUILD)/bench_tokenizer

# Fuzzing (tests/fuzz, fuzz.h there): each target links with libFuzzer through clang, the
# library compiled once more with ASan+UBSan and coverage into build/fuzz (MPI off). Seeds
# are tests/fuzz/corpus/NAME; new inputs go to build/fuzz/corpus/NAME; a crash is left as
# build/fuzz/crash-* and stops the run. `make test` replays the seeds and the regressions
# (tests/fuzz/regressions/NAME) through the same targets built with gcc and driver.c.
FUZZ_SECONDS ?= 30
# extra libFuzzer flags; CI passes a fixed -seed and -runs so its short pass is reproducible
FUZZ_ARGS    ?=
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -fopenmp -fno-omit-frame-pointer -I. \
                -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow
FUZZ_OBJ     := $(LIB_SRC:%.c=build/fuzz/obj/%.o) build/fuzz/obj/tests/fuzz/fuzz_util.o
FUZZ_LIBS    := -lstb -ljpeg -linih -lcjson -lpcre2-8 -lutf8proc -lmicrohttpd -lcairo -lfontconfig -lm -lpthread -fopenmp
.SECONDARY: $(FUZZ_OBJ)

fuzz-check:
	@if ! command -v clang >/dev/null 2>&1 || ! echo '#include <omp.h>' | clang -fopenmp -E -x c - >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then echo "mmrm: installing clang and libomp-dev for make fuzz"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libomp-dev >/dev/null || exit 1; \
	  else echo "mmrm: make fuzz needs clang with OpenMP: sudo apt-get install -y clang libomp-dev"; exit 1; fi; \
	fi

build/fuzz/obj/%.o: %.c | deps-check fuzz-check
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJ)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $^ -o $@ $(FUZZ_LIBS)

fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%) ## build the libFuzzer targets (clang) and run each for FUZZ_SECONDS
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t; \
	  echo "=== fuzz_$$t ($(FUZZ_SECONDS) s)"; \
	  build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2560 $(FUZZ_ARGS) \
	    -print_final_stats=1 -artifact_prefix=build/fuzz/ build/fuzz/corpus/$$t tests/fuzz/corpus/$$t \
	    2>build/fuzz/$$t.log || { tail -n 60 build/fuzz/$$t.log; exit 1; }; \
	  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' build/fuzz/$$t.log; \
	done

# the targets without libFuzzer: driver.c runs one over files (tests/integration/fuzz_regressions.sh)
$(BUILD)/fuzz_replay_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/driver.o \
                        $(BUILD)/tests/fuzz/fuzz_util.o $(LIB_OBJ)
	$(CC) $^ -o $@ $(LDLIBS)

demo: ## the quick-start job: synthetic benchmark, standard vs shortcut-aware RM, one table
	@t0=$$(date +%s.%N); $(MAKE) --no-print-directory $(BUILD)/mmrm && \
	BUILD_SECONDS=$$(awk -v a=$$(date +%s.%N) -v b=$$t0 'BEGIN { printf "%.1f", a - b }') \
	MMRM=$(BUILD)/mmrm bash bench/demo.sh

clean: ## remove build/
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
