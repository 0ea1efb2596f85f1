package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
)

// syslogSink is a fake store: fail makes the first Appends fail.
type syslogSink struct {
	mu      sync.Mutex
	recs    []model.Record
	batches int
	fail    int
}

func (s *syslogSink) Append(_ context.Context, b model.Batch) (model.AppendResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return model.AppendResult{}, errors.New("disk on fire")
	}
	s.batches++
	s.recs = append(s.recs, b.Records...)
	return model.AppendResult{Accepted: len(b.Records)}, nil
}

func (s *syslogSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// The listener batches by count and linger, survives a store error, and
// stores what it received before Serve returns.
func TestSyslogListener(t *testing.T) {
	sink := &syslogSink{fail: 1}
	reg := prometheus.NewRegistry()
	in := ingest.New(sink, ingest.DefaultOptions(), nil, nil)
	sl, err := ListenSyslog(in, SyslogOptions{Addr: "127.0.0.1:0", BatchSize: 100, Linger: time.Hour}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sl.Serve(ctx) }()

	tc, err := net.Dial("tcp", sl.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	for i := range 250 {
		fmt.Fprintf(tc, "<14>1 - web-1 api - - - tcp line %d\n", i)
	}
	fmt.Fprintf(tc, "garbage\n")
	// Two full batches are stored without waiting for the linger (the first
	// after a retry).
	eventually(t, "two batches stored", func() bool { return sink.count() >= 200 })
	if n := sink.count(); n != 200 {
		t.Fatalf("%d records stored before the linger, want 200", n)
	}
	uc, err := net.Dial("udp", sl.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	fmt.Fprintf(uc, "<11>Jan  2 03:04:05 web-2 worker[9]: udp line")
	eventually(t, "the UDP message received", func() bool { return testutil.ToFloat64(sl.messages.WithLabelValues("udp")) >= 1 })
	// The garbage line comes after the 250 TCP lines on one connection: once
	// it is counted malformed, every TCP line has been read and queued.
	eventually(t, "the TCP lines read", func() bool { return testutil.ToFloat64(sl.malformed) >= 1 })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := sink.count(); n != 251 {
		t.Fatalf("%d records stored after shutdown, want 251", n)
	}
	last := sink.recs[250]
	if last.Host != "web-2" || last.Service != "worker" || last.Level != model.LevelError || last.Message != "udp line" {
		t.Errorf("UDP record: %+v", last)
	}
	if got := testutil.ToFloat64(sl.malformed); got != 1 {
		t.Errorf("malformed = %v, want 1", got)
	}
	if got := testutil.ToFloat64(sl.dropped); got != 0 {
		t.Errorf("dropped = %v, want 0", got)
	}
	if _, err := net.Dial("tcp", sl.Addr()); err == nil {
		t.Error("still accepting after shutdown")
	}
}

// closedBy reports when the server closes c (a read ends), on the channel.
func closedBy(c net.Conn) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		_, _ = c.Read(make([]byte, 1))
		close(ch)
	}()
	return ch
}

// startSyslog serves a syslog listener on a loopback port into sink until
// the test ends.
func startSyslog(t *testing.T, sink *syslogSink, opts SyslogOptions) *Syslog {
	t.Helper()
	in := ingest.New(sink, ingest.DefaultOptions(), nil, nil)
	opts.Addr = "127.0.0.1:0"
	sl, err := ListenSyslog(in, opts, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sl.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return sl
}

// MaxConns idle connections do not lock out a new sender: the longest idle
// is closed for it; a connection idle for IdleTimeout is closed.
func TestSyslogIdleConnections(t *testing.T) {
	sink := &syslogSink{}
	sl := startSyslog(t, sink, SyslogOptions{BatchSize: 1, MaxConns: 4, IdleTimeout: time.Hour})
	var idle []<-chan struct{}
	for range 4 {
		c, err := net.Dial("tcp", sl.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, closedBy(c))
	}
	eventually(t, "4 connections open", func() bool { return testutil.ToFloat64(sl.connGauge) >= 4 })
	// Time must pass: only a connection idle for syslogEvictIdle (read off
	// the wall clock) may be closed for a new one.
	time.Sleep(syslogEvictIdle + 100*time.Millisecond)
	c, err := net.Dial("tcp", sl.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "<14>1 - web-1 api - - - from a new connection\n")
	eventually(t, "the new connection's message stored", func() bool { return sink.count() >= 1 })
	if sink.count() != 1 {
		t.Fatalf("the new connection's message was not stored (%d records)", sink.count())
	}
	select {
	case <-idle[0]: // the longest idle (the first accepted)
	case <-time.After(10 * time.Second):
		t.Error("the longest idle connection was not closed")
	}
	if got := testutil.ToFloat64(sl.connGauge); got != 4 {
		t.Errorf("connections gauge %v, want 4", got)
	}

	sl = startSyslog(t, &syslogSink{}, SyslogOptions{IdleTimeout: 200 * time.Millisecond})
	c2, err := net.Dial("tcp", sl.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	select {
	case <-closedBy(c2):
	case <-time.After(10 * time.Second):
		t.Error("an idle connection was not closed after IdleTimeout")
	}
}
