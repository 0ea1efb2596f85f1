package main

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// VictoriaLogs under the same measurement as shiplog (scale.go): started on
// loopback with a fresh -storageDataPath, fed the same file over
// /insert/jsonline (4 clients, ~1 MiB bodies, as in FINDINGS.md), asked the
// same five questions in LogsQL, each answer checked against .expect.json.
// Issue 16's table was measured with v1.26; the Go module proxy serves
// VictoriaLogs from v1.27 on (github.com/VictoriaMetrics/VictoriaLogs), so the
// Makefile installs v1.52.2 and the report names the version it ran.

type vlTarget struct {
	bin, data, logPath string
	addr               string // 127.0.0.1:PORT
	cmd                *exec.Cmd
	done               chan struct{}
	exp                *expectation
	hc                 *http.Client
	readyTimeout       time.Duration
	stopTimeout        time.Duration
}

// binVersion is the module and version a Go binary was built from
// ("github.com/VictoriaMetrics/VictoriaLogs v1.52.2"), or, for a build in a
// work tree, its commit ("github.com/shiplog/shiplog 3023e85a1b2c+dirty").
func binVersion(bin string) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		set := map[string]string{}
		for _, s := range bi.Settings {
			set[s.Key] = s.Value
		}
		v = set["vcs.revision"]
		if v == "" { // built with -buildvcs=false
			return bi.Main.Path + " (devel)"
		}
		if len(v) > 12 {
			v = v[:12]
		}
		if set["vcs.modified"] == "true" {
			v += "+dirty"
		}
	}
	return bi.Main.Path + " " + v
}

// freePort picks a free loopback port. VictoriaLogs cannot listen on port 0
// and report the port it got (it logs the flag's value), so for this
// third-party binary the bench picks one, closes it and passes it; another
// process could take it in between, which start then reports as an exit.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startVL starts VictoriaLogs on a fresh data dir under work.
func startVL(bin, work string, exp *expectation, cfg config) (*vlTarget, string, float64, error) {
	data := filepath.Join(work, "vl-data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, "", 0, err
	}
	t := &vlTarget{bin: bin, data: data, logPath: filepath.Join(work, "victoria-logs.log"), exp: exp,
		hc: &http.Client{Timeout: 5 * time.Minute}, readyTimeout: cfg.readyTimeout, stopTimeout: cfg.stopTimeout}
	t0 := time.Now()
	if err := t.start(); err != nil {
		return nil, "", 0, err
	}
	logf("victoria-logs pid %d ready in %.2fs (http %s)", t.pid(), time.Since(t0).Seconds(), t.addr)
	return t, data, time.Since(t0).Seconds(), nil
}

func (t *vlTarget) start() error {
	addr, err := freePort()
	if err != nil {
		return err
	}
	logw, err := os.OpenFile(t.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	// The data set's time range lies in the past: keep it all (the default
	// retention is 7 days, older lines are rejected at ingest).
	args := []string{"-storageDataPath=" + t.data, "-httpListenAddr=" + addr, "-retentionPeriod=100y"}
	fmt.Fprintf(logw, "\n==== shiplog-bench: %s %v\n", t.bin, args)
	t.cmd = exec.Command(t.bin, args...)
	t.cmd.Stdout, t.cmd.Stderr = logw, logw
	if err := t.cmd.Start(); err != nil {
		logw.Close()
		return err
	}
	t.addr, t.done = addr, make(chan struct{})
	go func() { _ = t.cmd.Wait(); logw.Close(); close(t.done) }()
	return t.waitReady()
}

// waitReady polls /health until it answers 200.
func (t *vlTarget) waitReady() error {
	deadline := time.Now().Add(t.readyTimeout)
	for time.Now().Before(deadline) {
		if resp, err := t.hc.Get("http://" + t.addr + "/health"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-t.done:
			return fmt.Errorf("victoria-logs exited before ready (%v); log %s:\n%s", t.cmd.ProcessState, t.logPath, logTail(t.logPath))
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.kill()
	return fmt.Errorf("victoria-logs not ready after %v; log %s:\n%s", t.readyTimeout, t.logPath, logTail(t.logPath))
}

func (t *vlTarget) pid() int { return t.cmd.Process.Pid }

func (t *vlTarget) kill() { _ = t.cmd.Process.Kill(); <-t.done }

func (t *vlTarget) stop() (bool, time.Duration, error) {
	t0 := time.Now()
	if err := t.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return false, 0, err
	}
	select {
	case <-t.done:
	case <-time.After(t.stopTimeout):
		t.kill()
		return false, time.Since(t0), fmt.Errorf("victoria-logs ignored SIGTERM for %v, killed it", t.stopTimeout)
	}
	if !t.cmd.ProcessState.Success() {
		return false, time.Since(t0), fmt.Errorf("victoria-logs exited with %v; log %s:\n%s", t.cmd.ProcessState, t.logPath, logTail(t.logPath))
	}
	return true, time.Since(t0), nil
}

func (t *vlTarget) restart() (liveTarget, error) {
	t2 := *t
	if err := t2.start(); err != nil {
		return nil, err
	}
	return &t2, nil
}

// ingest posts the file's lines to /insert/jsonline: time and message are the
// file's own keys, service and host the stream fields (shiplog's labels).
func (t *vlTarget) ingest(src *bodySource, conns int, start func()) (time.Duration, int, error) {
	u := "http://" + t.addr + "/insert/jsonline?" + url.Values{
		"_msg_field": {"message"}, "_time_field": {"time"}, "_stream_fields": {"service,host"}}.Encode()
	return postStream(context.Background(), u, "application/stream+json", conns, src, start,
		func(int, []byte) error { return nil }) // VictoriaLogs answers no count; waitCount checks every line arrived
}

// logsQL runs one query over the data set's range and returns its rows; took
// is the round trip to the last byte (decoding not counted).
func (t *vlTarget) logsQL(q string) ([]map[string]string, time.Duration, error) {
	first, err := time.Parse(time.RFC3339Nano, t.exp.FirstTime)
	if err != nil {
		return nil, 0, fmt.Errorf("expect.json first_time: %w", err)
	}
	end := first.Add(time.Duration(t.exp.SpanHours * float64(time.Hour)))
	u := "http://" + t.addr + "/select/logsql/query?" + url.Values{"query": {q},
		"start": {first.UTC().Format(time.RFC3339Nano)}, "end": {end.UTC().Format(time.RFC3339Nano)}}.Encode()
	t0 := time.Now()
	resp, err := t.hc.Get(u)
	if err != nil {
		return nil, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(t0)
	if err != nil {
		return nil, took, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, took, fmt.Errorf("LogsQL %q: HTTP %s: %.500s", q, resp.Status, body)
	}
	rows, err := parseVLRows(body)
	if err != nil {
		return nil, took, fmt.Errorf("LogsQL %q: %w", q, err)
	}
	return rows, took, nil
}

func (t *vlTarget) count() (int, error) {
	rows, _, err := t.logsQL("* | stats count() n")
	if err != nil {
		return 0, err
	}
	return vlCount(rows)
}

// queries are a..e in LogsQL with the answers shiplog's give (vlqueries.go).
func (t *vlTarget) queries() ([]query, error) {
	var qs []query
	for _, q := range vlQueries(t.exp) {
		qs = append(qs, query{name: q.name, run: func() (time.Duration, error) {
			rows, took, err := t.logsQL(q.logsQL)
			if err == nil {
				err = q.check(rows)
			}
			return took, err
		}})
	}
	return qs, nil
}

func (t *vlTarget) floors() ([]query, error) { return nil, nil }
