package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shiplog/shiplog/internal/harness"
)

// These tests drive real shiplog processes: the test binary itself, run as
// shiplog (see init), so nothing has to be built first.

const asMainEnv = "GO_SHIPLOG_TEST_AS_MAIN"

func init() {
	if os.Getenv(asMainEnv) == "1" {
		main()
		os.Exit(0)
	}
}

// shiplog returns a command running shiplog with args, in an environment
// without SHIPLOG_* variables and with its own cache directory.
func shiplog(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SHIPLOG_") && !strings.HasPrefix(e, "XDG_CACHE_HOME=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, asMainEnv+"=1", "XDG_CACHE_HOME="+cacheHome(t))
	return cmd
}

var (
	cacheMu    sync.Mutex
	cacheHomes = map[testing.TB]string{}
)

// cacheHome is the test's XDG_CACHE_HOME, where default spools go.
func cacheHome(t testing.TB) string {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if d, ok := cacheHomes[t]; ok {
		return d
	}
	d := t.TempDir()
	cacheHomes[t] = d
	t.Cleanup(func() { cacheMu.Lock(); delete(cacheHomes, t); cacheMu.Unlock() })
	return d
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// testServer is a running `shiplog server` process (internal/harness): the
// test binary run as shiplog, on ports the kernel picks unless http or grpc
// is set (a client that had to know the address before the server started);
// a restart takes the same ports again.
type testServer struct {
	t                testing.TB
	data, http, grpc string
	proc             *harness.Proc
}

func startServer(t testing.TB) *testServer {
	t.Helper()
	s := &testServer{t: t, data: filepath.Join(t.TempDir(), "data")}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *testServer) start() {
	t := s.t
	t.Helper()
	cmd := shiplog(t) // the executable and environment
	cfg := harness.Config{Bin: cmd.Path, Env: cmd.Env, Args: []string{"--data", s.data},
		LogPath: filepath.Join(filepath.Dir(s.data), "server.log")}
	if s.http != "" {
		cfg.Args = append(cfg.Args, "--http", s.http)
	}
	if s.grpc != "" {
		cfg.Args = append(cfg.Args, "--grpc", s.grpc)
	}
	p, err := harness.Start(cfg)
	if err == nil {
		err = p.WaitReady(20 * time.Second)
	}
	if err != nil {
		log, _ := os.ReadFile(cfg.LogPath)
		t.Fatalf("%v\n%s", err, log)
	}
	s.proc, s.http, s.grpc = p, p.HTTPAddr, p.GRPCAddr
}

// kill sends SIGKILL and waits for the process to go.
func (s *testServer) kill() {
	if s.proc != nil {
		s.proc.Kill()
		s.proc = nil
	}
}

// record is a stored record as the HTTP API shows it.
type record struct {
	Service    string            `json:"service"`
	Host       string            `json:"host"`
	BuildID    string            `json:"build_id"`
	Level      string            `json:"level"`
	Message    string            `json:"message"`
	Seq        string            `json:"seq"`
	Attributes map[string]string `json:"attributes"`
}

// search reads every record matching q (oldest first), following next_cursor.
func (s *testServer) search(q string) []record {
	s.t.Helper()
	p := url.Values{"q": {q}, "limit": {"5000"}, "order": {"asc"}}
	var out []record
	for {
		resp, err := http.Get("http://" + s.http + "/v1/logs:search?" + p.Encode())
		if err != nil {
			s.t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			s.t.Fatalf("search: %d %s", resp.StatusCode, body)
		}
		var r struct {
			Records    []record `json:"records"`
			NextCursor string   `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			s.t.Fatal(err)
		}
		out = append(out, r.Records...)
		if r.NextCursor == "" {
			return out
		}
		p.Set("cursor", r.NextCursor)
	}
}

// waitCount polls until at least n records match q and returns them.
func (s *testServer) waitCount(q string, n int, within time.Duration) []record {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		recs := s.search(q)
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%d records match %q after %s, want %d", len(recs), q, within, n)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// checkLines checks that the records are exactly the lines "<prefix><i>" for
// i in [0, n), each once.
func checkLines(t testing.TB, recs []record, prefix string, n int) {
	t.Helper()
	seen := make(map[string]int, len(recs))
	for _, r := range recs {
		seen[r.Message]++
	}
	var missing, doubled []string
	for i := 0; i < n; i++ {
		m := fmt.Sprintf("%s%d", prefix, i)
		switch seen[m] {
		case 0:
			missing = append(missing, m)
		case 1:
		default:
			doubled = append(doubled, m)
		}
	}
	if len(missing)+len(doubled) > 0 || len(recs) != n {
		t.Fatalf("%d records for %d lines: %d missing (%.5q), %d doubled (%.5q)", len(recs), n, len(missing), missing, len(doubled), doubled)
	}
}

// agentProc is a running `shiplog agent`.
type agentProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	exited chan error
}

func startAgent(t testing.TB, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	a.cmd = shiplog(t, append([]string{"agent"}, args...)...)
	a.cmd.Stderr = a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exited <- a.cmd.Wait() }()
	t.Cleanup(func() { _ = a.cmd.Process.Kill(); <-a.exited; a.exited <- nil })
	return a
}

// stop sends SIGTERM and expects exit 0.
func (a *agentProc) stop(t testing.TB) {
	t.Helper()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.exited:
		a.exited <- err
		if err != nil {
			t.Fatalf("agent after SIGTERM: %v\n%s", err, a.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not exit after SIGTERM\n%s", a.stderr)
	}
}

func (a *agentProc) kill9() {
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	err := <-a.exited
	a.exited <- err
}

func appendLines(t testing.TB, path, prefix string, from, to int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%s%d\n", prefix, i)
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAgentStdinExactlyOnce(t *testing.T) {
	s := startServer(t)
	const n = 20000
	var in bytes.Buffer
	for i := 0; i < n; i++ {
		switch {
		case i%1000 == 1:
			fmt.Fprintf(&in, "ERROR line %d\n", i)
		case i%1000 == 2:
			fmt.Fprintf(&in, "level=warn line %d\n", i)
		default:
			fmt.Fprintf(&in, "line %d\n", i)
		}
	}
	cmd := shiplog(t, "agent", "--server", s.grpc, "--service", "stdin", "--host", "h1", "--build-id", "b-1",
		"--attr", "env=test", "--spool", t.TempDir(), "--batch-max-records", "700")
	cmd.Stdin = &in
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	recs := s.search("")
	for i := range recs {
		r := &recs[i]
		r.Message = strings.TrimPrefix(strings.TrimPrefix(r.Message, "ERROR "), "level=warn ")
		if r.Seq != fmt.Sprint(i+1) {
			t.Fatalf("record %d has seq %s", i, r.Seq)
		}
	}
	checkLines(t, recs, "line ", n)
	var hosts struct {
		Hosts []struct {
			Host, State string
		} `json:"hosts"`
	}
	resp, err := http.Get("http://" + s.http + "/v1/hosts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&hosts); err != nil || len(hosts.Hosts) != 1 || hosts.Hosts[0].State != "closed" {
		t.Errorf("hosts after the agent said goodbye: %+v %v", hosts, err)
	}
	r := recs[1001]
	if r.Level != "error" || r.Service != "stdin" || r.Host != "h1" || r.BuildID != "b-1" || r.Attributes["env"] != "test" || recs[1002].Level != "warn" || recs[1003].Level != "info" {
		t.Fatalf("records %+v %+v %+v", r, recs[1002], recs[1003])
	}
}

func TestAgentJSONStdin(t *testing.T) {
	s := startServer(t)
	in := `{"time":"2026-01-02T03:04:05.000000006Z","level":"WARNING","message":"disk slow","host":"db-1","attributes":{"disk":"sda","pct":91}}
this is not JSON
{"message":"second","service":"override"}
`
	cmd := shiplog(t, "agent", "--server", s.grpc, "--service", "json", "--host", "h", "--format", "json", "--spool", t.TempDir())
	cmd.Stdin = strings.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("agent: %v\n%s", err, &stderr)
	}
	if !strings.Contains(stderr.String(), "bad JSON line dropped") || !strings.Contains(stderr.String(), "line=2") {
		t.Errorf("stderr: %s", &stderr)
	}
	recs := s.search("")
	if len(recs) != 2 {
		t.Fatalf("records %+v", recs)
	}
	r := recs[0]
	if r.Message != "disk slow" || r.Level != "warn" || r.Host != "db-1" || r.Service != "json" || r.Attributes["disk"] != "sda" || r.Attributes["pct"] != "91" {
		t.Errorf("record %+v", r)
	}
	if recs[1].Service != "override" || recs[1].Host != "h" {
		t.Errorf("record %+v", recs[1])
	}
}

func TestAgentStdinServerDownFails(t *testing.T) {
	cmd := shiplog(t, "agent", "--server", freeAddr(t), "--service", "x", "--spool", t.TempDir(), "--shutdown-timeout", "300ms")
	cmd.Stdin = strings.NewReader("a\nb\n")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "2 of 2 lines not delivered") {
		t.Fatalf("agent with no server: %v\n%s", err, out)
	}
}

func TestAgentFollowsRotationAndTruncation(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	a := startAgent(t, "--server", s.grpc, "--service", "follow", "--spool", filepath.Join(dir, "spool"),
		"--poll-interval", "20ms", "--linger", "20ms", path) // the file appears later
	appendLines(t, path, "line ", 0, 500)
	s.waitCount("", 500, 15*time.Second)
	appendLines(t, path, "line ", 500, 520) // to the old file, just before rotation
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, "line ", 520, 1000)
	s.waitCount("", 1000, 15*time.Second)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, "line ", 1000, 1100)
	s.waitCount("", 1100, 15*time.Second)
	a.stop(t)
	checkLines(t, s.search(""), "line ", 1100)
}

func TestAgentSurvivesServerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: kills and restarts the server")
	}
	s := startServer(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	a := startAgent(t, "--server", s.grpc, "--service", "kill", "--spool", filepath.Join(dir, "spool"),
		"--poll-interval", "20ms", "--linger", "20ms", "--batch-max-records", "200", "--backoff-max", "200ms", path)
	const chunk = 17000 // 102,000 lines in all, across two kills
	next := 0
	for round := 0; round < 2; round++ {
		appendLines(t, path, "line ", next, next+chunk)
		next += chunk
		s.waitCount("", next-chunk+1, 15*time.Second) // under way
		appendLines(t, path, "line ", next, next+chunk)
		next += chunk
		s.kill() // mid-stream
		appendLines(t, path, "line ", next, next+chunk)
		next += chunk
		s.start()
	}
	s.waitCount("", next, 60*time.Second)
	a.stop(t)
	recs := s.search("")
	checkLines(t, recs, "line ", next)
	// In order: oldest first, the lines come back as they were written.
	for i, r := range recs {
		if want := fmt.Sprintf("line %d", i); r.Message != want {
			t.Fatalf("record %d is %q, want %q: out of order", i, r.Message, want)
		}
	}
}

func TestAgentRestartMidFile(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: kills and restarts the agent")
	}
	s := startServer(t)
	dir := t.TempDir()
	path, spool := filepath.Join(dir, "app.log"), filepath.Join(dir, "spool")
	args := []string{"--server", s.grpc, "--service", "restart", "--spool", spool, "--poll-interval", "20ms",
		"--linger", "20ms", "--batch-max-records", "100", "--backoff-max", "200ms", path}
	appendLines(t, path, "line ", 0, 30000)

	// Killed while it ships the file.
	a := startAgent(t, args...)
	got := len(s.waitCount("", 1, 15*time.Second))
	a.kill9()
	t.Logf("agent killed after %d of 30000 lines were stored", got)
	appendLines(t, path, "line ", 30000, 31000)
	a = startAgent(t, args...)
	s.waitCount("", 31000, 30*time.Second)

	// Killed while the server is down and the lines are only in its spool.
	s.kill()
	appendLines(t, path, "line ", 31000, 32000)
	fi, _ := os.Stat(path)
	waitSpooled(t, spool, fi.Size())
	a.kill9()
	s.start()
	a = startAgent(t, args...)
	s.waitCount("", 32000, 30*time.Second)
	a.stop(t)
	checkLines(t, s.search(""), "line ", 32000)
}

// waitSpooled waits until the spool's saved position reaches size.
func waitSpooled(t testing.TB, spool string, size int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st struct {
			Positions map[string]struct {
				Offset int64 `json:"offset"`
			} `json:"positions"`
		}
		b, _ := os.ReadFile(filepath.Join(spool, "state.json"))
		if json.Unmarshal(b, &st) == nil {
			for _, p := range st.Positions {
				if p.Offset == size {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool position did not reach %d: %s", size, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgentUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"agent", "--format", "xml"},
		{"agent", "--attr", "novalue"},
		{"agent", "--spool-max-bytes", "10"},
		{"agent", "--server", ""},
		{"run", "--build-id", "b", "--", "true"},
		{"run", "--service", "s", "--build-id", "b"},
	} {
		err := Run(context.Background(), args, io.Discard, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}
