# chaosgate — build, demo, test, bench, lint.
# `make demo` and `make test` work on a fresh machine with only Go installed:
# everything else is installed by scripts/ (apt packages when root, cached
# source builds of servers that have no package).

GO       ?= go
BIN      := bin/chaosgate
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Test timeout for the whole suite; CI gives a run 90 minutes on 2 cores.
TEST_TIMEOUT ?= 60m

.PHONY: all build image demo test test-deps bench lint fuzz screenshots clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/chaosgate
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/chaosgate-bench ./cmd/chaosgate-bench

## image: chaosgate's OCI image without a container daemon: a static
## (CGO_ENABLED=0) Linux binary in one layer, user 65532, OCI labels; written
## as an OCI image layout (bin/image/oci) and a `docker load` /
## `ctr images import` tarball (bin/chaosgate-image.tar) tagged
## $(IMAGE_REPO):$(VERSION). Reproducible: every time stamp is
## SOURCE_DATE_EPOCH (default: the commit time). IMAGE_ARCH picks another
## GOARCH; CA_CERTS a CA bundle to install (default the host's, if any).
IMAGE_REPO        ?= ghcr.io/chaosgate/chaosgate
IMAGE_ARCH        ?= $(shell $(GO) env GOARCH)
IMAGE_LICENSES    ?= NOASSERTION
REVISION          ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
CA_CERTS          ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/image/chaosgate ./cmd/chaosgate
	$(GO) run ./internal/ociimage/cmd/mkimage -binary bin/image/chaosgate \
		-version '$(VERSION)' -revision '$(REVISION)' -licenses '$(IMAGE_LICENSES)' \
		-created '$(SOURCE_DATE_EPOCH)' -tag '$(IMAGE_REPO):$(VERSION)' $(if $(CA_CERTS),-ca-certs '$(CA_CERTS)') \
		-oci bin/image/oci -tarball bin/chaosgate-image.tar

## demo: the main job on the embedded default (local clusters, faults, judge, evidence).
demo: build
	./$(BIN) demo

## test-deps: install or build every server the tests start (idempotent, cached).
test-deps:
	bash scripts/install-test-deps.sh

# cmd/chaosgate's tests run the game day for real — aggregator clusters,
# Prometheus, Chromium, and the real-pod tests' nine pods on kubelets with
# the control plane — and measure what they run (latency, GC pauses,
# overload): they need the whole of a 2-core machine. `go test ./...` runs
# two packages at once, so the package runs on its own after the rest.
MAIN_PKG := github.com/chaosgate/chaosgate/cmd/chaosgate

## test: install what the tests need, then run every test with the race detector.
test: test-deps build
	CHAOSGATE_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -vx '$(MAIN_PKG)')
	CHAOSGATE_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(MAIN_PKG)
	cd deploy/fabric/chaincode && $(GO) test -race -count=1 ./...

## bench: Go micro-benchmarks (no tests).
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: every fuzz target for FUZZTIME each (FUZZ selects targets by a
## regexp over "package FuzzName"), then a table of executions per target.
## FUZZFLAGS goes to go test (e.g. FUZZFLAGS=-parallel=1: one fuzz worker;
## -fuzzminimizetime=10x keeps short runs from spending their time minimizing
## new inputs, which go test does not count as executions).
FUZZTIME ?= 10s
FUZZ ?= .
FUZZFLAGS ?=
fuzz:
	FUZZFLAGS='$(FUZZFLAGS)' bash scripts/fuzz-all.sh $(FUZZTIME) '$(FUZZ)'


## screenshots: the dashboard, a run page and a ledger entry page after a
## command's quick demo and a served run, in real Chromium, saved as PNGs in
## docs/screenshots (the browser test of cmd/chaosgate takes them).
screenshots: test-deps build
	rm -rf docs/screenshots
	CHAOSGATE_BIN=$(CURDIR)/$(BIN) CHAOSGATE_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run '^TestDashboardShowsCommandAndServedRuns$$' ./cmd/chaosgate

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin .chaosgate
