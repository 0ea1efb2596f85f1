package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The scale bench (issue 16, `make bench-scale`): shiplog and VictoriaLogs
// side by side in one run, each on one or more gen_logs.py files, measured as
// users meet a server: HTTP JSON-lines ingest, then the queries on the live
// process right after ingest (no restart), disk on the live process right
// after ingest and 60 s later, disk after a clean stop, and the idle memory
// after a restart on the data. One server runs at a time.

// liveTarget is one server under measurement, started on a fresh data dir.
type liveTarget interface {
	pid() int
	// ingest streams src into the server from conns clients and checks every
	// answer; start is called just before the first request.
	ingest(src *bodySource, conns int, start func()) (time.Duration, int, error)
	// count is the number of lines the server finds over the data set's range.
	count() (int, error)
	// queries are a..e, each checked against the expectation.
	queries() ([]query, error)
	// floors are further checked queries timed on the live server (shiplog's
	// stats floors); none for VictoriaLogs.
	floors() ([]query, error)
	// stop ends the process with SIGTERM and waits.
	stop() (clean bool, took time.Duration, err error)
	// restart starts the server again on the same data and waits until ready.
	restart() (liveTarget, error)
}

// scaleRun is what one server measured on one input.
type scaleRun struct {
	Server       string  `json:"server"`
	Version      string  `json:"version"`
	Input        string  `json:"input"`
	Lines        int     `json:"lines"`
	SpanHours    float64 `json:"span_hours"`
	LoadAvgStart string  `json:"loadavg_start"`
	LoadAvgEnd   string  `json:"loadavg_end"`

	StartReadySeconds float64 `json:"start_ready_seconds"`
	IngestSeconds     float64 `json:"ingest_seconds"`
	LinesPerSec       float64 `json:"lines_per_sec"`
	CPUSeconds        float64 `json:"cpu_seconds_ingest"`
	CPUMicrosPerLine  float64 `json:"cpu_us_per_line"`
	// SearchableSeconds is how long after the last ingest answer the first
	// round of the count of every line and the queries a..e (untimed, before
	// the timed runs) that all answered right began.
	SearchableSeconds float64 `json:"searchable_after_ingest_seconds"`
	PeakRSSIngest     int64   `json:"peak_rss_bytes_ingest"`
	// PeakRSS is VmHWM after the queries: the peak over ingest and queries.
	PeakRSS int64 `json:"peak_rss_bytes"`

	DiskLive   diskSize `json:"disk_live"`
	DiskLive60 diskSize `json:"disk_live_60s"`
	DiskStop   diskSize `json:"disk_after_stop"`

	Queries []queryResult `json:"queries"`
	Floors  []queryResult `json:"stats_floors,omitempty"`

	StopSeconds      float64 `json:"stop_seconds"`
	CleanStop        bool    `json:"clean_stop"`
	RestartSeconds   float64 `json:"restart_ready_seconds"`
	IdleAnonRSS      int64   `json:"idle_rss_anon_bytes_after_restart"`
	IdleRSS          int64   `json:"idle_rss_bytes_after_restart"`
	IdleSettleSecond float64 `json:"idle_settle_seconds"`

	OK     bool     `json:"ok"`
	Errors []string `json:"errors,omitempty"`
}

func (r *scaleRun) fail(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	r.Errors = append(r.Errors, msg)
	logf("%s %s: %s", r.Server, filepath.Base(r.Input), msg)
}

type scaleConfig struct {
	conns      int
	runs       int
	liveWait   time.Duration // disk is measured again this long after ingest ends
	idleSettle time.Duration // after the restart, before reading the idle memory
	searchable time.Duration // how long to wait for every line to be counted
}

func loadAvgLine() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

// measureLive measures one started server on one input; data is its data dir.
// It always stops the server. Problems go to r.Errors; what was measured stays.
func measureLive(t liveTarget, data string, in string, exp *expectation, sc scaleConfig, r *scaleRun) {
	r.Lines, r.SpanHours, r.LoadAvgStart = exp.N, exp.SpanHours, loadAvgLine()
	defer func() { r.LoadAvgEnd = loadAvgLine(); r.OK = len(r.Errors) == 0 }()
	src, err := newBodySource(in)
	if err != nil {
		r.fail("%v", err)
		t.stop()
		return
	}
	var cpu0 time.Duration
	wall, sent, err := t.ingest(src, sc.conns, func() { cpu0, _ = procCPU(t.pid()) })
	src.close()
	ingestEnd := time.Now()
	cpu1, _ := procCPU(t.pid())
	r.PeakRSSIngest, _ = procHWM(t.pid())
	if err == nil && sent != exp.N {
		err = fmt.Errorf("sent %d lines, the file has %d", sent, exp.N)
	}
	if err != nil {
		r.fail("ingest: %v", err)
		t.stop()
		return
	}
	r.DiskLive = measureDisk(data, ingestEnd)
	n := float64(exp.N)
	r.IngestSeconds, r.LinesPerSec = wall.Seconds(), n/wall.Seconds()
	r.CPUSeconds = (cpu1 - cpu0).Seconds()
	r.CPUMicrosPerLine = r.CPUSeconds * 1e6 / n
	logf("%s: ingested %d lines in %.1fs: %.0f lines/s, %.2f µs CPU/line, peak RSS %.0f MiB; live disk %.1f B/line",
		r.Server, exp.N, r.IngestSeconds, r.LinesPerSec, r.CPUMicrosPerLine, mibOf(r.PeakRSSIngest), float64(r.DiskLive.Blocks)/n)

	r.timeQueries(t, exp.N, sc, ingestEnd)
	r.PeakRSS, _ = procHWM(t.pid())

	if wait := time.Until(ingestEnd.Add(sc.liveWait)); wait > 0 {
		logf("%s: waiting %.0fs to measure the live disk %v after ingest", r.Server, wait.Seconds(), sc.liveWait)
		time.Sleep(wait)
	}
	r.DiskLive60 = measureDisk(data, ingestEnd)
	clean, took, err := t.stop()
	r.StopSeconds, r.CleanStop = took.Seconds(), clean
	if err != nil {
		r.fail("stop: %v", err)
	}
	r.DiskStop = measureDisk(data, ingestEnd)
	logf("%s: disk B/line live %.1f, +%.0fs %.1f, after stop %.1f", r.Server, float64(r.DiskLive.Blocks)/n,
		r.DiskLive60.At, float64(r.DiskLive60.Blocks)/n, float64(r.DiskStop.Blocks)/n)
	if err == nil {
		r.idleAfterRestart(t, sc.idleSettle)
	}
}

// waitSearchable asks in rounds, until a whole round answers right: the
// count of every line over the range, then each query once (untimed).
// VictoriaLogs counts fresh lines before its row queries return them (about a
// second after ingest), and a user's first look is a row query. It returns
// when the first all-right round began.
func waitSearchable(t liveTarget, n int, qs []query, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		began := time.Now()
		err := func() error {
			got, err := t.count()
			if err == nil && got != n {
				err = fmt.Errorf("count %d, want %d", got, n)
			}
			if err != nil {
				return fmt.Errorf("count of every line: %w", err)
			}
			for _, q := range qs {
				if _, err := q.run(); err != nil {
					return fmt.Errorf("query %s: %w", q.name, err)
				}
			}
			return nil
		}()
		if err == nil {
			return began, nil
		}
		if time.Now().After(deadline) {
			return time.Now(), fmt.Errorf("not searchable %v after ingest: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// timeQueries waits until the data is searchable, then runs a..e and the
// floors runs times each, checking every answer.
func (r *scaleRun) timeQueries(t liveTarget, n int, sc scaleConfig, ingestEnd time.Time) {
	qs, err := t.queries()
	if err != nil {
		r.fail("queries: %v", err)
		return
	}
	began, err := waitSearchable(t, n, qs, sc.searchable)
	if err != nil {
		r.fail("%v", err)
	}
	r.SearchableSeconds = began.Sub(ingestEnd).Seconds()
	logf("%s: every answer right from %.1fs after ingest on; timing the queries (%d runs each)", r.Server, r.SearchableSeconds, sc.runs)
	var tmp results
	errs := runQueries(qs, sc.runs, &tmp, nil, 0)
	r.Queries = tmp.Queries
	fl, err := t.floors()
	if err != nil {
		errs = append(errs, "stats floors: "+err.Error())
	} else if len(fl) > 0 {
		tmp.Queries = nil
		errs = runQueries(fl, sc.runs, &tmp, errs, 0)
		r.Floors = tmp.Queries
	}
	for _, e := range errs {
		r.fail("%s", e)
	}
}

// idleAfterRestart starts the server again on its data, lets it settle and
// reads its anonymous memory (RssAnon: the heap, not the mapped files).
func (r *scaleRun) idleAfterRestart(t liveTarget, settle time.Duration) {
	t0 := time.Now()
	t2, err := t.restart()
	if err != nil {
		r.fail("restart: %v", err)
		return
	}
	r.RestartSeconds = time.Since(t0).Seconds()
	time.Sleep(settle)
	r.IdleSettleSecond = settle.Seconds()
	if r.IdleAnonRSS, err = procStatusKB(t2.pid(), "RssAnon"); err != nil {
		r.fail("idle memory: %v", err)
	}
	r.IdleRSS, _ = procStatusKB(t2.pid(), "VmRSS")
	logf("%s: restarted in %.1fs; idle after %v: RssAnon %.0f MiB, VmRSS %.0f MiB", r.Server, r.RestartSeconds,
		settle, mibOf(r.IdleAnonRSS), mibOf(r.IdleRSS))
	if _, _, err := t2.stop(); err != nil {
		r.fail("stop after restart: %v", err)
	}
}

func mibOf(b int64) float64 { return float64(b) / (1 << 20) }
