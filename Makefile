# pch - kernel-assisted postcopy page service.
#
#   make            build everything into build/
#   make check      unit and integration tests, and a short stress run
#   make stress     RUNS (200) randomized migrations with faults injected
#   make demo       a verified 1 GiB postcopy migration
#   make bench      benchmarks against this machine's limits (bench/README.md)
#   make fuzz       libFuzzer harnesses, FUZZ_SECONDS (60) each
#   make bench-tools  the limit probes (bench/limits/) into build/bench/
#   make qemu       qemu-system-x86_64 with qemu-glue/patches, cached outside the clone
#   make qemu-check a real guest migrated between two of them, postcopy (native, pch)
#   make V=1        show full commands
#
# The BPF tools (bpf/, build/bin/pch-faultlat ...) are built when bpftool,
# clang, libbpf and the kernel's BTF are there, and skipped with a message
# otherwise.
#
# Out-of-tree: everything goes under $(BUILD).

BUILD ?= build
PREFIX ?= /usr/local
CC ?= gcc
CFLAGS ?= -O2 -g
SANITIZE ?=

PKGS := liburing glib-2.0 json-glib-1.0
TEST_PKGS := check

ifeq ($(V),1)
Q :=
quiet = @:
else
Q := @
quiet = @printf '  %-6s %s\n'
endif

.DELETE_ON_ERROR:
.SUFFIXES:
.DEFAULT_GOAL := all

# Package flags are evaluated lazily, so a sub-make after deps.sh sees them.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS = $(shell pkg-config --cflags $(TEST_PKGS) 2>/dev/null)
CHECK_LIBS = $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wshadow -Wformat=2 -Wvla
# -ffile-prefix-map: the same objects from any clone (make qemu keys its cache
# on libpch-client.a)
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -fPIC -D_GNU_SOURCE -ffile-prefix-map=$(CURDIR)=. -Iinclude -Ilib \
	$(PKG_CFLAGS) -MMD -MP
ifneq ($(SANITIZE),)
# a sanitizer report fails the program (UBSan would only print and go on)
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_LDFLAGS := -fsanitize=$(SANITIZE)
endif
ALL_LDFLAGS = $(LDFLAGS) $(SAN_LDFLAGS)
LIBS = $(PKG_LIBS) -lpthread -lm

OBJ := $(BUILD)/obj

LIB_SRCS := $(wildcard lib/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(OBJ)/%.o)
LIBPCH := $(BUILD)/lib/libpch.a

# libpch-client carries the few libpch modules it needs (no glib, no uring).
CLIENT_SRCS := $(wildcard qemu-glue/*.c)
CLIENT_OBJS := $(CLIENT_SRCS:%.c=$(OBJ)/%.o)
CLIENT_LIB_OBJS := $(addprefix $(OBJ)/lib/,log.o net.o ring.o util.o)
CLIENT_A := $(BUILD)/lib/libpch-client.a
CLIENT_SO_VER := 0
CLIENT_SO := $(BUILD)/lib/libpch-client.so
CLIENT_PC := $(BUILD)/lib/pkgconfig/pch-client.pc

helper_SRCS := $(wildcard helper/*.c)
source_SRCS := $(wildcard source/*.c)
vm_SRCS := $(wildcard tools/pch-vm/*.c)
migrate_SRCS := $(wildcard tools/pch-migrate/*.c)
proxy_SRCS := $(wildcard tools/pch-proxy/*.c)
uffdsuite_SRCS := $(wildcard tools/pch-uffd-suite/*.c)
# a program is built once its directory has sources
PROGS := $(if $(helper_SRCS),pch-helper) $(if $(source_SRCS),pch-source) \
	$(if $(vm_SRCS),pch-vm) $(if $(migrate_SRCS),pch-migrate) \
	$(if $(proxy_SRCS),pch-proxy) $(if $(uffdsuite_SRCS),pch-uffd-suite)
BINS := $(PROGS:%=$(BUILD)/bin/%)

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tests/tools/%)

ALL_OBJS := $(LIB_OBJS) $(CLIENT_OBJS) \
	$(foreach p,helper source vm migrate proxy uffdsuite,$($(p)_SRCS:%.c=$(OBJ)/%.o)) \
	$(UNIT_SRCS:%.c=$(OBJ)/%.o) $(TOOL_SRCS:%.c=$(OBJ)/%.o)

.PHONY: qemu qemu-deps qemu-check suite-boot bpf-tools bench-tools _bench-tools all deps build-all tests check _check unit integ demo _demo clean install bench stress _stress \
	fuzz _fuzz fuzz-build

all: deps
	$(Q)$(MAKE) --no-print-directory build-all

# Install missing Debian packages (needs root on a fresh machine); a no-op
# when everything is there.
deps:
	$(Q)scripts/deps.sh

build-all: $(LIBPCH) $(if $(CLIENT_SRCS),$(CLIENT_A) $(CLIENT_SO) $(CLIENT_PC)) $(BINS) bpf-tools

tests: build-all $(UNIT_BINS) $(TOOL_BINS)

$(OBJ)/%.o: %.c
	@mkdir -p $(@D)
	$(quiet) CC $@
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(OBJ)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	$(quiet) CC $@
	$(Q)$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -c -o $@ $<

$(LIBPCH): $(LIB_OBJS)
	@mkdir -p $(@D)
	$(quiet) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^

$(CLIENT_A): $(CLIENT_OBJS) $(CLIENT_LIB_OBJS)
	@mkdir -p $(@D)
	$(quiet) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^

$(CLIENT_SO): $(CLIENT_OBJS) $(CLIENT_LIB_OBJS)
	@mkdir -p $(@D)
	$(quiet) LD $@
	$(Q)$(CC) -shared -Wl,-soname,libpch-client.so.$(CLIENT_SO_VER) \
		-Wl,--version-script=qemu-glue/libpch-client.map \
		$(ALL_LDFLAGS) -o $@ $^ -lpthread

$(CLIENT_PC): qemu-glue/pch-client.pc.in Makefile
	@mkdir -p $(@D)
	$(quiet) GEN $@
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' $< > $@

$(BUILD)/bin/pch-helper: $(helper_SRCS:%.c=$(OBJ)/%.o) $(LIBPCH)
$(BUILD)/bin/pch-source: $(source_SRCS:%.c=$(OBJ)/%.o) $(LIBPCH)
$(BUILD)/bin/pch-vm: $(vm_SRCS:%.c=$(OBJ)/%.o) $(CLIENT_A) $(LIBPCH)
$(BUILD)/bin/pch-migrate: $(migrate_SRCS:%.c=$(OBJ)/%.o) $(LIBPCH)
$(BUILD)/bin/pch-proxy: $(proxy_SRCS:%.c=$(OBJ)/%.o) $(LIBPCH)
$(BUILD)/bin/pch-uffd-suite: $(uffdsuite_SRCS:%.c=$(OBJ)/%.o) $(LIBPCH)

$(BINS):
	@mkdir -p $(@D)
	$(quiet) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/unit/%: $(OBJ)/tests/unit/%.o $(CLIENT_A) $(LIBPCH)
	@mkdir -p $(@D)
	$(quiet) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LIBS)

# pch-uffd-suite's skip decision, tested without the suite around it
$(BUILD)/tests/unit/test_uffd_suite: $(OBJ)/tools/pch-uffd-suite/needs.o

$(BUILD)/tests/tools/%: $(OBJ)/tests/tools/%.o $(LIBPCH)
	@mkdir -p $(@D)
	$(quiet) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# plays a source VMM handing its RAM to pch-source: pch_client_source_handover
$(BUILD)/tests/tools/pch-handover: $(CLIENT_A)

# --- limit probes (make bench-tools) ----------------------------------------

# bench/limits/pch-limit-NAME.c + bench/limits/limits.c -> $(BUILD)/bench/
# pch-limit-NAME: small programs measuring this machine's limits (uffd fault
# round trip, loopback TCP, UFFDIO_COPY rate, request/response round trip)
# for make bench.  Not built by make or make check.
LIMIT_SRCS := $(wildcard bench/limits/pch-limit-*.c)
LIMIT_BINS := $(LIMIT_SRCS:bench/limits/%.c=$(BUILD)/bench/%)
LIMIT_COMMON_OBJS := $(OBJ)/bench/limits/limits.o
ALL_OBJS += $(LIMIT_SRCS:%.c=$(OBJ)/%.o) $(LIMIT_COMMON_OBJS)

bench-tools: deps
	$(Q)$(MAKE) --no-print-directory _bench-tools

_bench-tools: $(LIMIT_BINS)

$(LIMIT_BINS): $(BUILD)/bench/%: $(OBJ)/bench/limits/%.o $(LIMIT_COMMON_OBJS)
	@mkdir -p $(@D)
	$(quiet) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# --- BPF tools ------------------------------------------------------------

# The libbpf-bootstrap way: bpf/foo.bpf.c (BPF side) + bpf/foo.c (loader) +
# bpf/foo.h (what both share) -> $(BUILD)/bin/pch-foo.  vmlinux.h comes from
# the running kernel's BTF, the BPF object from clang, its skeleton from
# bpftool; all under $(BUILD)/bpf.  bpf/tool.c is the loaders' common part.
BPFTOOL ?= $(firstword $(shell command -v bpftool 2>/dev/null) \
	$(wildcard /usr/sbin/bpftool /sbin/bpftool))
BPF_CLANG ?= clang
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
BPF_OUT := $(BUILD)/bpf
BPF_APPS := $(patsubst bpf/%.bpf.c,%,$(wildcard bpf/*.bpf.c))
BPF_BINS := $(BPF_APPS:%=$(BUILD)/bin/pch-%)
BPF_COMMON_OBJS := $(OBJ)/bpf/tool.o
BPF_ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BPF_MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
BPF_MISSING := $(if $(BPFTOOL),,bpftool) $(if $(wildcard $(VMLINUX_BTF)),,$(VMLINUX_BTF)) \
	$(if $(shell command -v $(BPF_CLANG) 2>/dev/null),,$(BPF_CLANG)) \
	$(if $(shell pkg-config --exists libbpf 2>/dev/null && echo y),,libbpf)
BPF_CFLAGS = -g -O2 -target bpf -D__TARGET_ARCH_$(BPF_ARCH) -I$(BPF_OUT) -Ibpf \
	$(if $(BPF_MULTIARCH),-idirafter /usr/include/$(BPF_MULTIARCH)) -Wall -Wno-unused-function \
	-MMD -MP
BPF_LIBS := -lbpf -lelf -lz

ifeq ($(strip $(BPF_MISSING)),)
bpf-tools: $(BPF_BINS)
else
bpf-tools:
	@echo "bpf: SKIP: BPF tools not built, missing: $(strip $(BPF_MISSING))"
endif

$(BPF_OUT)/vmlinux.h:
	@mkdir -p $(@D)
	$(quiet) GEN $@
	$(Q)$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $@

$(BPF_OUT)/%.bpf.o: bpf/%.bpf.c bpf/%.h $(BPF_OUT)/vmlinux.h
	@mkdir -p $(@D)
	$(quiet) BPF $@
	$(Q)$(BPF_CLANG) $(BPF_CFLAGS) -c -o $@ $<

$(BPF_OUT)/%.skel.h: $(BPF_OUT)/%.bpf.o
	$(quiet) GEN $@
	$(Q)$(BPFTOOL) gen skeleton $< > $@

.SECONDARY: $(BPF_APPS:%=$(BPF_OUT)/%.bpf.o) $(BPF_APPS:%=$(BPF_OUT)/%.skel.h)

$(BPF_APPS:%=$(OBJ)/bpf/%.o): $(OBJ)/bpf/%.o: bpf/%.c $(BPF_OUT)/%.skel.h
	@mkdir -p $(@D)
	$(quiet) CC $@
	$(Q)$(CC) $(ALL_CFLAGS) -I$(BPF_OUT) -c -o $@ $<

$(BPF_BINS): $(BUILD)/bin/pch-%: $(OBJ)/bpf/%.o $(BPF_COMMON_OBJS)
	@mkdir -p $(@D)
	$(quiet) LD $@
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(BPF_LIBS)

# --- tests ---------------------------------------------------------------

check: deps
	$(Q)$(MAKE) --no-print-directory _check

# check ends with a short stress run (randomized migrations with faults
# injected); make stress runs RUNS of them (default 200).  Each run has its
# own deadline; the whole run has one too.
RUNS ?= 200
CHECK_STRESS_RUNS ?= 20

_check: tests
	$(Q)BUILD=$(BUILD) tests/run-unit.sh
	$(Q)BUILD=$(BUILD) SANITIZE=$(SANITIZE) tests/run-integ.sh
	$(Q)BUILD=$(BUILD) timeout -k 10 900 tests/stress.sh $(CHECK_STRESS_RUNS); \
		rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 77 ]
	$(Q)if BUILD=$(BUILD) FUZZ_CC=$(FUZZ_CC) tests/fuzz/run.sh probe; then \
		$(MAKE) --no-print-directory _fuzz FUZZ_SECONDS=$(CHECK_FUZZ_SECONDS); \
	else \
		echo "fuzz: SKIP: clang's libFuzzer runtime is not installed (libclang-rt-14-dev)"; \
	fi

stress: deps
	$(Q)$(MAKE) --no-print-directory _stress

_stress: tests
	$(Q)BUILD=$(BUILD) timeout -k 10 $$(( $(RUNS) * 100 + 60 )) tests/stress.sh $(RUNS); \
		rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 77 ]

unit: deps
	$(Q)$(MAKE) --no-print-directory tests
	$(Q)BUILD=$(BUILD) tests/run-unit.sh

integ: deps
	$(Q)$(MAKE) --no-print-directory tests
	$(Q)BUILD=$(BUILD) SANITIZE=$(SANITIZE) tests/run-integ.sh $(T)

# --- fuzzing --------------------------------------------------------------

# libFuzzer harnesses (tests/fuzz/fuzz_*.c) for the wire and control
# decoders.  The lib sources are built again with clang and the sanitizers
# under $(BUILD)/fuzz, never mixed with the gcc objects.  make check runs
# each for CHECK_FUZZ_SECONDS when clang's fuzzer runtime is there.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
CHECK_FUZZ_SECONDS ?= 10
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(FUZZ_SRCS:tests/fuzz/%.c=%)
FUZZ_BINS := $(FUZZ_NAMES:%=$(BUILD)/fuzz/%)
FUZZ_OBJ := $(BUILD)/fuzz/obj
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_OBJ)/%.o)
FUZZ_LIB := $(BUILD)/fuzz/libpch-fuzz.a
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS = -std=gnu11 $(WARN) -O1 -g -D_GNU_SOURCE -Iinclude -Ilib $(PKG_CFLAGS) -MMD -MP \
	$(FUZZ_SAN)

fuzz: deps
	$(Q)$(MAKE) --no-print-directory _fuzz

fuzz-build: $(FUZZ_BINS)

_fuzz: fuzz-build
	$(Q)BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZ_NAMES)

# lib code: coverage for the fuzzer, no main
$(FUZZ_OBJ)/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	$(quiet) FUZZCC $@
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_OBJ)/tests/fuzz/%.o: tests/fuzz/%.c
	@mkdir -p $(@D)
	$(quiet) FUZZCC $@
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -c -o $@ $<

# keep the harness objects make sees as intermediate
.SECONDARY: $(FUZZ_NAMES:%=$(FUZZ_OBJ)/tests/fuzz/%.o)

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	@mkdir -p $(@D)
	$(quiet) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/fuzz/%: $(FUZZ_OBJ)/tests/fuzz/%.o $(FUZZ_LIB)
	@mkdir -p $(@D)
	$(quiet) FUZZLD $@
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(LIBS)

# --- the main job --------------------------------------------------------

DEMO_ARGS ?= --ram 1G --channels 4 --vcpus 2 --workload random

demo: deps
	$(Q)$(MAKE) --no-print-directory build-all
	$(Q)$(BUILD)/bin/pch-migrate $(DEMO_ARGS) --json $(BUILD)/demo.json
	@echo "report: $(BUILD)/demo.json"

# make bench [NETEM=rate,delay[,delay...]] [BENCH_QUICK=1] [BENCH_CPU_WEIGHT=W]: limit probes, the
# pch matrix, scale (and netem) into bench/results/<UTC time>/ (bench/README.md).
# The limit probes are built by bench-tools when the Makefile has it (make -q
# exits 2 only for a target with no rule); bench.py notes what is missing.
NETEM ?=
BENCH_QUICK ?=
BENCH_CPU_WEIGHT ?=

bench: deps
	$(Q)$(MAKE) --no-print-directory build-all
	$(Q)$(MAKE) -q --no-print-directory bench-tools >/dev/null 2>&1; \
		if [ $$? -ne 2 ]; then $(MAKE) --no-print-directory bench-tools; \
		else echo "bench: no bench-tools target: limit probes not built"; fi
	$(Q)BUILD=$(BUILD) NETEM='$(NETEM)' BENCH_QUICK='$(BENCH_QUICK)' \
		BENCH_CPU_WEIGHT='$(BENCH_CPU_WEIGHT)' python3 bench/bench.py

# pch-uffd-suite under another kernel: make suite-boot KERNEL=path/to/bzImage
# [SUITE_ARGS='--quick'] (qemu-system-x86_64 -kernel, TCG; scripts/uffd-suite-boot.sh)
SUITE_ARGS ?= --quick

suite-boot: deps
	$(Q)$(MAKE) --no-print-directory build-all
	$(Q)test -n "$(KERNEL)" || { echo "usage: make suite-boot KERNEL=bzImage [SUITE_ARGS=...]" >&2; exit 2; }
	$(Q)scripts/uffd-suite-boot.sh --json $(BUILD)/suite-boot.json $(KERNEL) $(SUITE_ARGS)

# QEMU 10 from Debian's source plus qemu-glue/patches/series, built into
# ${PCH_QEMU_CACHE:-/var/cache/pch-qemu} (a second build with nothing changed
# takes seconds); the binary's path is the last line.  qemu-check migrates the
# memload guest between two of them (QEMU_CHECK_MODES: native pch).
QEMU_CHECK_MODES ?=

qemu: deps
	$(Q)$(MAKE) --no-print-directory build-all
	$(Q)scripts/qemu-build.sh

# the Debian packages make qemu needs (root; make qemu installs them too)
qemu-deps:
	$(Q)scripts/qemu-build.sh --deps-only

qemu-check: qemu
	$(Q)scripts/qemu-check.sh $(QEMU_CHECK_MODES)

install: build-all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
		$(DESTDIR)$(PREFIX)/include/pch
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin
	install -m 0644 $(CLIENT_A) $(DESTDIR)$(PREFIX)/lib
	install -m 0755 $(CLIENT_SO) $(DESTDIR)$(PREFIX)/lib/libpch-client.so.$(CLIENT_SO_VER)
	ln -sf libpch-client.so.$(CLIENT_SO_VER) $(DESTDIR)$(PREFIX)/lib/libpch-client.so
	sed -e 's|@PREFIX@|$(PREFIX)|' qemu-glue/pch-client.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/pch-client.pc
	install -m 0644 include/pch/*.h $(DESTDIR)$(PREFIX)/include/pch

clean:
	rm -rf $(BUILD)

-include $(ALL_OBJS:.o=.d) $(FUZZ_LIB_OBJS:.o=.d) \
	$(if $(BPF_APPS),$(BPF_APPS:%=$(OBJ)/bpf/%.d) $(BPF_COMMON_OBJS:.o=.d)) \
	$(BPF_APPS:%=$(BPF_OUT)/%.bpf.d) \
	$(FUZZ_NAMES:%=$(FUZZ_OBJ)/tests/fuzz/%.d)
