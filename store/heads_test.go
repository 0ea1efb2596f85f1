package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shiplog/shiplog/model"
)

// streamBatch is n lines of one stream per host, for hosts [h0, h1).
func streamBatch(h0, h1, n int, t0 time.Time) model.Batch {
	var b model.Batch
	for h := h0; h < h1; h++ {
		for i := 0; i < n; i++ {
			b.Records = append(b.Records, model.Record{
				Time:    t0.Add(time.Duration(i) * time.Millisecond).UnixNano(),
				Labels:  model.Labels{Service: "api", Host: fmt.Sprintf("h-%03d", h), BuildID: "b1"},
				Message: fmt.Sprintf("line %d of a stream that soon goes quiet, padded to a realistic length of text", i),
			})
		}
	}
	return b
}

func (s *Store) openHeads() (n int, bytes int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.heads), s.headBytes
}

// TestHeadsMaxBytesSealsLeastRecent writes to many streams that each go quiet
// with a part of a chunk open: past HeadsMaxBytes the least recently written
// heads are sealed, the newest stay open, and no line is lost.
func TestHeadsMaxBytesSealsLeastRecent(t *testing.T) {
	o := DefaultOptions()
	o.HeadsMaxBytes = 64 << 10
	s := testOpen(t, t.TempDir(), o)
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for h := 0; h < 100; h++ { // 100 streams of 50 lines (~7 KiB each)
		if _, err := s.Append(context.Background(), streamBatch(h, h+1, 50, t0)); err != nil {
			t.Fatal(err)
		}
	}
	n, bytes := s.openHeads()
	if bytes > o.HeadsMaxBytes {
		t.Fatalf("open heads hold %d bytes, bound %d", bytes, o.HeadsMaxBytes)
	}
	if n == 0 || n >= 100 {
		t.Fatalf("%d heads open, want some but not all of 100", n)
	}
	s.mu.RLock()
	for h := 100 - n; h < 100; h++ { // the open ones are the newest streams
		k := headKey{seededStreamID(model.Labels{Service: "api", Host: fmt.Sprintf("h-%03d", h), BuildID: "b1"}, 0), model.Day(t0.UnixNano())}
		if s.heads[k] == nil {
			t.Errorf("stream h-%03d (among the %d newest) is not open", h, n)
		}
	}
	s.mu.RUnlock()
	if got := count(t, s, nil, nil); got != 5000 {
		t.Fatalf("%d lines, want 5000", got)
	}
}

// TestIdleHeadSealedAndWALTrimmed: a stream that goes quiet is sealed after
// ChunkIdleAge once the WAL has moved on to a newer segment, and the segment
// it pinned is deleted; a quiet stream in the segment being written stays
// open (sealing it would free nothing).
func TestIdleHeadSealedAndWALTrimmed(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkIdleAge = 200 * time.Millisecond
	o.Maintenance = 20 * time.Millisecond
	o.WALSegmentBytes = 4 << 10
	s := testOpen(t, dir, o)
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for h := 0; h < 2; h++ { // the second batch starts a new segment
		if _, err := s.Append(context.Background(), streamBatch(h, h+1, 100, t0)); err != nil {
			t.Fatal(err)
		}
	}
	if segs, err := s.wal.segments(); err != nil || len(segs) != 2 {
		t.Fatalf("WAL segments %v (%v), want 2", segs, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, _ := s.openHeads()
		segs, err := s.wal.segments()
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 && len(segs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: %d heads open, %d WAL segments; want 1 and 1", n, len(segs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	k := headKey{seededStreamID(model.Labels{Service: "api", Host: "h-001", BuildID: "b1"}, 0), model.Day(t0.UnixNano())}
	s.mu.RLock()
	open := s.heads[k] != nil
	s.mu.RUnlock()
	if !open {
		t.Fatal("the stream in the current WAL segment was sealed")
	}
	if got := count(t, s, nil, nil); got != 200 {
		t.Fatalf("%d lines, want 200", got)
	}
}

// TestSealReasonsCounted: every chunk sealed is counted with its lines under
// why it was sealed (shiplog_store_sealed_chunk_lines): full at
// ChunkMaxLines, evicted past HeadsMaxBytes, close at Close; the lines of
// all reasons add up to the lines stored.
func TestSealReasonsCounted(t *testing.T) {
	o := DefaultOptions()
	o.HeadsMaxBytes = 64 << 10
	o.ChunkMaxLines = 100
	reg := prometheus.NewRegistry()
	s, err := Open(t.TempDir(), o, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// One stream of 250 lines: two full chunks and 50 lines open.
	if _, err := s.Append(context.Background(), streamBatch(1000, 1001, 250, t0)); err != nil {
		t.Fatal(err)
	}
	for h := 0; h < 100; h++ { // 100 streams of 50 lines: past the bound
		if _, err := s.Append(context.Background(), streamBatch(h, h+1, 50, t0)); err != nil {
			t.Fatal(err)
		}
	}
	open, _ := s.openHeads()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[string][2]uint64{} // reason -> chunks, lines
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "shiplog_store_sealed_chunk_lines" {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			got[m.GetLabel()[0].GetValue()] = [2]uint64{h.GetSampleCount(), uint64(h.GetSampleSum())}
		}
	}
	if got["full"] != [2]uint64{2, 200} {
		t.Errorf("full: %v chunks and lines, want 2 of 200", got["full"])
	}
	if got["evicted"][0] == 0 {
		t.Errorf("no chunk counted as evicted: %v", got)
	}
	if got["close"][0] != uint64(open) {
		t.Errorf("close: %d chunks, want the %d heads open at Close", got["close"][0], open)
	}
	var chunks, lines uint64
	for _, v := range got {
		chunks, lines = chunks+v[0], lines+v[1]
	}
	if lines != 5250 || chunks != uint64(testutil.ToFloat64(s.m.chunks)) {
		t.Errorf("%d chunks of %d lines counted by reason; want %v chunks of 5250 lines", chunks, lines, testutil.ToFloat64(s.m.chunks))
	}
}

// TestDefaultChunkHoldsAStreamsDay: with the default options a stream of
// 2,000 lines in a day is sealed as one chunk (1,024 lines made a full
// chunk and a runt), of eight message blocks, and a word in its last block
// is found by the index and by LoadWord after a reopen.
func TestDefaultChunkHoldsAStreamsDay(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	s := testOpen(t, dir, o)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b := streamBatch(0, 1, 2000, t0)
	b.Records[1950].Message = "transaction aborted: deadlock detected"
	if _, err := s.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	defer s.Close()
	s.mu.RLock()
	var chunks []*ChunkMeta
	for _, d := range s.days {
		chunks = append(chunks, d...)
	}
	s.mu.RUnlock()
	if len(chunks) != 1 || chunks[0].Count != 2000 {
		t.Fatalf("%d chunks, want one of 2000 lines", len(chunks))
	}
	ctx := context.Background()
	refs, err := CollectCandidates(s.Candidates(ctx, model.TimeRange{Start: 0, End: 1 << 62}, WordTerm("deadlock", false), true))
	if err != nil || len(refs) != 1 {
		t.Fatalf("%d candidates (%v), want 1", len(refs), err)
	}
	l, err := s.LoadWord(ctx, refs[0], "deadlock")
	if err != nil {
		t.Fatal(err)
	}
	var hits []string
	for i := range l.Len() {
		if l.Msgs[i] != "" {
			hits = append(hits, l.Msgs[i])
		}
	}
	if len(hits) != 1 || hits[0] != b.Records[1950].Message {
		t.Fatalf("LoadWord kept %q, want the one line of block 7", hits)
	}
	if got := count(t, s, nil, nil); got != 2000 {
		t.Fatalf("%d lines, want 2000", got)
	}
}

// TestAppendScratchStreamID checks the scratch's cache of stream ids against
// seededStreamID: many label sets (so that slots are shared), met again in
// another order, with another seed, and from a scratch reused from the pool.
func TestAppendScratchStreamID(t *testing.T) {
	var sets []model.Labels
	for i := range 3000 {
		sets = append(sets, model.Labels{Service: fmt.Sprintf("svc-%d", i%7), Host: fmt.Sprintf("host-%04x", i), BuildID: fmt.Sprintf("b%d", i%5), DeployID: []string{"", "d1", "d22"}[i%3]})
	}
	sets = append(sets, model.Labels{}, model.Labels{Host: "h"}, model.Labels{Service: "é"})
	for round := range 3 {
		sc := appendScratches.Get().(*appendScratch)
		for _, seed := range []uint64{0, 42} {
			for i := range sets {
				l := sets[(i*7919+round)%len(sets)]
				if got, want := sc.streamID(l, seed), seededStreamID(l, seed); got != want {
					t.Fatalf("round %d seed %d %+v: %x, want %x", round, seed, l, got, want)
				}
			}
		}
		sc.release()
	}
}
