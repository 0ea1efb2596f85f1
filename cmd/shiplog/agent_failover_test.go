package main

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The first --server address refuses connections: the agent goes straight on
// to the second and delivers every line once.
func TestAgentFailoverSkipsDeadServer(t *testing.T) {
	s := startServer(t)
	const n = 5000
	var in bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	start := time.Now()
	cmd := shiplog(t, "agent", "--server", freeAddr(t)+","+s.grpc, "--service", "failover", "--spool", t.TempDir(),
		"--batch-max-records", "500")
	cmd.Stdin = &in
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
	checkLines(t, s.search(""), "line ", n)
	if !strings.Contains(string(out), "failed over") || !strings.Contains(string(out), "server="+s.grpc) {
		t.Errorf("no info line about failing over to %s:\n%s", s.grpc, out)
	}
}

// Server A is killed while the agent streams to it; the agent goes on with B.
// A and B have their own stores, so a line is in both only if A stored it but
// died before its answer reached the agent: at most the batches in flight.
// Every line is in one of them, and none twice in one.
func TestAgentFailoverServerKilled(t *testing.T) {
	a, b := startServer(t), startServer(t)
	const batch, window = 200, 4 // --batch-max-records, and agent.DefaultOptions().Window
	cmd := shiplog(t, "agent", "--server", a.grpc+","+b.grpc, "--service", "failover", "--spool", t.TempDir(),
		"--batch-max-records", fmt.Sprint(batch), "--linger", "20ms", "--backoff-max", "200ms")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	write := func(from, to int) {
		var buf bytes.Buffer
		for i := from; i < to; i++ {
			fmt.Fprintf(&buf, "line %d\n", i)
		}
		if _, err := stdin.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	}

	const n = 60000
	write(0, 20000)
	a.waitCount("", 1, 10*time.Second) // under way
	write(20000, 40000)
	a.kill() // mid-stream
	write(40000, n)
	stdin.Close()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("agent: %v\n%s", err, &stderr) // exit 0: every line acked
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		t.Fatalf("agent did not finish\n%s", &stderr)
	}
	a.start() // on its data directory, to read what it stored
	inA, inB := a.search(""), b.search("")

	count := func(recs []record, what string) map[string]bool {
		seen := make(map[string]bool, len(recs))
		for _, r := range recs {
			if seen[r.Message] {
				t.Fatalf("%q stored twice in %s", r.Message, what)
			}
			seen[r.Message] = true
		}
		return seen
	}
	seenA, seenB := count(inA, "A"), count(inB, "B")
	both := 0
	for i := 0; i < n; i++ {
		m := fmt.Sprintf("line %d", i)
		switch {
		case seenA[m] && seenB[m]:
			both++
		case !seenA[m] && !seenB[m]:
			t.Fatalf("%q is in neither store (A has %d, B %d)", m, len(inA), len(inB))
		}
	}
	if len(inA)+len(inB)-both != n || len(inA) == 0 || len(inB) == 0 {
		t.Fatalf("A has %d, B %d, %d in both; want %d in all", len(inA), len(inB), both, n)
	}
	if both > batch*window {
		t.Fatalf("%d lines are in both stores: more than the %d that can be in flight", both, batch*window)
	}
	if !strings.Contains(stderr.String(), "failed over") || !strings.Contains(stderr.String(), "server="+b.grpc) {
		t.Errorf("no info line about failing over to %s:\n%s", b.grpc, &stderr)
	}
	t.Logf("A stored %d, B %d, %d in both", len(inA), len(inB), both)
}
