# Protobuf code generation (buf, local plugins, offline). Included from the main
# Makefile; can also be run alone: make -f mk/generate.mk generate
#
# Tools are pinned in tools/go.mod (kept out of the main go.mod) and run with
# `go tool -modfile=tools/go.mod ...`; the first run compiles buf (a few minutes).
# Config: buf.yaml (workspace, lint), buf.gen.yaml (plugins, outputs).

# Repository root, taken from this file's location so the targets work from any
# directory and under `include`.
GEN_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
BUF ?= go tool -modfile=tools/go.mod buf

.PHONY: generate proto-lint proto-clean check-generated

# Lint, remove old generated files (so outputs of deleted .proto files go too), generate.
generate: proto-lint proto-clean
	cd $(GEN_ROOT) && $(BUF) generate

proto-lint:
	cd $(GEN_ROOT) && $(BUF) lint

# buf's own `clean: true` would wipe proto/ (our .proto sources live there), so
# delete only the generated kinds of files.
proto-clean:
	cd $(GEN_ROOT) && find proto -type f \( -name '*.pb.go' -o -name '*.pb.gw.go' -o -name '*.swagger.json' \) -delete

# Fails when the committed generated code differs from what the .proto files give.
check-generated: generate
	@cd $(GEN_ROOT) && git add -N proto && \
	if git diff --exit-code --stat -- proto; then \
		echo "check-generated: generated code in proto/ is up to date."; \
	else \
		echo ""; \
		echo "check-generated: FAILED: generated code in proto/ is stale or missing."; \
		echo "  Run 'make generate' and commit the changes under proto/."; \
		exit 1; \
	fi
