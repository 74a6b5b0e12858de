# Entry points: `make run`, `make test`, `make generate`, `make bench`.
# `run` and `test` install the system and Python packages they need when missing.

SWIFT ?= swift
PYTHON ?= python3
PORT ?= 50051

APT_PACKAGES := libnghttp2-dev libprotobuf-c-dev libsqlite3-dev pkg-config \
                protobuf-c-compiler protobuf-compiler libprotobuf-dev \
                nghttp2-client nghttp2-server valgrind tmux bc zlib1g-dev \
                libssl-dev openssl libpq-dev postgresql
PY_PACKAGES := grpcio==1.85.1 grpcio-tools==1.85.1 grpcio-reflection==1.85.1 protobuf pytest h2

.PHONY: deps pydeps build build-release run run-interop test fuzz load lint format generate check-generated bench bench-pg bench-fleet clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

pydeps:
	@$(PYTHON) -c "import grpc, grpc_tools, grpc_reflection, pytest, h2" 2>/dev/null || $(PYTHON) -m pip install -q $(PY_PACKAGES)

build: deps
	$(SWIFT) build

build-release: deps
	$(SWIFT) build -c release

DATA_DIR ?= ./labgallery-data

# Starts the gallery server on 127.0.0.1:$(PORT) with its data in $(DATA_DIR).
run: build-release
	.build/release/labgallery-server --port $(PORT) --data-dir $(DATA_DIR)

# Starts the gRPC interop server on $(PORT).
run-interop: build-release
	.build/release/interop-server --port $(PORT)

# The layers are enforced on every test build: a target may import only what it declares,
# and a warning is an error.
STRICT := --explicit-target-dependency-import-check error -Xswiftc -warnings-as-errors

# Every test: the formatter's lint, the C shim (plain, valgrind, failmalloc, ASan+UBSan,
# against grpcio), the fuzz targets for 20 s each (their seeds hold every past crash), Swift
# unit and end-to-end tests, interop both ways against Python grpcio, raw HTTP/2 bad-input
# tests, the generator's golden tests. The Swift and Python tests share one throwaway
# PostgreSQL cluster (Tools/pg-cluster.sh, superuser URL in LABGALLERY_TEST_POSTGRES_URL; each
# test makes its own database), stopped at the end even when a test fails.
test: deps pydeps
	Tools/lint.sh
	Tests/CH2ShimCTests/run_tests.sh
	Tests/Fuzz/run.sh --seconds 20
	$(SWIFT) build --build-tests $(STRICT)
	@pgdir=$$(mktemp -d /tmp/labgallery-pg.XXXXXX) || exit 1; \
	trap 'Tools/pg-cluster.sh stop "'"$$pgdir"'"; rm -rf "'"$$pgdir"'"' EXIT; \
	url=$$(Tools/pg-cluster.sh start "$$pgdir") || exit 1; \
	export LABGALLERY_TEST_POSTGRES_URL="$$url"; \
	echo "PostgreSQL for the tests: $$url"; \
	set -ex; \
	$(SWIFT) test --skip-build --skip ExecutionTests; \
	$(SWIFT) test --skip-build --filter ExecutionTests; \
	$(SWIFT) build -c release --product interop-server $(STRICT); \
	$(SWIFT) build -c release --product interop-client $(STRICT); \
	$(PYTHON) -m pytest -q Tests/Interop Tests/Wire Tests/GalleryPython Tests/Generator Tests/Fleet

# The libFuzzer targets (Tests/Fuzz: the shim's server session, protobuf-c and the Swift
# decoders), FUZZ_SECONDS each, at low priority; prints executions, coverage and crashes per
# target and fails on a crash.
FUZZ_SECONDS ?= 600
fuzz: deps pydeps
	nice -n 10 Tests/Fuzz/run.sh --seconds $(FUZZ_SECONDS)

# The bounded load test (Benchmarks/load.py, DURATION s, default 20): 1,000 connections x 10
# unary streams (h2load) while 100 server streams run and 50 hostile connections keep going;
# prints errors, latency percentiles and server RSS; fails on any error. Not part of `test`.
load: deps pydeps
	$(PYTHON) Benchmarks/load.py

# `swift format` (the toolchain's formatter, configured by .swift-format): lint fails on any
# difference; format rewrites the files in place.
lint:
	Tools/lint.sh
format:
	Tools/lint.sh --fix

# Regenerates protobuf-c C code and the Swift layer from Protos/.
generate: deps pydeps
	Tools/generate.sh

# Fails when the committed generated code differs from what Protos/ produce.
check-generated: deps pydeps
	Tools/check-generated.sh

# Every benchmark of issue 13 in one run (Benchmarks/run.sh, which also runs replication.sh and
# idle_memory.py), ending with the "Issue 13 targets" table; BENCH_OUT=FILE writes the tables there.
bench: deps pydeps
	Benchmarks/run.sh

# The PostgreSQL driver comparison (issue 12): libpq vs postgres-nio on a throwaway PostgreSQL 15
# cluster (Benchmarks/pg_drivers.sh), then each driver's clean release build and binary size
# (Benchmarks/pg_driver_build.sh, several minutes). Needs libpq-dev and postgresql. Not part of
# `test` or `bench`.
bench-pg: deps
	Benchmarks/pg_drivers.sh
	Benchmarks/pg_driver_build.sh

# Issue 12's fleet figures (Benchmarks/fleet.py): metadata calls on SQLite, PostgreSQL and three
# instances on one PostgreSQL, then kill -9 failover at leases of 3 and 10 s, on a throwaway
# PostgreSQL 15 cluster under /tmp. Builds the release server first. Not part of `test` or `bench`.
bench-fleet: deps pydeps
	swift build -c release --product labgallery-server
	$(PYTHON) Benchmarks/fleet.py

clean:
	rm -rf .build
