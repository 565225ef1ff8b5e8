# skewguard: Lua library with a C core. `make help` lists the targets.
#
#   make                 build build/lua5.4/skewguard/core.so (Lua 5.4, the default)
#   make LUA=luajit      build build/luajit/skewguard/core.so (LuaJIT 2.1 / Lua 5.1 API)
#   make deps            install every Debian package the project needs (the only list)
#   make test            luacheck, then the busted suite under Lua 5.4 and under LuaJIT
#   make asan            the suite with -fsanitize=address,undefined
#   make valgrind        the suite under valgrind (error exit on errors / definite leaks)
#   make bench           the benchmarks in bench/
#   make demo            the main job: the doctor against the stand-in with a skewed clock
#   make lint            luacheck, clang-tidy and cppcheck on csrc/
#   make fuzz            every libFuzzer target in fuzz/ for FUZZ_SECONDS (default 60) each

LUA ?= lua5.4
CC ?= cc
.DEFAULT_GOAL := all

# The one list of Debian packages: build, tests, benchmarks, demo.
# luajit2 is OpenResty's LuaJIT, the one Debian's nginx Lua module links; the
# plain `luajit` package conflicts with it.
DEB_PACKAGES = build-essential clang libclang-rt-14-dev pkg-config \
  lua5.4 liblua5.4-dev lua5.1 luajit2 libluajit2-5.1-dev \
  lua-cjson lua-busted lua-check lua-socket lua-sec luarocks \
  libcurl4-openssl-dev curl libssl-dev openssl libhiredis-dev \
  nginx-light libnginx-mod-http-lua chrony faketime \
  python3 python3-ntplib python3-httpx gnuplot-nox redis-server valgrind procps wrk \
  clang-tidy cppcheck

ifeq ($(LUA),luajit)
  LUA_INC ?= /usr/include/luajit-2.1
  LUA_TAG = luajit
else
  LUA_INC ?= /usr/include/$(LUA)
  LUA_TAG = $(LUA)
endif

BUILD ?= build/$(LUA_TAG)
SO = $(BUILD)/skewguard/core.so

WARN = -Wall -Wextra -Werror -pedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS ?= -O2 -g
SG_CFLAGS = -std=c99 $(WARN) -fPIC -fvisibility=hidden -I$(LUA_INC) $(CFLAGS)
LDLIBS = -lcurl -lhiredis -lssl -lcrypto
LDFLAGS_SO = -shared

SRCS = $(wildcard csrc/*.c)
OBJS = $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SRCS))
HDRS = $(wildcard csrc/*.h)

demo:
	@DEB_PACKAGES="$(DEB_PACKAGES)" sh tools/deps.sh
	$(MAKE) -s all LUA=lua5.4
	sh tools/demo.sh

.PHONY: all deps test test-lua54 test-luajit asan valgrind bench lint clean help demo fuzz fuzz-build

all: $(SO)

$(BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(SG_CFLAGS) -c $< -o $@

$(SO): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_SO) $(SG_CFLAGS) -o $@ $(OBJS) $(LDFLAGS) $(LDLIBS)

deps:
	@DEB_PACKAGES="$(DEB_PACKAGES)" sh tools/deps.sh

# luacheck, then the busted suite under Lua 5.4 and LuaJIT; ends with one
# "tests: N passed, N failed" line over both runs.
test:
	$(MAKE) all LUA=lua5.4
	$(MAKE) all LUA=luajit
	sh tools/test.sh

# The nginx specs load the plain LuaJIT build into nginx (not instrumented).
asan:
	$(MAKE) all LUA=luajit
	$(MAKE) all LUA=lua5.4 BUILD=build/asan CC=clang \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
	SG_SANITIZE=asan SKEWGUARD_BUILD=build/asan sh tools/test.sh lua5.4

valgrind:
	$(MAKE) all LUA=lua5.4
	SG_SANITIZE=valgrind sh tools/test.sh lua5.4

bench: all
	$(MAKE) all LUA=luajit
	sh bench/run.sh

# clang-tidy checks are in .clang-tidy. One file per run: clang-tidy 14 carries
# analyzer state from one file to the next (a va_list false positive otherwise).
TIDY_FLAGS = -std=c99 -I/usr/include/lua5.4 -Icsrc
lint:
	luacheck -q $(wildcard lua spec bin examples bench tools fuzz)
	@for f in $(SRCS); do echo "clang-tidy $$f"; clang-tidy -quiet $$f -- $(TIDY_FLAGS) 2>/dev/null || exit 1; done
	cppcheck --enable=warning,performance,portability --error-exitcode=1 --inline-suppr --force \
	  --std=c99 -q -I/usr/include/lua5.4 -Icsrc csrc/

# libFuzzer targets (fuzz/*.c): the core's objects built with clang and the
# fuzzer's coverage hooks, linked with liblua5.4 for the targets whose logic is
# reachable only through the Lua C API. tools/fuzz.sh runs each one on its
# committed seed corpus (fuzz/corpus/<target>/) for FUZZ_SECONDS.
FUZZ_TARGETS = $(patsubst fuzz/%.c,%,$(wildcard fuzz/*.c))
FUZZ_SECONDS ?= 60
FUZZ_BUILD = build/fuzz
FUZZ_SAN = -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OBJS = $(patsubst csrc/%.c,$(FUZZ_BUILD)/obj/%.o,$(SRCS))
FUZZ_BINS = $(patsubst %,$(FUZZ_BUILD)/bin/%,$(FUZZ_TARGETS))

$(FUZZ_BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	clang -std=c99 $(WARN) -fPIC -I/usr/include/lua5.4 $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/bin/%: fuzz/%.c fuzz/harness.h $(FUZZ_OBJS) $(HDRS)
	@mkdir -p $(dir $@)
	clang -std=c99 $(WARN) -I/usr/include/lua5.4 -DSG_ROOT='"$(CURDIR)"' $(FUZZ_SAN) -fsanitize=fuzzer \
	  -o $@ $< $(FUZZ_OBJS) -llua5.4 $(LDLIBS) -lm

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh tools/fuzz.sh $(FUZZ_TARGETS)

clean:
	rm -rf build

help:
	@sed -n '1,12p' Makefile

# Used by the rockspec (build.type = "make"); also works by hand with a PREFIX.
PREFIX ?= /usr/local
INST_LIBDIR ?= $(PREFIX)/lib/lua/5.4
INST_LUADIR ?= $(PREFIX)/share/lua/5.4
INST_BINDIR ?= $(PREFIX)/bin
install: $(SO)
	install -d $(INST_LIBDIR)/skewguard $(INST_BINDIR)
	install -m 0755 $(SO) $(INST_LIBDIR)/skewguard/core.so
	cd lua && find skewguard -name '*.lua' -exec install -D -m 0644 {} $(INST_LUADIR)/{} \;
	for f in bin/*; do [ -f "$$f" ] && install -m 0755 "$$f" $(INST_BINDIR)/ || true; done
.PHONY: install
