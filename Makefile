# dmsc: `make up` starts a local mesh, `make test` runs the whole suite.
# Both set up everything they need on a fresh machine: system packages, the
# virtualenv at .venv, Python packages, and a release build of every compiled part.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMPS := .stamps
CARGO := cargo
CARGO_FLAGS := --locked --manifest-path src_rs/Cargo.toml
# System packages the build, tests and benchmarks use (Debian names).
APT_PACKAGES := build-essential pkg-config python3-dev valgrind etcd-server dnsutils
APT_PACKAGES += wrk nginx haproxy

BUILD_INPUTS := setup.py pyproject.toml $(shell find src_rs -path src_rs/target -prune -o \
	\( -name '*.rs' -o -name 'Cargo.*' -o -name '*.h' \) -print) $(wildcard pyx/*.pyx pyx/*.pxd)

.PHONY: up up-distributed test build bench lint fmt clean sysdeps rust-test py-test

up: build
	$(VENV)/bin/dmsc up

# The same local mesh on a local etcd, as a mesh spanning machines would run.
up-distributed: build
	$(VENV)/bin/dmsc up --etcd

test: build
	$(MAKE) lint rust-test py-test

rust-test: sysdeps
	$(CARGO) test $(CARGO_FLAGS) --release -p dmsc-core -p dmsc-capi -p dmsc-proxy
	# The C library with only the base feature: compiled-out features must refuse cleanly.
	$(CARGO) test $(CARGO_FLAGS) --release -p dmsc-capi --no-default-features --features service-mesh

py-test: build
	$(PY) -m pytest -q tests

bench: build
	$(CARGO) bench $(CARGO_FLAGS) -p dmsc-core -p dmsc-proxy -- --quiet --warm-up-time 1 --measurement-time 2
	$(PY) benches/run.py
	$(PY) benches/control_plane.py
	mkdir -p bench-results
	gcc -O2 -std=c11 -Wall -Wextra -Werror benches/c/discover_bench.c -o bench-results/discover_bench \
		$$($(PY) -m dmsc.capi --cflags --libs)
	bench-results/discover_bench
	$(VENV)/bin/dmsc bench proxy --out bench-results
	$(VENV)/bin/dmsc bench proxy --l4 --out bench-results

lint: build
	$(VENV)/bin/ruff check python dmsc_fast tests benches setup.py
	$(VENV)/bin/ruff format --check python dmsc_fast tests benches setup.py
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest dmsc_fast._native dmsc_fast._wire
	$(CARGO) fmt --manifest-path src_rs/Cargo.toml --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

fmt:
	$(VENV)/bin/ruff format python dmsc_fast tests benches setup.py
	$(CARGO) fmt --manifest-path src_rs/Cargo.toml --all

build: $(STAMPS)/build

$(STAMPS)/build: $(STAMPS)/pydeps $(BUILD_INPUTS)
	$(PIP) install --no-build-isolation --no-deps -e . -q
	$(PY) -c "import dmsc_fast, json; print(json.dumps(dmsc_fast.build_info()))"
	@touch $@

$(STAMPS)/pydeps: requirements/build.txt requirements/dev.txt $(STAMPS)/sysdeps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements/dev.txt
	@touch $@

sysdeps: $(STAMPS)/sysdeps

$(STAMPS)/sysdeps: Makefile
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages: $$missing"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo (Rust toolchain) is required"; exit 1; }
	@touch $@

clean:
	rm -rf $(STAMPS) build dist *.egg-info src_rs/target python/dmsc/capi/lib python/dmsc/capi/include
	find dmsc_fast pyx -name '*.so' -o -name '*.c' | xargs rm -f
