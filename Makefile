# rehost — see README.md. `make demo` and `make test` work on a fresh Debian
# machine: they install what they need first (scripts/deps.sh).
GO       ?= go
TOOLS    := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)

# One build configuration for everything — lint, tests, the binaries and the
# appliance's reproducible build (which needs -trimpath and no cgo): they all
# share the Go build cache, instead of the appliance recompiling every
# package on a cold machine (4.4 minutes measured).
export CGO_ENABLED := 0
export GOFLAGS := $(strip $(GOFLAGS) -trimpath)

# Tests and fuzz seeds; fuzzing itself is `make fuzz`.
TEST_FLAGS ?= -count=1 -timeout 40m
# In CI the demo exits once verified; interactively it keeps serving until Ctrl-C.
DEMO_FLAGS ?= $(if $(CI),--exit,)

.PHONY: all deps generate build test lint demo bench fuzz appliance appliance-test

all: build

deps:
	@scripts/deps.sh

# The console's templ components (connector/web/*.templ) compiled to Go. The
# generated *_templ.go files are not committed (.gitignore): every target
# that compiles Go runs this first, so on a fresh clone `go build ./...`
# needs `make generate` (or any target) once. The generator is pinned by
# go.mod's tool directive; its output is deterministic, so the appliance
# stays byte-reproducible.
generate:
	cd connector/web && $(GO) tool templ generate -log-level warn

# bin/rehost is the product (what the appliance runs); bin/rehost-lab the
# demo and the test peers, never shipped. The sizes printed are as built and
# stripped as the appliance ships them; the product's are bounded (40 and
# 35 MB) by TestProductBinaryIsSmall.
build: generate
	@echo "build: bin/rehost (the connector) and bin/rehost-lab (the demo and its test peers)"
	$(GO) build -o bin/rehost ./connector/cmd/rehost
	$(GO) build -o bin/rehost-lab ./connector/cmd/rehost-lab
	@scripts/sizes bin/rehost ./connector/cmd/rehost bin/rehost-lab ./connector/cmd/rehost-lab

# Every test: unit, conformance, qemu-img compatibility, end-to-end, and
# the appliance built and booted (BIOS; make appliance-test boots the rest).
test: deps lint appliance
	REHOST_APPLIANCE_OUT=$(CURDIR)/appliance/out $(GO) test $(TEST_FLAGS) ./...

lint: generate
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows $(GO) build ./...

# The main job on the embedded default: simulated vCenter -> S3 (versitygw)
# -> VM Import emulator -> AMI, with content verified.
demo: deps build
	bin/rehost-lab demo $(DEMO_FLAGS)

bench: deps generate
	scripts/bench

fuzz: generate
	scripts/fuzz

# The appliance (docs/appliance.md): OVA, VHD and VHDX in appliance/out/,
# byte-identical for the same commit. The version and every time stamp come
# from git.
APPLIANCE_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
APPLIANCE_EPOCH   ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
appliance: generate
	appliance/tools.sh
	SOURCE_DATE_EPOCH=$(APPLIANCE_EPOCH) $(GO) run ./appliance/cmd/build --version $(APPLIANCE_VERSION)

# Boots the built appliance under qemu (TCG): BIOS, UEFI, the VHDX, a reboot
# and an upgrade; imports the OVA into the vCenter simulator.
appliance-test: deps appliance
	REHOST_APPLIANCE_OUT=$(CURDIR)/appliance/out REHOST_APPLIANCE_FULL=1 $(GO) test -count=1 -timeout 30m -v ./appliance/imagetest/
