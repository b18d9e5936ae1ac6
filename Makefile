# moelab: `make` builds build/moelab, `make test` runs the suite, `make bench` the benchmark.
CC      ?= gcc
OPT     ?= -O3 -march=native -fno-math-errno
CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -fopenmp -Isrc $(OPT)
LDLIBS  += -ldnnl -lopenblas -lcjson -lz -lm -fopenmp
BUILD   ?= build
# Open MPI, when installed: `mpirun -np N build/moelab train ...` trains over N processes
# (src/core/dist.c); without it the same calls are no-ops and the build is single-process.
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
ifneq ($(MPI_CFLAGS),)
CFLAGS  += -DMOELAB_MPI $(MPI_CFLAGS)
LDLIBS  += $(shell mpicc --showme:link)
endif
PYTHON  ?= /usr/bin/python3

LIB_SRC  := $(sort $(wildcard src/core/*.c src/model/*.c src/moe/*.c src/routers/*.c src/data/*.c src/io/*.c src/train/*.c src/metrics/*.c src/report/*.c))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all deps demo test test-asan bench fixtures clean fuzz fuzzers
all: $(BUILD)/moelab

# Installs missing Debian packages when run as root, else says which to install.
deps:
	@scripts/setup.sh --check

# The built-in default job: train a small MoE on the license texts Debian ships.
demo: deps
	$(MAKE) $(BUILD)/moelab
	scripts/demo.sh

$(BUILD)/libmoelab.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/moelab: $(CLI_OBJ) $(BUILD)/libmoelab.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c $(wildcard src/*/*.h) tests/testlib.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libmoelab.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The whole suite: C unit tests, then the CLI tests; ends with "N passed, N failed".
test: deps
	$(MAKE) $(BUILD)/moelab $(TESTS)
	@BUILD=$(BUILD) PYTHON=$(PYTHON) tests/run_tests.sh $(TESTS)

# The same suite under AddressSanitizer + UBSan, in its own build folder.
test-asan:
	$(MAKE) test BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

# Regenerates the PyTorch parity fixtures in tests/fixtures (needs python3-torch).
fixtures:
	$(PYTHON) tests/mirror/make_fixtures.py --out tests/fixtures
	$(PYTHON) tests/mirror/routers_mirror.py --out tests/fixtures

bench: $(BUILD)/moelab
	$(BUILD)/moelab bench

# libFuzzer harnesses (fuzz/fuzz_*.c) for every loader, built with Debian's clang under
# ASan + UBSan; `make fuzz` runs each for FUZZ_SECONDS from its seed corpus in fuzz/corpus.
FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -fopenmp -Isrc -Ifuzz -O1 -g -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_SRC     := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZERS      := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)

$(FUZZ_BUILD)/src/%.o: src/%.c $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_common.h $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJ) $(LDLIBS)

fuzzers: $(FUZZERS)

fuzz: fuzzers
	FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan build-fuzz
