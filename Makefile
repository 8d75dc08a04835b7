# Targets for development and CI. `make test` is the README's test command.
GOLANGCI_LINT_VERSION := v2.15.0
GOBIN := $(shell go env GOPATH)/bin

.PHONY: test race vet lint bench fuzz screenshots

# FUZZTIME bounds each fuzz target of `make fuzz`.
FUZZTIME ?= 30s

test:
	go test -race ./...

race: test

vet:
	go vet ./...

lint:
	@test -x $(GOBIN)/golangci-lint && $(GOBIN)/golangci-lint version | grep -q $(patsubst v%,%,$(GOLANGCI_LINT_VERSION)) \
		|| go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	$(GOBIN)/golangci-lint run ./...

# bench runs every benchmark with its baseline in the same run and prints
# the ratios; see BENCHMARKS.md. COUNT=n sets the runs of each.
bench:
	.ci/bench

# fuzz runs each fuzz target for FUZZTIME (`go test` runs their seed corpora,
# testdata/fuzz, every time), and the randomized fault tests for more rounds
# than `go test` does, on seeds picked at random.
fuzz:
	go test -run '^$$' -fuzz '^FuzzValidateID$$' -fuzztime $(FUZZTIME) ./store/
	go test -run '^$$' -fuzz '^FuzzDecodeState$$' -fuzztime $(FUZZTIME) ./redisstore/
	go test -run '^$$' -fuzz '^FuzzEnded$$' -fuzztime $(FUZZTIME) ./memstore/
	go test -run '^$$' -fuzz '^FuzzCorrelationHandler$$' -fuzztime $(FUZZTIME) ./httpapi/
	go test -run '^$$' -fuzz '^FuzzStatusQuery$$' -fuzztime $(FUZZTIME) ./httpapi/
	go test -race -run '^TestConvergence$$' -tracker.convergence.seed=0 -tracker.convergence.rounds=200 ./tracker/
	go test -race -run '^TestLinearizable$$' -redisstore.linear.ops=40000 -redisstore.linear.seed=0 ./redisstore/

# screenshots saves the screenshots of the dashboard that docservice's
# README shows, taken by its browser test in a headless Chromium, whose
# binary CHROMIUM names (the test fails if it cannot run it).
CHROMIUM ?= chromium
screenshots:
	TASKSTATUS_CHROMIUM=$(CHROMIUM) go test -count=1 -run '^TestDashboardBrowser$$' ./examples/docservice/ \
		-docservice.screenshots=$(CURDIR)/examples/docservice
