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
	deadline := time.Now().Add(10 * time.Second)
	for sink.count() < 200 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := sink.count(); n != 200 {
		t.Fatalf("%d records stored before the linger, want 200", n)
	}
	uc, err := net.Dial("udp", sl.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	fmt.Fprintf(uc, "<11>Jan  2 03:04:05 web-2 worker[9]: udp line")
	deadline = time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(sl.messages.WithLabelValues("udp")) < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the last TCP lines be read

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
