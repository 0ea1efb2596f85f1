# End-to-end benchmark (cmd/shiplog-bench). Included from the main Makefile; can
# also be run alone: make -f mk/bench.mk bench [BENCH_LINES=200000]
#
# Generates the data set once (gen_logs.py, deterministic) outside the repository,
# builds bin/shiplog and bin/shiplog-bench, then runs the bench over gRPC and over
# HTTP. Each run starts its own server on free loopback ports with a fresh data dir,
# checks every query answer against the data set's .expect.json and fails on a
# mismatch. Results also go to $(BENCH_DIR)/result-{grpc,http}.json.
#
# The PromQL fleet benchmark (issue 22): 1,000 counters and 1,000 gauges, 24 h
# at 15 s (11.52 M samples), in shiplog's store and in Prometheus' TSDB (the
# library, compacted into 2 h blocks); each query of the issue's table is run
# by the same engine over both, after checking that both answer the same (a
# difference fails the bench). cpu-ms/op is the steadier figure on a shared
# machine.
#
# make bench-cluster (not part of `make bench`: it takes minutes, most of them
# waiting for the machine to be idle): three cluster nodes on this machine
# against one node, on the same data set in the same run; ingest, apply lag,
# queries through a node owning no data, takeover after SIGKILL. Results in
# $(BENCH_DIR)/result-cluster.json. BENCH_CLUSTER_FLAGS for more flags, e.g.
# "-idle-wait 0s" to measure at once whatever the load.
#
# make bench-scale (issue 16; not part of `make bench` or `make test`: it takes
# about half an hour): shiplog and VictoriaLogs side by side in one run, on
# the 2M-line/1-day and the 10M-line/5-day data sets (gen_logs.py
# --span-hours 120, ~3 GB; generated once when absent), one server at a time,
# measured as users meet them: JSON lines over HTTP (4 clients, ~1 MiB
# bodies), queries a-e (and shiplog's stats floors) on the live process right
# after ingest, each answer checked against the set's .expect.json for both
# servers; lines/s, CPU/line, peak RSS (VmHWM over ingest and queries), disk
# of the live data dir right after ingest and 60 s later, after a clean stop,
# and the idle anonymous memory (RssAnon) after a restart on the data.
# VictoriaLogs is installed with `go install` into $(BENCH_DIR)/bin when
# absent (VL_VERSION; the issue's v1.26 is not served by the Go module proxy,
# which has v1.27 on). Results in $(BENCH_DIR)/result-scale.json. Reuse files
# already generated with BENCH_SCALE_2M=... BENCH_SCALE_10M=...; VL_BIN=...
# for another VictoriaLogs; BENCH_SCALE_FLAGS for more flags (e.g.
# "-runs 3", "-keep").

BENCH_ROOT  := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
BENCH_LINES ?= 2000000
BENCH_DIR   ?= /tmp/shiplog-bench
BENCH_FILE  ?= $(BENCH_DIR)/logs-$(if $(filter 2000000,$(BENCH_LINES)),2M,$(BENCH_LINES)).jsonl
BENCH_GEN   ?= $(BENCH_ROOT)/../shared/bench/gen_logs.py
# Extra flags for shiplog-bench, e.g. BENCH_FLAGS="-conns 8 -batch 2000".
BENCH_FLAGS ?=
BENCH_CLUSTER_FLAGS ?=
# Runs of each PromQL query of the fleet benchmark (metrics/fleet_bench_test.go).
BENCH_FLEET_TIMES ?= 5x
GO          ?= go
BENCH_SCALE_2M    ?= $(BENCH_DIR)/logs-2M.jsonl
BENCH_SCALE_10M   ?= $(BENCH_DIR)/logs-10M-120h.jsonl
BENCH_SCALE_FLAGS ?=
VL_VERSION  ?= v1.52.2
VL_BIN      ?= $(BENCH_DIR)/bin/victoria-logs

.PHONY: bench bench-build bench-data bench-cluster bench-scale

bench: bench-build bench-data
	cd $(BENCH_ROOT) && bin/shiplog-bench -bin bin/shiplog -input $(BENCH_FILE) -mode grpc -json $(BENCH_DIR)/result-grpc.json $(BENCH_FLAGS)
	cd $(BENCH_ROOT) && bin/shiplog-bench -bin bin/shiplog -input $(BENCH_FILE) -mode http -json $(BENCH_DIR)/result-http.json $(BENCH_FLAGS)
	cd $(BENCH_ROOT) && bin/shiplog-agent-bench -bin bin/shiplog -input $(BENCH_FILE)
	cd $(BENCH_ROOT) && $(GO) test -run XXX -bench . -skip FleetQuery -benchtime 1x ./metrics ./e2e 2>/dev/null | grep -E "^Benchmark|ns/op" || true
	cd $(BENCH_ROOT) && $(GO) test -run XXX -bench FleetQuery -benchtime $(BENCH_FLEET_TIMES) ./metrics ./e2e

bench-cluster: bench-build bench-data
	cd $(BENCH_ROOT) && bin/shiplog-bench -bin bin/shiplog -input $(BENCH_FILE) -cluster 3 -json $(BENCH_DIR)/result-cluster.json $(BENCH_FLAGS) $(BENCH_CLUSTER_FLAGS)

bench-scale: bench-build $(BENCH_SCALE_2M) $(BENCH_SCALE_10M) $(VL_BIN)
	mkdir -p $(BENCH_DIR)
	cd $(BENCH_ROOT) && bin/shiplog-bench -live -vl $(VL_BIN) -input $(BENCH_SCALE_2M),$(BENCH_SCALE_10M) -json $(BENCH_DIR)/result-scale.json $(BENCH_SCALE_FLAGS)

# go install from outside the repository: its own module, not shiplog's. It
# writes DIR/victoria-logs; a VL_BIN of another name gets it renamed.
$(VL_BIN):
	mkdir -p $(dir $@)
	cd $(dir $@) && GOBIN=$(abspath $(dir $@)) GOFLAGS= $(GO) install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@$(VL_VERSION)
	test -x $@ || mv $(dir $@)victoria-logs $@

bench-build:
	cd $(BENCH_ROOT) && $(GO) build -o bin/shiplog ./cmd/shiplog
	cd $(BENCH_ROOT) && $(GO) build -o bin/shiplog-bench ./cmd/shiplog-bench
	cd $(BENCH_ROOT) && $(GO) build -o bin/shiplog-agent-bench ./cmd/shiplog-agent-bench

bench-data: $(BENCH_FILE)

# Written under a temporary name and renamed last, so a present file is complete.
$(BENCH_FILE):
	mkdir -p $(dir $@)
	python3 $(BENCH_GEN) -n $(BENCH_LINES) --keys shiplog -o $@.tmp --expect $@.expect.json
	mv $@.tmp $@

$(BENCH_SCALE_10M):
	mkdir -p $(dir $@)
	python3 $(BENCH_GEN) -n 10000000 --span-hours 120 --keys shiplog -o $@.tmp --expect $@.expect.json
	mv $@.tmp $@

# The 2M set is `make bench`'s file unless BENCH_SCALE_2M names another.
ifneq ($(abspath $(BENCH_SCALE_2M)),$(abspath $(BENCH_FILE)))
$(BENCH_SCALE_2M):
	mkdir -p $(dir $@)
	python3 $(BENCH_GEN) -n 2000000 --keys shiplog -o $@.tmp --expect $@.expect.json
	mv $@.tmp $@
endif
