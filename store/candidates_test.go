package store

import (
	"context"
	"iter"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// Candidates works a day at a time in the query's order: a caller that stops
// after the newest day's first chunk has looked up that day only; a whole
// iteration yields every chunk once, sorted by MaxT descending (newest
// first) or MinT ascending, open chunks in their day's place.
func TestCandidatesDayByDay(t *testing.T) {
	o := DefaultOptions()
	o.ChunkMaxLines = 10
	o.ChunkMaxAge, o.Maintenance = time.Hour, time.Hour
	s := testOpen(t, t.TempDir(), o)
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const days = 5
	for d := 0; d < days; d++ {
		// 40 lines over 3 hosts (streams): each seals a chunk of 10
		// lines and leaves 3 or 4 open.
		if _, err := s.Append(context.Background(), testBatch("", 40, 0, t0.Add(time.Duration(d)*24*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	waitSealed(t, s)
	all := model.TimeRange{Start: 0, End: 1 << 62}
	ctx := context.Background()
	s.daysRead.Store(0)
	for refs, err := range s.Candidates(ctx, all, Term(FieldService, "api"), false) {
		if err != nil {
			t.Fatal(err)
		}
		want := model.Day(t0.Add((days - 1) * 24 * time.Hour).UnixNano())
		for _, r := range refs {
			if r.Meta.Day != want {
				t.Fatalf("a chunk of day %d among the first day's, want %d", r.Meta.Day, want)
			}
		}
		break
	}
	if n := s.daysRead.Load(); n != 1 {
		t.Fatalf("%d days looked up for the newest chunk", n)
	}
	for _, asc := range []bool{false, true} {
		refs, err := CollectCandidates(s.Candidates(ctx, all, nil, asc))
		if err != nil {
			t.Fatal(err)
		}
		checkOrder(t, refs, asc, days*40)
		// Two stores' sequences merged keep the order and every chunk.
		merged, err := CollectCandidates(MergeCandidates(asc, s.Candidates(ctx, all, nil, asc), tagged(s.Candidates(ctx, all, nil, asc), 1)))
		if err != nil {
			t.Fatal(err)
		}
		checkOrder(t, merged, asc, 2*days*40)
	}
	// A cancelled context ends the sequence with its error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := CollectCandidates(s.Candidates(cctx, all, nil, true)); err == nil {
		t.Fatal("no error from a cancelled context")
	}
}

func tagged(seq iter.Seq2[[]ChunkRef, error], src int) iter.Seq2[[]ChunkRef, error] {
	return func(yield func([]ChunkRef, error) bool) {
		for refs, err := range seq {
			for i := range refs {
				refs[i].Src = src
			}
			if !yield(refs, err) {
				return
			}
		}
	}
}

func checkOrder(t *testing.T, refs []ChunkRef, asc bool, lines int) {
	t.Helper()
	n, open := 0, 0
	for i, r := range refs {
		n += int(r.Meta.Count)
		if r.InMemory() {
			open++
		}
		if i > 0 && CompareRefs(refs[i-1], r, asc) > 0 {
			t.Fatalf("asc=%v: chunk %d (%d..%d) after (%d..%d)", asc, i, r.Meta.MinT, r.Meta.MaxT, refs[i-1].Meta.MinT, refs[i-1].Meta.MaxT)
		}
	}
	if n != lines || open == 0 || open == len(refs) {
		t.Fatalf("asc=%v: %d lines in %d chunks (%d open), want %d lines in sealed and open chunks", asc, n, len(refs), open, lines)
	}
}
