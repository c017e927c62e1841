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
LDFLAGS := -s -w -extldflags '-Wl,--version-script=$(CURDIR)/cabi/exports.map'

.PHONY: build lib cli venv test test-go test-py demo bench fuzz clean pg-up pg-down

## build: the shared library, the crewcore command and .venv (nothing run)
build: lib cli venv

lib: $(LIB)
cli: $(CLI)

$(LIB): $(GO_SOURCES)
	@mkdir -p $(LIBDIR)
	$(GO) build -trimpath -buildmode=c-shared -ldflags "$(LDFLAGS)" -o $@ ./cabi
	@rm -f $(LIBDIR)/libcrewcore.h

$(CLI): $(GO_SOURCES)
	@mkdir -p $(LIBDIR) bin
	$(GO) build -trimpath -o $@ ./cmd/crewcore
	@ln -sf ../$(CLI) bin/crewcore

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements-dev.txt constraints.txt pyproject.toml setup.py $(LIB) $(CLI)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

## test: Go tests (core packages with -race) and pytest against native, fallback and LanceDB
test: build test-go test-py

test-go:
	$(GO) vet ./...
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /cmd/)
	$(GO) test -count=1 ./cmd/...
	$(GO) test -count=1 -tags purego ./internal/vec/ ./memory/

test-py: build
	$(PY) -m pytest -q tests

## demo: a real CrewAI crew with memory, twice, against the local mock LLM server
demo: build
	$(PY) examples/demo.py

## bench: side-by-side benchmarks (results go to docs/benchmarks.md)
bench: build
	$(PY) bench/bench_memory.py --write docs/benchmarks.md
	$(PY) bench/bench_storage.py --write docs/benchmarks.md
	$(PY) bench/bench_scheduler.py --write docs/benchmarks.md
	$(PY) bench/bench_tools.py --write docs/benchmarks.md
	$(PY) bench/bench_postgres.py --write docs/benchmarks.md

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

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDispatch -fuzztime 30s ./cabi/

clean:
	rm -rf $(LIBDIR) bin build *.egg-info python/*.egg-info
