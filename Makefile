# mailbus — build, test and generate.
#
#   make test       the test suite (what CI runs; needs PostgreSQL, NATS and
#                   Dovecot as .ci/run sets them up; missing ones skip
#                   outside CI)
#   make generate   regenerate the protobuf code in pkg/gen
#   make lint       gofmt, go vet, buf lint
#   make bench      benchmarks (long; not part of make test)
#   make fuzz       longer fuzzing than make test does
#   make build      the binaries, into ./bin
#   make validate-deployments  Dockerfiles, compose file and Helm chart,
#                   without a Docker engine or a cluster
#   make demo       try mailbus: demo mail servers, accounts and live events
#   make console    rebuild the web console's bundle (needs Node and npm)
#   make check-console  fails when the committed bundle differs from a rebuild

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

# Every module of the workspace: `go test ./...` does not cross modules.
MODULES := $(shell $(GO) list -m -f '{{.Dir}}')
PACKAGES := $(addsuffix /...,$(MODULES))
TEST_FLAGS ?= -race -count=1 -timeout 15m
FUZZ_TIME ?= 5s

.PHONY: console check-console all build demo test test-short generate check-generate lint breaking fmt tools bench bench-pop3 bench-scaleout bench-churn bench-initial-sync fuzz clean

all: lint test

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./services/store/cmd/mailbus-store ./services/imapsync/cmd/mailbus-imapsync \
		./services/pop3fetcher/cmd/mailbus-pop3fetcher ./services/webhooks/cmd/mailbus-webhooks ./services/mailbus/cmd/mailbus

# Needs only Go: the all-in-one server with demo IMAP and POP3 servers.
# It builds ./bin/mailbus, which the commands the demo prints name.
demo:
	$(GO) build -o $(BIN)/mailbus ./services/mailbus/cmd/mailbus
	./bin/mailbus demo

test:
	$(GO) test $(TEST_FLAGS) $(PACKAGES)
	$(MAKE) --no-print-directory fuzz FUZZ_TIME=$(FUZZ_TIME)

test-short:
	$(GO) test -count=1 -short $(PACKAGES)

tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc

$(BIN)/buf:
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

generate: tools
	rm -rf pkg/gen
	buf generate
	buf build -o - | $(GO) run ./pkg/cmd/mailbus-apischema > docs/api/mailbus.v1.schema.json
	buf build --exclude-source-info --path proto/mailbus/v1/events.proto -o examples/consumer-node/mailbus.binpb
	@# The web console embeds code generated from the protos (decision 0032).
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory console; \
	else echo "generate: no npm, so the web console was not rebuilt: make check-console in CI will ask for it (apt-get install npm; make console)"; fi

# Fails when the committed generated code differs from what generate makes.
check-generate: generate
	@git diff --exit-code --stat -- pkg/gen || { echo "pkg/gen is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- pkg/gen)" || { echo "pkg/gen has untracked files: run make generate and commit"; exit 1; }
	@git diff --exit-code --stat -- docs/api || { echo "docs/api is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- docs/api)" || { echo "docs/api has uncommitted files: run make generate and commit"; exit 1; }
	@git diff --exit-code --stat -- examples/consumer-node/mailbus.binpb || { echo "examples/consumer-node/mailbus.binpb is stale: run make generate and commit"; exit 1; }

lint: tools
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PACKAGES)
	buf lint

# The API must stay wire- and JSON-compatible (events kept in JetStream must
# stay readable): compare with the previous commit (BREAKING_AGAINST to
# compare with another git ref).
BREAKING_AGAINST ?= HEAD~1
breaking: tools
	@if git rev-parse -q --verify '$(BREAKING_AGAINST)^{commit}' >/dev/null; then \
	  buf breaking --against '.git#ref=$(BREAKING_AGAINST)'; \
	else echo "breaking: no $(BREAKING_AGAINST) to compare with"; fi

fmt:
	gofmt -w $(MODULES)

# Each fuzz target for FUZZ_TIME (a few seconds in make test).
FUZZ_TARGETS := $(shell grep -rl --include='*_test.go' '^func Fuzz' pkg services 2>/dev/null | xargs -r dirname | sort -u)
# A fuzz run that ends only with 'context deadline exceeded' and no failing
# input is Go 1.26's coordinator race at the -fuzztime boundary
# (golang/go#75804, fixed in Go 1.27): it is run once more; any other
# failure, or a second one, fails.
fuzz:
	@set -e; log=$$(mktemp); trap 'rm -f $$log' EXIT; for dir in $(FUZZ_TARGETS); do \
	  for target in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz $$dir $$target ($(FUZZ_TIME))"; \
	    for attempt in 1 2; do \
	      if (cd $$dir && $(GO) test -run='^$$' -fuzz="^$$target\$$" -fuzztime=$(FUZZ_TIME) .) >$$log 2>&1; then cat $$log; break; fi; \
	      cat $$log; \
	      if [ $$attempt = 1 ] && grep -q 'context deadline exceeded' $$log && ! grep -q -e 'Failing input written' -e 'panic:' $$log; then \
	        echo "fuzz $$target: the fuzzing engine's shutdown race at the -fuzztime boundary (golang/go#75804, no failing input): running it once more"; \
	      else exit 1; fi; \
	    done; \
	  done; \
	done

BENCH_TIME ?= 1x
bench: bench-pop3 bench-scaleout bench-churn bench-initial-sync
	$(GO) test -run='^$$' -bench=. -benchtime=$(BENCH_TIME) -timeout 60m $(PACKAGES)

# Full keep-mode POP3 fetch of a 10,000-message / 850 MB maildrop from
# Dovecot by mailbus, mpop and getmail6 (see tests/pop3bench).
POP3BENCH_FLAGS ?=
bench-pop3:
	$(GO) run ./tests/pop3bench $(POP3BENCH_FLAGS)

# Initial sync side by side on one corpus (issue 11): mailbus serve, mbsync
# and mpop (apt-get installed if missing), a bare client; tmpfs and disk.
# A Markdown table; MAILBUS_BENCH_MESSAGES=2000 for a quick run (see
# tests/syncbench).
bench-initial-sync:
	MAILBUS_BENCH_INITIAL_SYNC=1 $(GO) test -count=1 -run='^$$' -bench='^BenchmarkSideBySide$$' -benchtime=1x -timeout 120m ./tests/syncbench/

# tests/scaleout with 200 IMAP and 200 POP3 accounts (make test runs 50).
SCALEOUT_ACCOUNTS ?= 200
bench-scaleout:
	MAILBUS_SCALEOUT_ACCOUNTS=$(SCALEOUT_ACCOUNTS) $(GO) test -count=1 -v -run '^TestScaleOut$$' -timeout 30m ./tests/scaleout/

# The randomized two-way churn test (TestDovecotChurn) for CHURN_DURATION
# instead of make test's 20 s; MAILBUS_CHURN_SEED=<n> replays a run.
CHURN_DURATION ?= 5m
bench-churn:
	MAILBUS_CHURN_DURATION=$(CHURN_DURATION) $(GO) test -count=1 -v -run '^TestDovecotChurn$$' -timeout 30m ./services/imapsync/imapsync/

clean:
	rm -rf $(BIN)

# The web console (decision 0032): web/console's TypeScript, built with
# the locked npm packages into services/store/internal/console/dist, which
# is committed and embedded in the store, so building mailbus needs only
# Go. check-console rebuilds it (and its code generated from the protos)
# and fails when the result differs from what is committed.
CONSOLE_OUT := services/store/internal/console/dist web/console/src/gen
console:
	cd web/console && npm ci --no-audit --no-fund && npm run build
check-console: console
	@git diff --exit-code --stat -- $(CONSOLE_OUT) || { echo "the web console's bundle is stale: run make console and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- $(CONSOLE_OUT))" || { echo "the web console's bundle has uncommitted files: run make console and commit"; git status --porcelain -- $(CONSOLE_OUT); exit 1; }

# Deployments, checked without a Docker engine or a cluster: every
# Dockerfile's COPY sources and build packages exist and its build stage
# builds static binaries from just what it copies; the compose file is
# valid (docker-compose, the Debian package); the Helm chart lints and
# renders (helm, built from the Go module proxy and cached in ./bin).
HELM_VERSION := v3.19.5
HELM_CHART := deployments/helm/mailbus
.PHONY: validate-deployments
$(BIN)/helm:
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
validate-deployments: $(BIN)/helm
	deployments/check-dockerfiles.sh --build
	@command -v docker-compose >/dev/null || { echo "validate-deployments: needs docker-compose (apt-get install docker-compose)"; exit 1; }
	cd deployments/compose && POSTGRES_PASSWORD=validate docker-compose -f docker-compose.yml config -q
	helm lint --strict $(HELM_CHART)
	helm template mailbus $(HELM_CHART) >/dev/null
	helm template mailbus $(HELM_CHART) --namespace mail \
	  --set postgres.create=true,postgres.url=postgres://u:p@db/mailbus \
	  --set secretKey.create=true,secretKey.value=dmFsaWRhdGU= \
	  --set apiTokens.create=true,apiTokens.admin=mbt_0000000000000000_admin,apiTokens.service=mbt_0000000000000001_service \
	  --set image.registry=registry.example,image.tag=v0.0.1,pop3fetcher.enabled=false,prometheus.scrapeConfig.create=false >/dev/null
	helm template mailbus $(HELM_CHART) --set tls.enabled=true,tls.mutual=true >/dev/null
