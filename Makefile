# mmrm - the single entry point. `make help` lists the targets.
#
# Variables: NATIVE=1 adds -march=native; SANITIZE=1 builds under ASan+UBSan (into
# build/san); CC picks the C compiler (gcc by default); OMP_NUM_THREADS as usual.

CC       ?= gcc
NATIVE   ?= 0
SANITIZE ?= 0

DEB_PKGS := libstb-dev libinih-dev libcjson-dev openmpi-bin libopenmpi-dev
DEP_FILES := /usr/include/stb/stb_image.h /usr/include/ini.h /usr/include/cjson/cJSON.h

CFLAGS   := -std=c11 -D_GNU_SOURCE -O3 -g -fopenmp -Wall -Wextra -Werror -I. -MMD -MP
LDLIBS   := -fopenmp -lstb -linih -lcjson -lm -lpthread
BUILD    := build
ifeq ($(NATIVE),1)
CFLAGS   += -march=native
endif
ifeq ($(SANITIZE),1)
CFLAGS   := $(filter-out -O3,$(CFLAGS)) -O1 -fsanitize=address,undefined \
            -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDLIBS   += -fsanitize=address,undefined
BUILD    := build/san
endif

MAIN_SRC := train/main.c
LIB_SRC  := $(filter-out $(MAIN_SRC),$(wildcard runtime/*.c kernels/cpu/*.c models/*.c train/*.c infer/*.c))
TEST_SRC := tests/harness.c $(wildcard tests/unit/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

.PHONY: all help deps deps-check test bench clean
.DEFAULT_GOAL := all

all: $(BUILD)/mmrm ## build build/mmrm for the CPU

help: ## list the targets
	@echo "mmrm make targets:"
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "variables: NATIVE=1 (-march=native)  SANITIZE=1 (ASan+UBSan, build/san)  CC=gcc"

deps: ## install the Debian packages mmrm needs (as root), else print the command
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS); \
	else echo "run as root: apt-get install -y $(DEB_PKGS)"; fi

# Installs what is missing when run as root; otherwise stops with one hint line
# instead of a wall of compiler errors.
deps-check:
	@missing=""; for f in $(DEP_FILES); do [ -e $$f ] || missing="$$missing $$f"; done; \
	command -v mpirun >/dev/null 2>&1 || missing="$$missing mpirun"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "mmrm: installing missing dependencies ($$missing )"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS) >/dev/null || exit 1; \
	  else echo "mmrm: missing$$missing; install with: sudo apt-get install -y $(DEB_PKGS)"; exit 1; fi; \
	fi

$(BUILD)/%.o: %.c | deps-check
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/mmrm: $(BUILD)/$(MAIN_SRC:.c=.o) $(LIB_OBJ)
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/test_unit: $(TEST_OBJ) $(LIB_OBJ)
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/bench_%: $(BUILD)/bench/bench_%.o $(LIB_OBJ)
	$(CC) $^ -o $@ $(LDLIBS)

test: $(BUILD)/test_unit $(BUILD)/mmrm ## build and run every CPU test; last line "N passed, N failed"
	@bash tests/run.sh $(BUILD)

bench: $(BUILD)/bench_matmul $(BUILD)/bench_pipeline ## CPU benchmarks: matmul GFLOP/s, data pipeline pairs/s (printed, not asserted)
	$(BUILD)/bench_matmul
	$(BUILD)/bench_pipeline --pairs 200

clean: ## remove build/
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
