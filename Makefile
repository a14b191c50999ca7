# atf — see README.md. Every target works on a fresh Debian machine with Go
# 1.26 (.ci/run installs redis-server and wabt for the tests).

GO       ?= go
BUF      := $(GO) tool -modfile=tools/go.mod buf
EXAMPLES := $(patsubst examples/%/main.go,%,$(wildcard examples/*/main.go))
WASM     := $(foreach e,$(EXAMPLES),examples/$(e)/$(e).wasm)
WAT_WASM := $(patsubst %.wat,%.wasm,$(wildcard examples/*/*.wat))
C_WASM   := $(patsubst %.c,%.wasm,$(wildcard examples/*/*.c))
# Go examples whose main.go has an //atf:reactor line build as reactors.
REACTORS := $(patsubst examples/%/main.go,%,$(shell grep -lx '//atf:reactor' examples/*/main.go))
DATA     ?= .data
LISTEN   ?= 127.0.0.1:8080

.PHONY: all build run test test-short bench generate checkgenerate lint examples clean

all: build examples

build: ## build bin/atf
	$(GO) build -o bin/atf ./platform/cmd/atf

examples: $(WASM) $(WAT_WASM) $(C_WASM) ## build the example lambdas (Go: GOOS=wasip1, reactors -buildmode=c-shared; WAT: wat2wasm; C: clang, lld, wasi-libc)

$(WAT_WASM): %.wasm: %.wat
	wat2wasm $< -o $@

$(C_WASM): %.wasm: %.c sdk/guest/c/atf.h
	clang --target=wasm32-wasi -O2 -I sdk/guest/c -o $@ $<

examples/%.wasm: FORCE
	GOOS=wasip1 GOARCH=wasm $(GO) build $(if $(filter $(notdir $(patsubst %/,%,$(dir $@))),$(REACTORS)),-buildmode=c-shared) -o $@ ./$(dir $@)

FORCE:

run: build examples ## the whole platform on $(LISTEN), embedded store, examples deployed
	./bin/atf dev --listen $(LISTEN) --data $(DATA)

test: ## vet and every test; the race detector on everything but the single-threaded example lambdas
	$(GO) vet ./...
	$(GO) test -race -timeout 20m $$($(GO) list ./... | grep -v '/examples/')
	$(GO) test -timeout 10m ./examples/...
	ATF_TEST_REDIS=cluster $(GO) test -race -parallel 8 -timeout 10m ./platform/store/ # the store again, on a 3-node Redis Cluster

test-short:
	$(GO) test -short ./...

bench: ## benchmarks; figures go to BENCHMARKS.md
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

generate: ## regenerate gen/ from proto/ with local plugins
	$(BUF) generate

checkgenerate: generate ## fail when generated code is stale
	@test -z "$$(git status --porcelain -- gen)" || (git status --porcelain -- gen; echo "generated code is stale: run make generate and commit"; exit 1)

lint: ## buf lint, go vet, gofmt
	$(BUF) lint
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'))" || (gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'); echo "gofmt needed"; exit 1)

clean:
	rm -rf bin $(WASM) $(WAT_WASM) $(C_WASM)
