package store

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// noSealOptions keep every line in open heads and the WAL.
func noSealOptions() Options {
	o := DefaultOptions()
	o.ChunkMaxLines = 1 << 20
	o.ChunkMaxAge = time.Hour
	o.Maintenance = time.Hour
	return o
}

func lastSegment(t testing.TB, dir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no WAL segment: %v", err)
	}
	sort.Strings(segs)
	return segs[len(segs)-1]
}

func lineIDs(t testing.TB, s *Store) map[model.ID]int {
	t.Helper()
	ids := map[model.ID]int{}
	count(t, s, nil, func(l *Lines, i int) bool { ids[l.ID(i)]++; return true })
	return ids
}

// TestTornWALFrame: a crash in the middle of writing the last WAL frame loses
// that batch (never acked) and nothing else; the agent may send it again and
// its lines get the ids they would have had.
func TestTornWALFrame(t *testing.T) {
	dir := t.TempDir()
	o := noSealOptions()
	s := testOpen(t, dir, o)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	batch := func(i int) model.Batch { return testBatch("ag", 50, 1+50*i, t0.Add(time.Duration(i)*time.Second)) }
	before := map[int]map[model.ID]int{}
	for i := 0; i < 5; i++ {
		if _, err := s.Append(ctx, batch(i)); err != nil {
			t.Fatal(err)
		}
		before[i] = lineIDs(t, s)
	}
	crash(s)
	seg := lastSegment(t, dir)
	fi, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(seg, fi.Size()-3); err != nil {
		t.Fatal(err)
	}

	s = testOpen(t, dir, o)
	got := lineIDs(t, s)
	if len(got) != 200 {
		t.Fatalf("%d lines after the torn frame, want the 200 of the first four batches", len(got))
	}
	for id, n := range got {
		if n != 1 || before[3][id] != 1 {
			t.Fatalf("line %v seen %d times, known before the crash: %v", id, n, before[3][id] == 1)
		}
	}
	// The agent was acked up to seq 200: the torn batch is new, an older one is not.
	res, err := s.Append(ctx, batch(3))
	if err != nil || res.Accepted != 0 || res.Duplicates != 50 || res.AckedSeq != 200 {
		t.Fatalf("resending batch 3: %+v, %v", res, err)
	}
	res, err = s.Append(ctx, batch(4))
	if err != nil || res.Accepted != 50 || res.AckedSeq != 250 {
		t.Fatalf("resending the torn batch: %+v, %v", res, err)
	}
	if got := lineIDs(t, s); len(got) != 250 || !equalCounts(got, before[4]) {
		t.Fatalf("after resending: %d lines, not the ids they had before the crash", len(got))
	}

	// A second crash replays the torn segment (skipping the torn frame again)
	// and the new one.
	crash(s)
	s = testOpen(t, dir, o)
	defer s.Close()
	if got := lineIDs(t, s); !equalCounts(got, before[4]) {
		t.Fatalf("after a second crash: %d lines, want the 250 ids once each", len(got))
	}
}

func equalCounts(a, b map[model.ID]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestReopenSeveralDays searches, after a restart, the Bleve indexes of two
// days created before it.
func TestReopenSeveralDays(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 10
	s := testOpen(t, dir, o)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for d := 0; d < 2; d++ {
		if _, err := s.Append(context.Background(), testBatch("", 30, 0, t0.Add(time.Duration(d)*24*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	for d := 0; d < 2; d++ {
		day := model.Day(t0.Add(time.Duration(d) * 24 * time.Hour).UnixNano())
		tr := model.TimeRange{Start: model.DayStart(day), End: model.DayStart(day + 1)}
		done := make(chan int, 1)
		go func() {
			refs, err := CollectCandidates(s.Candidates(context.Background(), tr, Term(FieldWord, "request"), false))
			if err != nil {
				t.Error(err)
			}
			done <- len(refs)
		}()
		select {
		case n := <-done:
			if n != 3 {
				t.Errorf("day %d: %d candidate chunks, want 3", d, n)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("day %d: Candidates hangs", d) // the store cannot be closed now
		}
	}
	s.Close()
}

// TestAppendLevelOutOfRange appends a record whose level is beyond fatal.
func TestAppendLevelOutOfRange(t *testing.T) {
	s := testOpen(t, t.TempDir(), noSealOptions())
	b := testBatch("", 2, 0, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	b.Records[1].Level = model.NumLevels
	var res model.AppendResult
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Append panicked: %v", r) // s.mu stays locked: no Close
			}
		}()
		res, err = s.Append(context.Background(), b)
	}()
	if err == nil && res.Accepted != 2 {
		t.Errorf("Append = %+v", res)
	}
	s.Close()
}
