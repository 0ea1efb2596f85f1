package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// shiplogTarget is `shiplog server` under the scale bench: JSON lines in over
// POST /v1/logs:jsonl, the bench's usual queries a..e and stats floors.
type shiplogTarget struct {
	srv                *server
	bin, data, logPath string
	exp                *expectation
	want               *statsWant
	readyTimeout       time.Duration
	stopTimeout        time.Duration
}

// startShiplog starts a server on a fresh data dir under work.
func startShiplog(bin, work string, exp *expectation, want *statsWant, cfg config) (*shiplogTarget, string, float64, error) {
	data := filepath.Join(work, "shiplog-data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, "", 0, err
	}
	t := &shiplogTarget{bin: bin, data: data, logPath: filepath.Join(work, "shiplog.log"), exp: exp, want: want,
		readyTimeout: cfg.readyTimeout, stopTimeout: cfg.stopTimeout}
	srv, ready, err := startServer(bin, data, t.logPath, cfg.readyTimeout)
	if err != nil {
		return nil, "", 0, err
	}
	t.srv = srv
	logf("shiplog pid %d ready in %.2fs (http %s)", srv.pid(), ready.Seconds(), srv.httpAddr)
	return t, data, ready.Seconds(), nil
}

func (t *shiplogTarget) pid() int { return t.srv.pid() }

func (t *shiplogTarget) ingest(src *bodySource, conns int, start func()) (time.Duration, int, error) {
	return postStream(context.Background(), "http://"+t.srv.httpAddr+"/v1/logs:jsonl", "application/x-ndjson", conns, src, start,
		func(lines int, rb []byte) error {
			var ans struct {
				Accepted int `json:"accepted"`
				Rejected int `json:"rejected"`
			}
			if err := json.Unmarshal(rb, &ans); err != nil {
				return err
			}
			if ans.Accepted != lines || ans.Rejected != 0 {
				return fmt.Errorf("accepted %d and rejected %d of %d lines: %.300s", ans.Accepted, ans.Rejected, lines, rb)
			}
			return nil
		})
}

// count is the histogram total of every line over the range (one bucket).
func (t *shiplogTarget) count() (int, error) {
	e, err := t.env()
	if err != nil {
		return 0, err
	}
	var hr shiplogv1.HistogramResponse
	_, err = e.q.get("/v1/logs:histogram", e.rng("q", "", "step", formatStep(e.span)), &hr)
	if err != nil {
		return 0, err
	}
	return int(hr.Total), nil
}

func (t *shiplogTarget) env() (*queryEnv, error) {
	first, err := time.Parse(time.RFC3339Nano, t.exp.FirstTime)
	if err != nil {
		return nil, fmt.Errorf("expect.json first_time: %w", err)
	}
	e := &queryEnv{q: newQueryClient(t.srv.httpAddr), exp: t.exp, span: time.Duration(t.exp.SpanHours * float64(time.Hour))}
	e.start, e.end = first.UTC().Format(time.RFC3339Nano), first.Add(e.span).UTC().Format(time.RFC3339Nano)
	return e, nil
}

// queries are the bench's a..e (run.go).
func (t *shiplogTarget) queries() ([]query, error) {
	return buildQueriesOf(newQueryClient(t.srv.httpAddr), t.exp, false)
}

func (t *shiplogTarget) floors() ([]query, error) {
	return buildStatsQueries(newQueryClient(t.srv.httpAddr), t.exp, t.want)
}

func (t *shiplogTarget) stop() (bool, time.Duration, error) {
	clean, took, _, err := t.srv.stop(t.stopTimeout)
	return clean, took, err
}

func (t *shiplogTarget) restart() (liveTarget, error) {
	srv, _, err := startServer(t.bin, t.data, t.logPath, t.readyTimeout)
	if err != nil {
		return nil, err
	}
	t2 := *t
	t2.srv = srv
	return &t2, nil
}
