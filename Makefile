# etcd-appliance — `make help` lists the targets.
GO      ?= go
BIN     := bin/etcd-appliance
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Static (no cgo: runs on any Linux, nothing to install), without build paths or symbol tables; Go's own
# function table stays, for stack traces.
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"
# What `make release` builds: the CloudFormation template takes either (its ImageId and InstanceType decide).
RELEASE_PLATFORMS := linux/amd64 linux/arm64
export ETCD_APPLIANCE_BIN := $(abspath $(BIN))

.PHONY: help build release demo demo-aws test test-unit test-e2e netlab-deps promtool-deps chaos bench lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/etcd-appliance (the appliance with etcd bundled): static, stripped
	$(GOBUILD) -o $(BIN) ./cmd/etcd-appliance

release: ## dist/etcd-appliance-linux-{amd64,arm64} and dist/SHA256SUMS (a line's first field is the template's ApplianceSha256)
	rm -rf dist
	mkdir -p dist
	set -e; for p in $(RELEASE_PLATFORMS); do \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GOBUILD) -o dist/etcd-appliance-$${p%/*}-$${p#*/} ./cmd/etcd-appliance; \
	done
	cd dist && sha256sum etcd-appliance-* > SHA256SUMS
	cat dist/SHA256SUMS

demo: build ## a local group of 3 on loopback: bootstrap, replace an instance, verify (no AWS)
	./$(BIN) demo

demo-aws: build ## the demo on an Auto Scaling group in moto (needs moto_server): Route53 records, replacement through the ASG
	./$(BIN) demo --aws

test: lint build test-unit test-e2e ## everything CI runs: lint, unit tests (race), end-to-end tests

test-unit: ## unit tests with the race detector
	$(GO) test -race -short -count=1 -timeout 10m ./internal/... ./cmd/...

test-e2e: build ## every test without -short but the chaos catalogue's (TestChaos*, make chaos): end-to-end (real appliance processes, real etcd on 127.x), real-etcd and harness tests
	$(GO) test -count=1 -timeout 19m -skip '^TestChaos' ./...

netlab-deps: ## install ip and nft (apt-get, as root) for the tests that run instances in network namespaces
	bash scripts/netlab-deps.sh

promtool-deps: ## provide promtool (from Debian's prometheus, into bin/tools) for make lint's check of deploy/monitoring
	bash scripts/promtool-deps.sh

chaos: build netlab-deps ## the robustness catalogue: every fault x seeds (ROBUSTNESS_SEEDS=1,2,3), histories checked linearizable; writes docs/robustness-runs.md
	bash scripts/chaos.sh

bench: build ## measure SPEC §7 figures and write docs/BENCHMARKS.md
	$(GO) run ./cmd/bench -binary $(ETCD_APPLIANCE_BIN) -out docs/BENCHMARKS.md

lint: ## gofmt, go vet, cfn-lint on the CloudFormation template, promtool on the monitoring pack
	@out="$$(gofmt -l cmd internal e2e 2>/dev/null)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@command -v cfn-lint >/dev/null || { echo "lint: cfn-lint is missing: install it (pip install cfn-lint) to check deploy/cloudformation/*.yaml" >&2; exit 1; }
	cfn-lint deploy/cloudformation/*.yaml
	@promtool="$$(bash scripts/promtool-deps.sh)" || { echo "lint: no promtool to check deploy/monitoring (make promtool-deps)" >&2; exit 1; }; \
		set -x; "$$promtool" check rules deploy/monitoring/prometheus/*.rules.yml && \
		"$$promtool" test rules deploy/monitoring/prometheus/*.rules.test.yml
	python3 -m json.tool deploy/monitoring/grafana/etcd-appliance.json >/dev/null

clean: ## remove build outputs
	rm -rf bin dist
