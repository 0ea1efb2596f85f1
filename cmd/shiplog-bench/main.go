// Command shiplog-bench measures a shiplog server end to end on a gen_logs.py data
// set and checks its answers against the set's .expect.json:
//
//	python3 ../shared/bench/gen_logs.py -n 2000000 --keys shiplog -o /tmp/logs.jsonl
//	go build -o bin/shiplog ./cmd/shiplog && go build -o bin/shiplog-bench ./cmd/shiplog-bench
//	bin/shiplog-bench -bin bin/shiplog -input /tmp/logs.jsonl [-mode grpc|http|otlp] [-json out.json]
//
// It parses the file and builds every batch before the clock starts, starts
// `shiplog server` on free loopback ports with a fresh data dir, ingests over gRPC
// Push streams (or HTTP POST /v1/logs:write, or OTLP/gRPC LogsService/Export),
// records lines/s, server CPU per line and peak RSS, stops the server with
// SIGTERM, measures the data dir, restarts the server on it and times five
// queries over HTTP (median of -runs), checking every answer. Any wrong answer
// or failure exits 1. Right after ingest (before the stop) it times the four
// stats and facets floors of issue 15 (stats.go), checked against counts
// taken from the parsed data set.
//
// With -cluster 3 it does that once over gRPC, then starts three cluster nodes
// on this machine (docs/cluster.md) and measures ingest through all of them,
// the owners' apply lag, the queries through a node that owns none of the data
// and through an owner, and the takeover of a SIGKILLed node's partitions
// (cluster.go; `make bench-cluster`).
//
// With -live (issue 16; scale.go, `make bench-scale`) it measures as users
// meet a server: for each -input (comma-separated), shiplog and then, with
// -vl BIN, VictoriaLogs, one at a time, each fed the file's JSON lines over
// HTTP; the queries a-e (and shiplog's stats floors) run on the live process
// right after ingest, the data dir is sized right after ingest, -live-wait
// later and after a clean stop, and the idle anonymous memory is read after
// a restart on the data. It prints the runs side by side.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// VictoriaLogs' published numbers for the same five questions on 2M lines.
var reference = struct {
	LinesPerSec, CPUMicrosPerLine, BytesPerLine, RSSMiB float64
	QueryMs                                             [5]float64
}{237000, 7.5, 43, 450, [5]float64{33, 488, 11, 24, 50}}

type queryResult struct {
	Name        string    `json:"name"`
	MedianMs    float64   `json:"median_ms"`
	RunsMs      []float64 `json:"runs_ms"`
	OK          bool      `json:"ok"`
	Error       string    `json:"error,omitempty"`
	ReferenceMs float64   `json:"victorialogs_ms"`
}

type results struct {
	Mode              string        `json:"mode"`
	Input             string        `json:"input"`
	Lines             int           `json:"lines"`
	RawBytesPerLine   float64       `json:"raw_bytes_per_line"`
	Conns             int           `json:"conns"`
	Batch             int           `json:"batch"`
	Inflight          int           `json:"inflight,omitempty"`
	ParseSeconds      float64       `json:"parse_seconds"`
	StartReadySeconds float64       `json:"start_ready_seconds"`
	IngestSeconds     float64       `json:"ingest_seconds"`
	LinesPerSec       float64       `json:"lines_per_sec"`
	CPUSeconds        float64       `json:"server_cpu_seconds_ingest"`
	CPUMicrosPerLine  float64       `json:"server_cpu_us_per_line"`
	CPUMicrosPerLineT float64       `json:"server_cpu_us_per_line_incl_shutdown"`
	PeakRSSBytes      int64         `json:"peak_rss_bytes"`
	StopSeconds       float64       `json:"stop_seconds"`
	CleanStop         bool          `json:"clean_stop"`
	DiskBytes         int64         `json:"disk_bytes"`
	BytesPerLine      float64       `json:"disk_bytes_per_line"`
	DiskBreakdown     string        `json:"disk_breakdown"`
	DiskBytesFinal    int64         `json:"disk_bytes_after_restart_and_stop"`
	RestartSeconds    float64       `json:"restart_ready_seconds"`
	QueryPeakRSSBytes int64         `json:"query_server_peak_rss_bytes"`
	Queries           []queryResult `json:"queries"`
	OK                bool          `json:"ok"`
	Errors            []string      `json:"errors,omitempty"`
}

func main() {
	var (
		input        = flag.String("input", "", "JSONL file from gen_logs.py --keys shiplog (or the first argument)")
		expectPath   = flag.String("expect", "", "expected answers (default INPUT.expect.json)")
		bin          = flag.String("bin", "bin/shiplog", "shiplog binary to start as `BIN server`")
		mode         = flag.String("mode", "grpc", "ingest over grpc (Push streams), http (POST /v1/logs:write) otlp (OTLP/gRPC LogsService/Export) or jsonl (POST /v1/logs:jsonl, 1 MiB bodies of the input file)")
		conns        = flag.Int("conns", 4, "concurrent Push streams / HTTP clients, each with its own agent_id")
		batch        = flag.Int("batch", 1000, "records per batch")
		inflight     = flag.Int("inflight", 4, "grpc: unacknowledged batches per stream; otlp: concurrent Export calls per connection")
		dataDir      = flag.String("data", "", "server data dir (must be empty or absent; default: a fresh temp dir)")
		keep         = flag.Bool("keep", false, "keep the temp dir (data and server.log) after a successful run")
		runs         = flag.Int("runs", 7, "runs per query; the median is reported")
		jsonOut      = flag.String("json", "", "also write the results as JSON to this file")
		readyTimeout = flag.Duration("ready-timeout", 5*time.Minute, "how long to wait for /readyz")
		stopTimeout  = flag.Duration("stop-timeout", 5*time.Minute, "how long to wait for exit after SIGTERM")
		clusterN     = flag.Int("cluster", 0, "cluster mode: start this many nodes (3) on this machine and measure ingest, apply lag, queries through a node owning no data, and takeover after SIGKILL (see cluster.go); runs the single-node gRPC bench first for comparison")
		clusterParts = flag.Int("cluster-partitions", 16, "cluster mode: --cluster-partitions of the servers")
		clusterTTL   = flag.Duration("cluster-lease-ttl", 10*time.Second, "cluster mode: --cluster-lease-ttl of the servers")
		clusterStore = flag.String("cluster-max-store", "", "cluster mode: --cluster-max-store of the servers (default: the server's)")
		single       = flag.Bool("single", true, "cluster mode: also run the single-node gRPC bench first, for comparison")
		idleLoad     = flag.Float64("idle-load", 1.0, "cluster mode: before each measured phase wait until the 1-minute load average is below this")
		idleWait     = flag.Duration("idle-wait", 10*time.Minute, "cluster mode: wait at most this long for -idle-load")
		takeovers    = flag.Int("takeovers", 1, "cluster mode: rounds of SIGKILL of the node owning the most data, takeover, and restart of the killed node")
		profile      = flag.String("profile", "", "cluster mode: write a CPU profile of every node during ingest to this directory (perturbs the measurement)")
		trace        = flag.Duration("trace", 0, "cluster mode: log the nodes' published/applied counters this often during ingest (perturbs the measurement)")
		live         = flag.Bool("live", false, "scale mode (issue 16, scale.go): ingest JSON lines over HTTP and measure on the live server right after ingest (queries a-e, stats floors, disk now and -live-wait later), then after a clean stop and a restart; -input may name several files, comma-separated")
		vlBin        = flag.String("vl", "", "scale mode: also measure this VictoriaLogs binary on each input, after shiplog (implies -live)")
		liveWait     = flag.Duration("live-wait", 60*time.Second, "scale mode: measure the live server's disk again this long after ingest ends")
		idleSettle   = flag.Duration("idle-settle", 10*time.Second, "scale mode: after the restart on the data, wait this long before reading the idle memory")
		searchable   = flag.Duration("searchable-timeout", 5*time.Minute, "scale mode: how long every line may take to become countable after ingest")
	)
	flag.Parse()
	if *input == "" && flag.NArg() > 0 {
		*input = strings.Join(flag.Args(), ",")
	}
	if *live || *vlBin != "" {
		mainScale(*input, *mode, config{expect: *expectPath, bin: *bin, keep: *keep, jsonOut: *jsonOut,
			readyTimeout: *readyTimeout, stopTimeout: *stopTimeout},
			*vlBin, scaleConfig{conns: *conns, runs: *runs, liveWait: *liveWait, idleSettle: *idleSettle, searchable: *searchable})
		return
	}
	if *expectPath == "" {
		*expectPath = *input + ".expect.json"
	}
	cfg := config{input: *input, expect: *expectPath, bin: *bin, mode: *mode, conns: *conns, batch: *batch,
		inflight: *inflight, dataDir: *dataDir, keep: *keep, runs: *runs, jsonOut: *jsonOut,
		readyTimeout: *readyTimeout, stopTimeout: *stopTimeout}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "shiplog-bench:", err)
		flag.Usage()
		os.Exit(2)
	}
	if *clusterN > 0 {
		if cfg.mode != "grpc" || *clusterN < 2 {
			fmt.Fprintln(os.Stderr, "shiplog-bench: -cluster needs at least 2 nodes and ingests over gRPC Push only (-mode grpc)")
			os.Exit(2)
		}
		cc := clusterConfig{nodes: *clusterN, partitions: *clusterParts, leaseTTL: *clusterTTL, single: *single,
			idleLoad: *idleLoad, idleWait: *idleWait, maxStore: *clusterStore, trace: *trace, takeovers: *takeovers, profile: *profile}
		res, err := runCluster(cfg, cc)
		if res != nil {
			printClusterTable(os.Stdout, res)
		}
		finish(cfg, res, res != nil, err)
		return
	}
	res, err := run(cfg)
	if res != nil {
		printTable(os.Stdout, res)
	}
	finish(cfg, res, res != nil, err)
}

// mainScale runs the scale bench (-live, -vl) on the comma-separated inputs.
func mainScale(input, mode string, cfg config, vlBin string, sc scaleConfig) {
	var inputs []string
	for _, in := range strings.Split(input, ",") {
		if in = strings.TrimSpace(in); in != "" {
			inputs = append(inputs, in)
		}
	}
	switch {
	case len(inputs) == 0:
		fmt.Fprintln(os.Stderr, "shiplog-bench: -input is required")
		os.Exit(2)
	case mode != "grpc" && mode != "jsonl": // grpc: the flag's default
		fmt.Fprintln(os.Stderr, "shiplog-bench: -live ingests JSON lines over HTTP (POST /v1/logs:jsonl) only; drop -mode")
		os.Exit(2)
	case len(inputs) > 1 && cfg.expect != "":
		fmt.Fprintln(os.Stderr, "shiplog-bench: -expect takes one input; with several each is read from INPUT.expect.json")
		os.Exit(2)
	case sc.conns < 1 || sc.runs < 1:
		fmt.Fprintln(os.Stderr, "shiplog-bench: -conns and -runs must be positive")
		os.Exit(2)
	}
	rep, err := runScale(cfg, inputs, vlBin, sc)
	if rep != nil {
		printScaleTable(os.Stdout, rep)
	}
	finish(cfg, rep, rep != nil, err)
}

// finish writes the results as JSON (with -json) and exits 1 on err.
func finish(cfg config, res any, have bool, err error) {
	if have && cfg.jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if werr := os.WriteFile(cfg.jsonOut, append(b, '\n'), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "shiplog-bench: write json:", werr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "\nshiplog-bench: FAILED:", err)
		os.Exit(1)
	}
}

// readExpectation reads gen_logs.py's expected answers.
func readExpectation(path string) (expectation, error) {
	var exp expectation
	eb, err := os.ReadFile(path)
	if err != nil {
		return exp, err
	}
	if err := json.Unmarshal(eb, &exp); err != nil {
		return exp, fmt.Errorf("%s: %w", path, err)
	}
	return exp, nil
}

// readInput parses the data set and checks its size against the expectation.
func readInput(cfg config, exp expectation) ([]*shiplogv1.Record, error) {
	f, err := os.Open(cfg.input)
	if err != nil {
		return nil, err
	}
	recs, err := readJSONL(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.input, err)
	}
	if exp.N != 0 && len(recs) != exp.N {
		return nil, fmt.Errorf("%s has %d lines but %s says n=%d", cfg.input, len(recs), cfg.expect, exp.N)
	}
	return recs, nil
}

type config struct {
	input, expect, bin, mode, dataDir, jsonOut string
	conns, batch, inflight, runs               int
	keep                                       bool
	readyTimeout, stopTimeout                  time.Duration
}

func (c *config) validate() error {
	switch {
	case c.input == "":
		return fmt.Errorf("-input is required")
	case c.mode != "grpc" && c.mode != "http" && c.mode != "otlp" && c.mode != "jsonl":
		return fmt.Errorf("-mode must be grpc, http, otlp or jsonl, not %q", c.mode)
	case c.conns < 1 || c.batch < 1 || c.inflight < 1 || c.runs < 1:
		return fmt.Errorf("-conns, -batch, -inflight and -runs must be positive")
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func secs(d time.Duration) float64 { return d.Seconds() }

// ingestInput is the input, parsed and built into what the mode sends.
type ingestInput struct {
	perConn    [][]*shiplogv1.PushRequest
	bodies     [][][]byte // http: perConn marshalled; jsonl: the file's bodies
	jsonlLines [][]int
	otlpReqs   [][]*collogspb.ExportLogsServiceRequest
	stats      *statsWant
}

// run does the whole benchmark. It returns partial results with an error when a
// step fails, so what was measured is still printed.
func run(cfg config) (*results, error) {
	exp, err := readExpectation(cfg.expect)
	if err != nil {
		return nil, err
	}
	bin, err := filepath.Abs(cfg.bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("server binary: %w", err)
	}
	in, res, err := prepare(cfg, exp)
	if err != nil {
		return nil, err
	}

	// Work dir: data dir and server log.
	work, data, err := workDir(cfg)
	if err != nil {
		return res, err
	}
	logPath := filepath.Join(work, "server.log")
	failed := true
	defer func() {
		if failed || cfg.keep {
			logf("kept %s (server.log, data)", work)
		} else {
			os.RemoveAll(work)
			if cfg.dataDir != "" {
				os.RemoveAll(cfg.dataDir)
			}
		}
	}()

	// 1. Ingest.
	srv, ready, err := startServer(bin, data, logPath, cfg.readyTimeout)
	if err != nil {
		return res, err
	}
	res.StartReadySeconds = secs(ready)
	logf("server pid %d ready in %.2fs (http %s, grpc %s); ingesting over %s, %d conns",
		srv.pid(), res.StartReadySeconds, srv.httpAddr, srv.grpcAddr, cfg.mode, cfg.conns)
	sw := in.stats
	cpu0, err := ingestInputOver(cfg, srv, in, res, logPath)
	in = nil // let the bench's own memory go
	if err != nil {
		srv.stop(cfg.stopTimeout)
		return res, err
	}
	n := float64(res.Lines)
	var errs []string
	// The stats floors, on the live server right after ingest.
	statsQs, err := buildStatsQueries(newQueryClient(srv.httpAddr), &exp, sw)
	if err != nil {
		srv.stop(cfg.stopTimeout)
		return res, err
	}
	logf("stats queries right after ingest (%d runs each)", cfg.runs)
	qcpu0, _ := procCPU(srv.pid())
	errs = runQueries(statsQs, cfg.runs, res, errs, 0)
	qcpu1, _ := procCPU(srv.pid())

	// 2. Clean stop, size on disk.
	clean, took, cpuTotal, err := srv.stop(cfg.stopTimeout)
	res.StopSeconds, res.CleanStop = secs(took), clean
	if err != nil {
		return res, err
	}
	res.CPUMicrosPerLineT = secs(cpuTotal-cpu0-(qcpu1-qcpu0)) * 1e6 / n // without the stats queries' CPU
	if res.DiskBytes, err = diskUsage(data); err != nil {
		return res, err
	}
	res.BytesPerLine = float64(res.DiskBytes) / n
	res.DiskBreakdown = diskBreakdown(data)
	logf("stopped in %.2fs; data dir %d bytes = %.1f B/line (%s)", res.StopSeconds, res.DiskBytes, res.BytesPerLine, res.DiskBreakdown)

	// 3. Restart on the same data and query.
	if errs, err = restartAndQuery(cfg, bin, data, logPath, &exp, res, errs); err != nil {
		return res, err
	}
	res.Errors = errs
	if len(errs) > 0 {
		return res, fmt.Errorf("%d problem(s):\n  %s\nserver log: %s", len(errs), strings.Join(errs, "\n  "), logPath)
	}
	res.OK, failed = true, false
	return res, nil
}

// prepare parses the input and builds everything the mode sends, before any
// clock starts.
func prepare(cfg config, exp expectation) (*ingestInput, *results, error) {
	t0 := time.Now()
	recs, err := readInput(cfg, exp)
	if err != nil {
		return nil, nil, err
	}
	if len(recs) == 0 {
		return nil, nil, fmt.Errorf("%s: no records", cfg.input)
	}
	if cfg.mode != "jsonl" { // jsonl posts the file's bytes as they are
		addLatency(recs)
	}
	in := &ingestInput{stats: countStats(recs, exp.ABuild.BuildID)}
	in.perConn = buildBatches(recs, cfg.batch, cfg.conns, "bench-"+cfg.mode)
	if cfg.mode == "http" {
		if in.bodies, err = marshalHTTP(in.perConn); err != nil {
			return nil, nil, err
		}
	}
	if cfg.mode == "jsonl" {
		if in.bodies, in.jsonlLines, err = buildJSONL(cfg.input, cfg.conns); err != nil {
			return nil, nil, err
		}
	}
	if cfg.mode == "otlp" {
		in.otlpReqs = buildOTLP(in.perConn)
	}
	res := &results{Mode: cfg.mode, Input: cfg.input, Lines: len(recs), Conns: cfg.conns, Batch: cfg.batch,
		RawBytesPerLine: float64(exp.RawBytes) / float64(len(recs)), ParseSeconds: secs(time.Since(t0))}
	if cfg.mode == "grpc" || cfg.mode == "otlp" {
		res.Inflight = cfg.inflight
	}
	logf("parsed %d lines and built %d-record batches in %.2fs", len(recs), cfg.batch, res.ParseSeconds)
	return in, res, nil
}

// workDir makes the run's temp dir and its data dir (-data when given: it
// must be empty).
func workDir(cfg config) (work, data string, err error) {
	work, err = os.MkdirTemp("", "shiplog-bench-*")
	if err != nil {
		return "", "", err
	}
	data = filepath.Join(work, "data")
	if cfg.dataDir != "" {
		data = cfg.dataDir
		if ents, err := os.ReadDir(data); err == nil && len(ents) > 0 {
			return "", "", fmt.Errorf("-data %s is not empty", data)
		}
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return "", "", err
	}
	return work, data, nil
}

// ingestInputOver sends the input over the mode's protocol and records the
// rate, CPU and memory; it returns the server's CPU time at the start.
func ingestInputOver(cfg config, srv *server, in *ingestInput, res *results, logPath string) (time.Duration, error) {
	var cpu0 time.Duration
	startClock := func() { cpu0, _ = procCPU(srv.pid()) }
	var wall time.Duration
	var err error
	if cfg.mode == "grpc" {
		wall, err = ingestGRPC(context.Background(), []string{srv.grpcAddr}, in.perConn, cfg.inflight, startClock)
	} else if cfg.mode == "otlp" {
		wall, err = ingestOTLP(context.Background(), srv.grpcAddr, in.otlpReqs, cfg.inflight, startClock)
	} else if cfg.mode == "jsonl" {
		wall, err = ingestJSONL(context.Background(), srv.httpAddr, in.bodies, in.jsonlLines, startClock)
	} else {
		wall, err = ingestHTTP(context.Background(), srv.httpAddr, in.perConn, in.bodies, startClock)
	}
	cpu1, cerr := procCPU(srv.pid())
	hwm, herr := procHWM(srv.pid())
	if err != nil {
		return 0, fmt.Errorf("ingest: %w\nserver log %s:\n%s", err, logPath, logTail(logPath))
	}
	if cerr != nil || herr != nil {
		return 0, fmt.Errorf("read /proc of the server: %v %v", cerr, herr)
	}
	n := float64(res.Lines)
	res.IngestSeconds = secs(wall)
	res.LinesPerSec = n / wall.Seconds()
	res.CPUSeconds = secs(cpu1 - cpu0)
	res.CPUMicrosPerLine = res.CPUSeconds * 1e6 / n
	res.PeakRSSBytes = hwm
	logf("ingested in %.2fs: %.0f lines/s, %.2f µs CPU/line, peak RSS %.0f MiB",
		res.IngestSeconds, res.LinesPerSec, res.CPUMicrosPerLine, float64(hwm)/(1<<20))
	return cpu0, nil
}

// restartAndQuery starts the server again on the same data, runs the queries
// and stops it; it returns errs with the problems found added.
func restartAndQuery(cfg config, bin, data, logPath string, exp *expectation, res *results, errs []string) ([]string, error) {
	srv, ready, err := startServer(bin, data, logPath, cfg.readyTimeout)
	if err != nil {
		return errs, fmt.Errorf("restart: %w", err)
	}
	res.RestartSeconds = secs(ready)
	logf("restarted, ready in %.2fs; running queries (%d runs each)", res.RestartSeconds, cfg.runs)
	qc := newQueryClient(srv.httpAddr)
	queries, err := buildQueries(qc, exp)
	if err != nil {
		srv.stop(cfg.stopTimeout)
		return errs, err
	}
	errs = runQueries(queries, cfg.runs, res, errs, len(reference.QueryMs))
	res.QueryPeakRSSBytes, _ = procHWM(srv.pid())
	if _, _, _, err := srv.stop(cfg.stopTimeout); err != nil {
		errs = append(errs, "final stop: "+err.Error())
	} else if res.DiskBytesFinal, err = diskUsage(data); err == nil {
		logf("after restart+queries+stop: data dir %d bytes = %.1f B/line (%s)",
			res.DiskBytesFinal, float64(res.DiskBytesFinal)/float64(res.Lines), diskBreakdown(data))
	}
	return errs, nil
}

// runQueries runs each query runs times into res.Queries (the first nref
// with VictoriaLogs' reference numbers) and returns errs with its failures.
func runQueries(queries []query, runs int, res *results, errs []string, nref int) []string {
	for i, q := range queries {
		qr := queryResult{Name: q.name, OK: true}
		if i < nref {
			qr.ReferenceMs = reference.QueryMs[i]
		}
		var lat []time.Duration
		for r := 0; r < runs; r++ {
			d, err := q.run()
			if err != nil {
				qr.OK, qr.Error = false, err.Error()
				errs = append(errs, fmt.Sprintf("query %s: MISMATCH/ERROR (run %d): %v", q.name, r+1, err))
				logf("query %s: FAILED: %v", q.name, err)
				break
			}
			lat = append(lat, d)
			qr.RunsMs = append(qr.RunsMs, float64(d.Microseconds())/1000)
		}
		qr.MedianMs = float64(median(lat).Microseconds()) / 1000
		res.Queries = append(res.Queries, qr)
	}
	return errs
}

func printTable(w *os.File, r *results) {
	fmt.Fprintf(w, "\nshiplog bench: %d lines (%.0f raw B/line) from %s\n", r.Lines, r.RawBytesPerLine, filepath.Base(r.Input))
	fmt.Fprintf(w, "ingest over %s: %d conns, batch %d", r.Mode, r.Conns, r.Batch)
	if r.Inflight > 0 {
		fmt.Fprintf(w, ", inflight %d", r.Inflight)
	}
	fmt.Fprintf(w, "; parse %.1fs (untimed)\n\n", r.ParseSeconds)
	row := func(name, ours, ref string) { fmt.Fprintf(w, "  %-42s %12s %13s\n", name, ours, ref) }
	num := func(ok bool, format string, v float64) string {
		if !ok {
			return "-"
		}
		return fmt.Sprintf(format, v)
	}
	ing := r.IngestSeconds > 0
	row("", "shiplog", "VictoriaLogs")
	row("ingest lines/s", num(ing, "%.0f", r.LinesPerSec), fmt.Sprintf("%.0f", reference.LinesPerSec))
	row("server CPU µs/line (ingest)", num(ing, "%.2f", r.CPUMicrosPerLine), fmt.Sprintf("%.1f", reference.CPUMicrosPerLine))
	row("  incl. shutdown", num(r.CPUMicrosPerLineT > 0, "%.2f", r.CPUMicrosPerLineT), "")
	row("disk bytes/line", num(r.DiskBytes > 0, "%.1f", r.BytesPerLine), fmt.Sprintf("%.0f", reference.BytesPerLine))
	row("  after restart, queries, stop", num(r.DiskBytesFinal > 0, "%.1f", float64(r.DiskBytesFinal)/float64(r.Lines)), "")
	row("peak RSS MiB (ingest)", num(ing, "%.0f", float64(r.PeakRSSBytes)/(1<<20)), fmt.Sprintf("%.0f", reference.RSSMiB))
	row("ingest wall s", num(ing, "%.2f", r.IngestSeconds), "")
	row("stop after SIGTERM s", num(r.StopSeconds > 0, "%.2f", r.StopSeconds), "")
	row("restart to /readyz s", num(r.RestartSeconds > 0, "%.2f", r.RestartSeconds), "")
	for _, q := range r.Queries {
		v := num(q.OK, "%.1f", q.MedianMs)
		if !q.OK {
			v = "FAIL"
		}
		ref := "-"
		if q.ReferenceMs > 0 {
			ref = fmt.Sprintf("%.0f", q.ReferenceMs)
		}
		row("query "+q.Name+" ms", v, ref)
	}
	if r.QueryPeakRSSBytes > 0 {
		row("peak RSS MiB (restart+queries)", fmt.Sprintf("%.0f", float64(r.QueryPeakRSSBytes)/(1<<20)), "")
	}
	status := "OK: all answers match " + filepath.Base(r.Input) + ".expect.json"
	if !r.OK {
		status = "FAILED"
	}
	fmt.Fprintf(w, "\n%s\n", status)
}
