# crewcore: `make demo` and `make test` are the two commands a newcomer runs.
SHELL := /bin/bash
GO ?= go
PYTHON ?= python3
export GOEXPERIMENT := simd
export CGO_ENABLED := 1
# SQLite FTS5 (BM25 keyword search of the knowledge store, knowledge/) in mattn/go-sqlite3.
export GOFLAGS := -tags=sqlite_fts5

VENV := .venv
PY := $(VENV)/bin/python
LIBDIR := python/crewcore/_lib
LIB := $(LIBDIR)/libcrewcore.so
CLI := $(LIBDIR)/crewcore
GO_SOURCES := $(shell find . -name '*.go' -not -path './.venv/*' -not -name '*_test.go') go.mod go.sum cabi/exports.map
# The version is written once, in pyproject.toml; every Go build stamps it (setup.py does the same).
VERSION := $(shell $(PYTHON) -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
VERSION_X := -X github.com/crewcore/crewcore/internal/version.Version=$(VERSION)
LDFLAGS := -s -w $(VERSION_X) -extldflags '-Wl,--version-script=$(CURDIR)/cabi/exports.map'

.PHONY: build lib cli venv test test-go test-py demo bench fuzz clean pg-up pg-down wheels sdist test-aarch64

## build: the shared library, the crewcore command and .venv (nothing run)
build: lib cli venv

lib: $(LIB)
cli: $(CLI)

$(LIB): $(GO_SOURCES) pyproject.toml
	@mkdir -p $(LIBDIR)
	$(GO) build -trimpath -buildmode=c-shared -ldflags "$(LDFLAGS)" -o $@ ./cabi
	@rm -f $(LIBDIR)/libcrewcore.h

$(CLI): $(GO_SOURCES) pyproject.toml
	@mkdir -p $(LIBDIR) bin
	$(GO) build -trimpath -buildmode=pie -ldflags "$(VERSION_X)" -o $@ ./cmd/crewcore
	@ln -sf ../$(CLI) bin/crewcore

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements-dev.txt constraints.txt pyproject.toml setup.py $(LIB) $(CLI)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

## test: the wheels, then Go tests (core packages with -race) and pytest against native, fallback
## and LanceDB, with a private PostgreSQL test server that is stopped afterwards
## (scripts/with_test_pg.py; stages that need the server go in its command line)
test: build wheels
	$(PY) scripts/with_test_pg.py $(MAKE) --no-print-directory test-go test-py

test-go:
	$(GO) vet ./...
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /cmd/)
	$(GO) test -count=1 ./cmd/...
	$(GO) test -count=1 -tags purego ./internal/vec/ ./memory/

test-py: build
	$(PY) -m pytest -q --durations=25 tests

## demo: a real CrewAI crew with memory, twice, against the local mock LLM server
demo: build
	$(PY) examples/demo.py

## bench: side-by-side benchmarks (results go to docs/benchmarks.md)
bench: build
	$(PY) bench/bench_memory.py --write docs/benchmarks.md
	$(PY) bench/bench_storage.py --write docs/benchmarks.md
	$(PY) bench/bench_scheduler.py --write docs/benchmarks.md
	$(PY) bench/bench_tools.py --write docs/benchmarks.md
	$(PY) bench/bench_crew.py --write docs/benchmarks.md
	$(PY) bench/bench_postgres.py --write docs/benchmarks.md
	$(PY) bench/bench_knowledge.py --write docs/benchmarks.md --json bench/results/knowledge.json
	$(PY) bench/bench_queue.py --write docs/benchmarks.md --json bench/results/queue.json

## pg-up: start the PostgreSQL + pgvector test server (pgserver wheel; idempotent); prints its DSN last
pg-up: venv
	@$(PY) tools/pgctl.py up

## pg-down: stop that server (its data stays in .pgdata/)
pg-down:
	@$(PY) tools/pgctl.py down

## stress: long soaks (one line each; figures in docs/reliability.md)
.PHONY: stress
stress: build
	$(PY) tests/soak_wal.py --seconds 600 --readers 4 --engine native
	$(PY) tests/stress_runq.py --runs 1000 --kill-runs 500 --kills 10
	$(PY) tests/segment_crash_trials.py --trials 300 --engine native && $(PY) tests/segment_crash_trials.py --trials 100 --engine python --reader native

## wheels: the sdist and the manylinux_2_28 x86_64 + aarch64 wheels in dist/ (zig cc against
## glibc 2.28 for cgo; each wheel checked with auditwheel; scripts/build_wheels.py)
WHEELS := dist/crewcore-$(VERSION).tar.gz dist/crewcore-$(VERSION)-py3-none-manylinux_2_28_x86_64.whl \
	dist/crewcore-$(VERSION)-py3-none-manylinux_2_28_aarch64.whl
WHEEL_INPUTS := $(GO_SOURCES) $(shell find python/crewcore -name '*.py' -o -name py.typed) \
	pyproject.toml setup.py MANIFEST.in README.md LICENSE CHANGELOG.md scripts/build_wheels.py
wheels: $(WHEELS)
$(WHEELS) &: $(WHEEL_INPUTS) | venv
	$(PY) scripts/build_wheels.py --out dist

## sdist: only the source distribution (dist/crewcore-$(VERSION).tar.gz)
sdist: venv
	$(PY) scripts/build_wheels.py --out dist --sdist-only

## test-aarch64: the aarch64 wheel in a clean aarch64 venv (Debian arm64 CPython under
## qemu-user), running the memory conformance suite (scripts/test_aarch64.py; needs root + apt)
test-aarch64: wheels
	$(PY) scripts/test_aarch64.py

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDispatch -fuzztime 30s ./cabi/

clean:
	rm -rf $(LIBDIR) bin build *.egg-info python/*.egg-info
