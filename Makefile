# shiplog: `make run` starts the server, `make test` runs every test.
GO      ?= go
BIN     := bin
DATA    ?= ./shiplog-data
HTTP    ?= 127.0.0.1:7070
GRPC    ?= 127.0.0.1:7071
TESTFLAGS ?=

.PHONY: all build run test test-short lint fmt tidy clean deps fuzz

all: build

build:
	$(GO) build -o $(BIN)/shiplog ./cmd/shiplog

# Build and start the server on the embedded store in $(DATA).
run: build
	./$(BIN)/shiplog server --data $(DATA) --http $(HTTP) --grpc $(GRPC)

# System packages some tests drive for real (installed when missing; needs root
# or sudo). Nothing here is needed to build or run shiplog.
deps:
	@./scripts/deps.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: deps lint
	$(GO) test -count=1 -timeout 15m $(TESTFLAGS) ./...

test-short: lint
	$(GO) test -short -count=1 ./...

# Every fuzz target for FUZZTIME (default 5s each; CI runs a count: FUZZTIME=8000x).
fuzz:
	FUZZTIME=$(or $(FUZZTIME),5s) ./scripts/fuzz.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

tidy:
	$(GO) mod tidy

clean:
	rm -rf $(BIN)

include mk/generate.mk
-include mk/bench.mk
