# crabbox make targets. README's two set-up commands: `make demo`, `make test`.
SHELL := /bin/bash
GO    ?= go
LAB   := scripts/coder-lab/lab
BIN   := bin/crabbox
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/crabbox-dev/crabbox/internal/cli.Version=$(VERSION)

.PHONY: build unit test e2e lab-setup demo fuzz bench clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/crabbox

# Fast loop: vet + unit tests (no lab).
unit:
	$(GO) vet ./...
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) test -race -count=1 ./...

# Runtime packages (rsync, postgresql, ...) and the pinned coder/terraform
# binaries of the lab, built from the Go module proxy (cached; ~8.5 min cold).
lab-setup:
	$(LAB) setup

# Lab end-to-end tests against a real Coder server (brought up and down by
# the tests themselves). Needs `make lab-setup` once.
e2e:
	$(GO) test -tags e2e -count=1 -timeout 45m -v ./e2e/ 2>&1 | tee e2e.log | grep -aE '^(=== RUN|--- |PASS|FAIL|ok|e2e:)|panic' ; exit $${PIPESTATUS[0]}

# Everything: install/build what the tests need, then vet, gofmt, unit
# tests (some use a private sshd), then the lab e2e tests.
test: lab-setup
	$(MAKE) unit
	$(MAKE) e2e

# Build crabbox, start the lab and run the most complete crabbox flow on it.
demo: build lab-setup
	scripts/demo.sh

# Interleaved A/B pairs against the raw floor on a private lab; prints
# medians, min-max and ratios (numbers in docs/performance.md). E.g.
# BENCH_FLAGS='-only warm,sync -pairs 3 -lab-state /tmp/devlab' for a quick
# run on a lab that is already up.
BENCH_FLAGS ?=
bench: lab-setup
	$(GO) run ./bench $(BENCH_FLAGS)

# Each fuzz target for FUZZTIME (default 30s); `make test` runs their seed
# corpora as ordinary tests.
fuzz:
	scripts/fuzz.sh

clean:
	rm -rf bin e2e.log
