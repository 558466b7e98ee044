# Stretch — build, generate, test.
# Every tool is pinned here and built from hack/tools/<module>/go.mod into bin/.

SHELL := /usr/bin/env bash -o pipefail
.DEFAULT_GOAL := help

KUBERNETES_VERSION     := v1.37.2
ETCD_VERSION           := v3.6.16
KWOK_VERSION           := v0.8.0
CONTROLLER_GEN_VERSION := v0.23.0
STATICCHECK_VERSION    := v0.8.2
HELM_VERSION           := v4.3.2
CONTAINERD_VERSION     := v2.4.2
CNI_PLUGINS_VERSION    := v1.10.0
METRICS_SERVER_VERSION := v0.8.0

BIN := $(CURDIR)/bin
BUILD_TOOL := hack/build-tool.sh
# kubectl and the components reject a server without a real version string.
K8S_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBERNETES_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=$(KUBERNETES_VERSION) \
	-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=37

K8S_TOOLS := kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy
# The real nodes of the tests (internal/testenv/realnode): containerd finds the
# shim on its PATH, and every node's CNI configuration names bin/cni.
CONTAINERD_TOOLS := containerd ctr containerd-shim-runc-v2
CNI_PLUGINS := main/bridge ipam/host-local main/loopback meta/portmap
# From Debian, as package:binary: runc (1.1.5 in bookworm; crun refuses this
# hybrid cgroup layout) and iptables (the nodes fence their pods in with it).
DEBIAN_PACKAGES := runc:/usr/bin/runc iptables:/usr/sbin/iptables
TOOLS := $(K8S_TOOLS) etcd kwok kwokctl metrics-server controller-gen staticcheck helm $(CONTAINERD_TOOLS) \
	$(foreach p,$(CNI_PLUGINS),cni-$(notdir $(p))) runc iptables
TOOL_FILES := $(foreach t,$(K8S_TOOLS),$(BIN)/tools/$(t)-$(KUBERNETES_VERSION)) \
	$(BIN)/tools/etcd-$(ETCD_VERSION) \
	$(BIN)/tools/kwok-$(KWOK_VERSION) $(BIN)/tools/kwokctl-$(KWOK_VERSION) \
	$(BIN)/tools/metrics-server-$(METRICS_SERVER_VERSION) \
	$(BIN)/tools/controller-gen-$(CONTROLLER_GEN_VERSION) \
	$(BIN)/tools/staticcheck-$(STATICCHECK_VERSION) \
	$(BIN)/tools/helm-$(HELM_VERSION) \
	$(foreach t,$(CONTAINERD_TOOLS),$(BIN)/tools/$(t)-$(CONTAINERD_VERSION)) \
	$(foreach p,$(CNI_PLUGINS),$(BIN)/tools/cni-$(notdir $(p))-$(CNI_PLUGINS_VERSION))

GO_TEST_FLAGS ?= -count=1
export STRETCH_BIN_DIR := $(BIN)

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-16s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Tools

.PHONY: tools
tools: $(TOOL_FILES) debian-packages ## Build every pinned tool into bin/ (skipped when present); install runc and iptables from Debian when absent.
	@$(foreach f,$(TOOL_FILES),ln -sfn tools/$(notdir $(f)) $(BIN)/$(patsubst %-$(lastword $(subst -, ,$(notdir $(f)))),%,$(notdir $(f)));)
	@mkdir -p $(BIN)/cni && $(foreach p,$(CNI_PLUGINS),ln -sfn ../tools/cni-$(notdir $(p))-$(CNI_PLUGINS_VERSION) $(BIN)/cni/$(notdir $(p));)
	@echo "tools: all present in bin/ ($(TOOLS))"

$(BIN)/tools/%-$(KUBERNETES_VERSION):
	@$(BUILD_TOOL) $* $(KUBERNETES_VERSION) kubernetes k8s.io/kubernetes/cmd/$* "$(K8S_LDFLAGS)"

$(BIN)/tools/etcd-$(ETCD_VERSION):
	@$(BUILD_TOOL) etcd $(ETCD_VERSION) etcd go.etcd.io/etcd/server/v3

$(BIN)/tools/kwok-$(KWOK_VERSION):
	@$(BUILD_TOOL) kwok $(KWOK_VERSION) kwok sigs.k8s.io/kwok/cmd/kwok

$(BIN)/tools/kwokctl-$(KWOK_VERSION):
	@$(BUILD_TOOL) kwokctl $(KWOK_VERSION) kwok sigs.k8s.io/kwok/cmd/kwokctl

# kwokctl runs it in the e2e clusters (--enable metrics-server); it reports
# its version as client-go's, so that is what the ldflags stamp.
$(BIN)/tools/metrics-server-$(METRICS_SERVER_VERSION):
	@$(BUILD_TOOL) metrics-server $(METRICS_SERVER_VERSION) metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server \
		"-X k8s.io/client-go/pkg/version.gitVersion=$(METRICS_SERVER_VERSION)"

$(BIN)/tools/controller-gen-$(CONTROLLER_GEN_VERSION):
	@$(BUILD_TOOL) controller-gen $(CONTROLLER_GEN_VERSION) controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen

$(BIN)/tools/staticcheck-$(STATICCHECK_VERSION):
	@$(BUILD_TOOL) staticcheck $(STATICCHECK_VERSION) staticcheck honnef.co/go/tools/cmd/staticcheck

# 'helm version' reports these instead of a bare v4.3.
HELM_LDFLAGS := -X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v4/internal/version.gitTreeState=clean

$(BIN)/tools/helm-$(HELM_VERSION):
	@$(BUILD_TOOL) helm $(HELM_VERSION) helm helm.sh/helm/v4/cmd/helm "$(HELM_LDFLAGS)"

CONTAINERD_LDFLAGS := -X github.com/containerd/containerd/v2/version.Version=$(CONTAINERD_VERSION) \
	-X github.com/containerd/containerd/v2/version.Revision=$(CONTAINERD_VERSION)

$(BIN)/tools/%-$(CONTAINERD_VERSION):
	@$(BUILD_TOOL) $* $(CONTAINERD_VERSION) containerd github.com/containerd/containerd/v2/cmd/$* "$(CONTAINERD_LDFLAGS)"

# Plugins are named cni-<plugin> in bin/ and tools/; 'make tools' links them
# as bin/cni/<plugin>, the names CNI looks for.
$(BIN)/tools/cni-%-$(CNI_PLUGINS_VERSION):
	@$(BUILD_TOOL) cni-$* $(CNI_PLUGINS_VERSION) cni github.com/containernetworking/plugins/plugins/$(filter %/$*,$(CNI_PLUGINS)) \
		"-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$(CNI_PLUGINS_VERSION)"

.PHONY: debian-packages
debian-packages:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do [ -x "$${p#*:}" ] || printf '%s ' "$${p%%:*}"; done); \
	if [ -n "$$missing" ]; then \
	  echo "tools: installing $$missing from Debian ..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

##@ Development

CONTROLLER_GEN := $(BIN)/tools/controller-gen-$(CONTROLLER_GEN_VERSION)

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy, CRDs and RBAC from the Go types and markers.
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd
	$(CONTROLLER_GEN) rbac:roleName=stretch-controller-manager paths=./internal/... output:rbac:artifacts:config=config/rbac
	@# The chart carries copies: Helm reads only files inside the chart.
	rm -rf charts/stretch/files/crds && mkdir -p charts/stretch/files/crds charts/stretch/files/rbac
	cp config/crd/*.yaml charts/stretch/files/crds/
	cp config/rbac/role.yaml charts/stretch/files/rbac/role.yaml

.PHONY: verify-generate
verify-generate: generate ## Fail when the committed generated files differ from 'make generate'.
	@if [ -n "$$(git status --porcelain -- config api charts)" ]; then \
	  echo "generated files differ from the committed ones: run 'make generate' and commit the result:" >&2; \
	  git status --porcelain -- config api charts >&2; git --no-pager diff -- config api charts | head -50 >&2; exit 1; fi
	@echo "generate: no drift"

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO_LDFLAGS := -X stretch.dev/stretch/internal/version.Version=$(VERSION)

.PHONY: build
build: ## Build bin/stretchctl (also as the kubectl plugin bin/kubectl-stretch) and bin/stretch-controller-manager.
	go build -ldflags "$(GO_LDFLAGS)" -o $(BIN)/stretchctl ./cmd/stretchctl
	go build -ldflags "$(GO_LDFLAGS)" -o $(BIN)/stretch-controller-manager ./cmd/stretch-controller-manager
	ln -sfn stretchctl $(BIN)/kubectl-stretch

.PHONY: lint
lint: $(BIN)/tools/staticcheck-$(STATICCHECK_VERSION) ## gofmt, go vet and staticcheck.
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change (run 'gofmt -w'):" >&2; echo "$$unformatted" >&2; exit 1; fi
	go vet ./...
	$(BIN)/tools/staticcheck-$(STATICCHECK_VERSION) ./...

##@ Images

# The image of the manager, built the way ko builds: no Dockerfile, no daemon.
# hack/tools/image (a pinned tools module, run with 'go run') compiles the
# static binary with the version 'make build' stamps, puts it over a base layer
# (CA bundle, nonroot user) and writes an OCI image layout. The revision comes
# from git HEAD (with -dirty for a changed tree) and every timestamp from
# SOURCE_DATE_EPOCH (default: the commit time of HEAD), so a commit always
# gives the same digest.
IMAGE_NAME      := stretch-controller-manager
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
IMAGE_SOURCE    ?= https://stretch.dev/stretch
IMAGE_LICENSES  ?=
IMAGE_DIR       := $(BIN)/images/$(IMAGE_NAME)
IMAGE_TOOL      := cd hack/tools/image && go run -mod=readonly .

.PHONY: image
image: ## Build the stretch-controller-manager OCI image (linux/amd64, linux/arm64) into bin/images/stretch-controller-manager/.
	$(IMAGE_TOOL) build -root $(CURDIR) -package ./cmd/$(IMAGE_NAME) -version "$(VERSION)" \
		-source "$(IMAGE_SOURCE)" -licenses "$(IMAGE_LICENSES)" -ldflags "$(GO_LDFLAGS)" \
		-platforms "$(IMAGE_PLATFORMS)" -out $(IMAGE_DIR)

.PHONY: image-push
image-push: ## Build the image and push it (every platform) as REGISTRY/stretch-controller-manager:VERSION; prints the digest.
	@if [ -z "$(REGISTRY)" ]; then \
	  echo "image-push: REGISTRY is not set: run 'make image-push REGISTRY=host[:port]/path', e.g. REGISTRY=registry.example.com/stretch" >&2; exit 1; fi
	@$(MAKE) --no-print-directory image
	$(IMAGE_TOOL) push -layout $(IMAGE_DIR) -repo "$(REGISTRY)/$(IMAGE_NAME)"

##@ Test

GO_TEST_TIMEOUT ?= 45m

.PHONY: test
test: tools verify-generate build ## Everything: unit, integration on real API servers, e2e on kwokctl clusters, fuzzing briefly.
	go test $(GO_TEST_FLAGS) -timeout $(GO_TEST_TIMEOUT) ./...
	cd hack/tools/image && go test $(GO_TEST_FLAGS) -timeout $(GO_TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory fuzz

# Each fuzz target runs for a number of executions, about 20 s of it on 2
# cores, rather than for a duration: a duration races Go 1.26's fuzzing
# coordinator at its deadline (go.dev/issue/75804, fixed in Go 1.27), and on a
# loaded machine the target fails with a bare "context deadline exceeded" and
# no input. FUZZ_TIME=30s (or 100000x) replaces every target's budget. A new
# interesting input is minimized for at most FUZZ_MINIMIZE_TIME, so that the
# budget goes to fuzzing. New failing inputs land in the package's
# testdata/fuzz and then run with every 'go test'.
FUZZ_TIME ?=
FUZZ_MINIMIZE_TIME ?= 5s
FUZZ_TARGETS = internal/placement:FuzzApply:25000 internal/placement:FuzzClusterSelector:150000 \
	internal/peering:FuzzParseCredentials:10000 \
	internal/webhook/podplacement:FuzzHandle:8000 internal/webhook/offloadingvalidation:FuzzHandle:12000

.PHONY: fuzz
fuzz: ## Run every fuzz target for its budget of executions (FUZZ_TIME overrides it; make test runs them too).
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; target=$${rest%%:*}; budget=$(FUZZ_TIME); budget=$${budget:-$${rest#*:}x}; \
		echo "== fuzzing $$target in ./$$pkg for $$budget"; \
		go test -run='^$$' -fuzz="^$$target\$$" -fuzztime=$$budget -fuzzminimizetime=$(FUZZ_MINIMIZE_TIME) ./$$pkg; \
	done

# Fault runs too long for 'make test', which runs a small variant of each.
.PHONY: chaos
chaos: tools build ## Crash runs: the home manager SIGKILLed at every kill point of two offload cycles (make test kills at a few).
	go test ./test/crash -run . -count=1 -v -timeout 60m -args -full

##@ Demo and benchmarks

.PHONY: demo
demo: tools build ## The whole story on three local clusters (home, provider-eu, provider-us), left running; kubeconfigs in .demo/.
	go run ./hack/demo up

.PHONY: demo-real
demo-real: tools build ## Needs root. The same story on three clusters of real nodes (containerd, runc, kubelet) in network namespaces, held by a keeper process; 'make demo-down' stops it.
	go run ./hack/demo up -real

.PHONY: demo-down
demo-down: ## Stop what 'make demo' or 'make demo-real' left running and free its ports.
	go run ./hack/demo down

# BENCH_FLAGS: e.g. -counts 100,1000 -reps 3
BENCH_FLAGS ?=
# BENCH_RUN: the scenarios to run, a -run pattern under TestBenchmarks (e.g. 'offload latency'); empty: all.
BENCH_RUN ?=
.PHONY: bench
bench: tools build ## Benchmarks against baselines measured in the same run; each scenario that succeeded replaces its section of BENCHMARKS.json, and BENCHMARKS.md and .png are rendered from it (BENCH_RUN='offload latency' runs one; make test runs a small smoke that writes nothing).
	go test ./test/bench -run 'TestBenchmarks/$(BENCH_RUN)' -count=1 -v -timeout 4h -args -full -out $(CURDIR)/BENCHMARKS.md $(BENCH_FLAGS)

.PHONY: bench-report
bench-report: ## Render BENCHMARKS.md and .png again from BENCHMARKS.json, measuring nothing (after a change of the report's layout).
	go test ./test/bench -run 'TestBenchmarks$$' -count=1 -v -args -render-only -out $(CURDIR)/BENCHMARKS.md
