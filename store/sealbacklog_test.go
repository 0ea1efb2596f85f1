package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shiplog/shiplog/model"
)

// waitFor polls cond until it holds (the test fails after a minute).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after a minute", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSealBacklogBound: with the sealers stopped (the day's dictionaries'
// lock held, which every seal takes first), Appends that evict heads fill
// the sealing backlog only up to SealBacklogBytes and one eviction past it,
// then wait; a waiting Append returns when its context ends; once the
// sealers run again every Append goes through and no line is lost.
func TestSealBacklogBound(t *testing.T) {
	o := DefaultOptions()
	o.HeadsMaxBytes = 64 << 10
	o.SealBacklogBytes = 32 << 10
	s := testOpen(t, t.TempDir(), o)
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s.dicts.mu.Lock()
	held := true
	defer func() {
		if held {
			s.dicts.mu.Unlock()
		}
	}()
	done := make(chan error, 1)
	go func() {
		for h := 0; h < 100; h++ { // 100 streams of 50 lines (~7 KiB each): ~10x both bounds
			if _, err := s.Append(context.Background(), streamBatch(h, h+1, 50, t0)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	waitFor(t, "an Append to wait for the sealers", func() bool { return testutil.ToFloat64(s.m.backlogWaits) >= 1 })
	// The sealers are stopped: nothing moves until they run again.
	if got, most := s.sealingBytes.Load(), o.SealBacklogBytes+o.HeadsMaxBytes/4+8<<10; got > most {
		t.Fatalf("%d bytes of heads wait to be sealed, want at most %d (the bound, one eviction and a head)", got, most)
	}
	select {
	case err := <-done:
		t.Fatalf("every Append returned (%v) with the sealers stopped", err)
	default:
	}

	ctx, cancel := context.WithCancel(context.Background())
	ctxErr := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, streamBatch(200, 201, 5, t0))
		ctxErr <- err
	}()
	waitFor(t, "a second Append to wait", func() bool { return testutil.ToFloat64(s.m.backlogWaits) >= 2 })
	cancel()
	if err := <-ctxErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiting Append whose context was cancelled returned %v, want context.Canceled", err)
	}

	s.dicts.mu.Unlock()
	held = false
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := count(t, s, nil, nil); got != 5000 {
		t.Fatalf("%d lines, want 5000", got)
	}
}

// TestSealBacklogWaitAfterDurable: an Append whose own lines evicted heads
// past the backlog bound waits for the sealers after its lines are durable;
// when its context ends there it returns its good result (the lines are in
// the WAL), and they are all found once the sealers run again.
func TestSealBacklogWaitAfterDurable(t *testing.T) {
	o := DefaultOptions()
	o.HeadsMaxBytes = 64 << 10
	o.SealBacklogBytes = 32 << 10
	s := testOpen(t, t.TempDir(), o)
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s.dicts.mu.Lock() // the sealers stop
	held := true
	defer func() {
		if held {
			s.dicts.mu.Unlock()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	type answer struct {
		res model.AppendResult
		err error
	}
	got := make(chan answer, 1)
	go func() {
		// One batch of 40 streams (~280 KiB): it evicts ~7x the backlog bound
		// itself, in fewer heads than sealCh holds.
		res, err := s.Append(ctx, streamBatch(0, 40, 50, t0))
		got <- answer{res, err}
	}()
	waitFor(t, "the Append to wait for the sealers", func() bool { return testutil.ToFloat64(s.m.backlogWaits) >= 1 })
	select {
	case a := <-got:
		t.Fatalf("the Append returned (%+v) with the sealers stopped and the backlog past its bound", a)
	default:
	}
	cancel()
	a := <-got
	if a.err != nil || a.res.Accepted != 2000 {
		t.Fatalf("the Append cancelled after its lines were durable returned %+v %v, want 2000 accepted and no error", a.res, a.err)
	}
	s.dicts.mu.Unlock()
	held = false
	if n := count(t, s, nil, nil); n != 2000 {
		t.Fatalf("%d lines, want 2000", n)
	}
}
