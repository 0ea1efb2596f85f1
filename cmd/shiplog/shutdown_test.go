package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the server's writers and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCleanStopLogsLastLine: a clean stop (SIGTERM cancels Run's context)
// ends the log with a line saying it is done, so that an operator (or a
// supervisor reading the log) can tell a finished stop from a killed one.
func TestCleanStopLogsLastLine(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"server", "--data", t.TempDir(), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	for !strings.Contains(stdout.String(), "shiplog is serving") {
		select {
		case err := <-done:
			t.Fatalf("server ended before serving: %v\n%s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("clean stop: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "shutdown complete") {
		t.Fatalf("last log line %q, want the stop to say it is complete; log:\n%s", last, stderr.String())
	}
}
