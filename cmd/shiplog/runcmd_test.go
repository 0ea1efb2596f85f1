package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runShiplog runs `shiplog run` and returns its stdout, stderr and exit code.
func runShiplog(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := shiplog(t, append([]string{"run"}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestRunPassesThroughAndShips(t *testing.T) {
	s := startServer(t)
	out, errOut, code := runShiplog(t, "--server", s.grpc, "--service", "ci", "--build-id", "build-1", "--host", "runner-1",
		"--", "sh", "-c", `echo out; echo ERROR bad >&2; printf 'bin \377\376 end\n'; printf 'no newline'; exit 3`)
	if code != 3 {
		t.Fatalf("exit code %d\nstderr: %s", code, errOut)
	}
	if out != "out\nbin \377\376 end\nno newline" || errOut != "ERROR bad\n" {
		t.Fatalf("stdout %q\nstderr %q", out, errOut)
	}
	recs := s.search("")
	if len(recs) != 4 {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	byMsg := map[string]record{}
	for _, r := range recs {
		byMsg[r.Message] = r
		if r.Service != "ci" || r.BuildID != "build-1" || r.Host != "runner-1" {
			t.Errorf("labels %+v", r)
		}
	}
	for msg, want := range map[string][2]string{
		"out": {"stdout", "info"}, "ERROR bad": {"stderr", "error"},
		"bin \uFFFD end": {"stdout", "info"}, "no newline": {"stdout", "info"},
	} {
		r, ok := byMsg[msg]
		if !ok || r.Attributes["stream"] != want[0] || r.Level != want[1] {
			t.Errorf("%q: %+v, want stream %s level %s", msg, r, want[0], want[1])
		}
	}
	// The run itself: start, end and exit code.
	resp, err := http.Get("http://" + s.http + "/v1/builds/build-1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct {
		ExitCode *int   `json:"exit_code"`
		Start    string `json:"start"`
		End      string `json:"end"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &b); err != nil || b.ExitCode == nil || *b.ExitCode != 3 || b.Start == "" || b.End == "" {
		t.Errorf("build: %s", body)
	}
	// All delivered: the default per-build spool is gone.
	if des, _ := os.ReadDir(filepath.Join(cacheHome(t), "shiplog")); len(des) != 0 {
		t.Errorf("spool left behind: %v", des)
	}
}

func TestRunManyLinesSameBytes(t *testing.T) {
	s := startServer(t)
	const n = 3000
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "o $i"; echo "e $i" >&2; i=$((i+1)); done`, n)
	out, errOut, code := runShiplog(t, "--server", s.grpc, "--service", "ci", "--build-id", "b-many", "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var wantOut, wantErr strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&wantOut, "o %d\n", i)
		fmt.Fprintf(&wantErr, "e %d\n", i)
	}
	if out != wantOut.String() || errOut != wantErr.String() {
		t.Fatalf("output changed: %d/%d bytes out, %d/%d err", len(out), wantOut.Len(), len(errOut), wantErr.Len())
	}
	recs := s.search("")
	var so, se []record
	for _, r := range recs {
		if r.Attributes["stream"] == "stdout" {
			so = append(so, r)
		} else {
			se = append(se, r)
		}
	}
	checkLines(t, so, "o ", n)
	checkLines(t, se, "e ", n)
}

// TestRunManyLinesServerDown: 50,000 mixed lines while the server is down pass
// through unchanged, the exit code is the command's, and the spooled lines are
// delivered by the next run once the server is up.
func TestRunManyLinesServerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	addr := freeAddr(t)
	spool := filepath.Join(t.TempDir(), "spool")
	const n = 25000
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "o $i"; echo "e $i" >&2; i=$((i+1)); done`, n)
	out, errOut, code := runShiplog(t, "--server", addr, "--service", "ci", "--build-id", "b-many-down", "--spool", spool,
		"--shutdown-timeout", "300ms", "--", "sh", "-c", script)
	var wantOut, wantErr strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&wantOut, "o %d\n", i)
		fmt.Fprintf(&wantErr, "e %d\n", i)
	}
	if code != 0 || out != wantOut.String() || !strings.HasPrefix(errOut, wantErr.String()) ||
		!strings.Contains(errOut[wantErr.Len():], "not delivered") {
		t.Fatalf("exit %d, %d/%d bytes out, stderr tail %q", code, len(out), wantOut.Len(), errOut[min(len(errOut), wantErr.Len()):])
	}
	s := &testServer{t: t, data: filepath.Join(t.TempDir(), "data"), grpc: addr}
	s.start()
	t.Cleanup(s.kill)
	if _, errOut, code := runShiplog(t, "--server", addr, "--service", "ci", "--build-id", "b-many-down", "--spool", spool,
		"--shutdown-timeout", "60s", "--", "true"); code != 0 || errOut != "" {
		t.Fatalf("second run: %d %q", code, errOut)
	}
	var so, se []record
	for _, r := range s.search("build_id:b-many-down") {
		if r.Attributes["stream"] == "stdout" {
			so = append(so, r)
		} else {
			se = append(se, r)
		}
	}
	checkLines(t, so, "o ", n)
	checkLines(t, se, "e ", n)
}

func TestRunServerDown(t *testing.T) {
	addr := freeAddr(t)
	spool := filepath.Join(t.TempDir(), "spool")
	start := time.Now()
	out, errOut, code := runShiplog(t, "--server", addr, "--service", "ci", "--build-id", "b-down", "--spool", spool,
		"--shutdown-timeout", "300ms", "--", "sh", "-c", "echo hi; echo ERROR x >&2; exit 7")
	if code != 7 || out != "hi\n" || !strings.HasPrefix(errOut, "ERROR x\n") ||
		!strings.Contains(errOut, "warning: 2 of 2 lines not delivered") || strings.Count(errOut, "\n") != 2 {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s", d)
	}
	// The next run on the same spool, with the server up, delivers them.
	s := &testServer{t: t, data: filepath.Join(t.TempDir(), "data"), grpc: addr}
	s.start()
	t.Cleanup(s.kill)
	if _, errOut, code := runShiplog(t, "--server", addr, "--service", "ci", "--build-id", "b-down", "--spool", spool, "--", "true"); code != 0 || errOut != "" {
		t.Fatalf("second run: %d %q", code, errOut)
	}
	recs := s.search("")
	levels := map[string]string{}
	for _, r := range recs {
		levels[r.Message] = r.Level
	}
	if len(recs) != 2 || levels["hi"] != "info" || levels["ERROR x"] != "error" {
		t.Fatalf("records %+v", recs)
	}
}

func TestRunExitCodes(t *testing.T) {
	down := []string{"--server", freeAddr(t), "--service", "ci", "--build-id", "b-codes", "--shutdown-timeout", "100ms", "--"}
	for _, c := range []struct {
		cmd  []string
		code int
	}{
		{[]string{"true"}, 0},
		{[]string{"sh", "-c", "exit 3"}, 3},
		{[]string{"sh", "-c", "kill -TERM $$"}, 128 + int(syscall.SIGTERM)},
		{[]string{"/no/such/command"}, 127},
	} {
		if _, errOut, code := runShiplog(t, append(down, c.cmd...)...); code != c.code {
			t.Errorf("%q: exit %d, want %d\n%s", c.cmd, code, c.code, errOut)
		}
	}
}

func TestRunForwardsSignals(t *testing.T) {
	cmd := shiplog(t, "run", "--server", freeAddr(t), "--service", "ci", "--build-id", "b-sig", "--shutdown-timeout", "100ms",
		"--", "sh", "-c", `trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.05; done`)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("read %q: %v", buf, err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	rest, _ := io.ReadAll(stdout)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 || string(rest) != "got TERM\n" {
		t.Fatalf("after SIGTERM: %v, output %q", err, rest)
	}
}

func TestRunFailsOverToSecondServer(t *testing.T) {
	s := startServer(t)
	out, errOut, code := runShiplog(t, "--server", freeAddr(t)+","+s.grpc, "--service", "ci", "--build-id", "b-failover",
		"--spool", filepath.Join(t.TempDir(), "spool"), "--", "sh", "-c", "echo hi; echo ERROR x >&2")
	if code != 0 || out != "hi\n" || errOut != "ERROR x\n" {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	if recs := s.search("build_id:b-failover"); len(recs) != 2 {
		t.Fatalf("records %+v", recs)
	}
}
