package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

func testOpen(t testing.TB, dir string, o Options) *Store {
	t.Helper()
	s, err := Open(dir, o, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testBatch(agent string, n, seq0 int, t0 time.Time) model.Batch {
	b := model.Batch{AgentID: agent}
	for i := 0; i < n; i++ {
		lv := model.LevelInfo
		if i%10 == 0 {
			lv = model.LevelError
		}
		b.Records = append(b.Records, model.Record{
			Time:    t0.Add(time.Duration(i) * time.Millisecond).UnixNano(),
			Labels:  model.Labels{Service: "api", Host: fmt.Sprintf("web-%d", i%3), BuildID: "b1"},
			Level:   lv,
			Message: fmt.Sprintf("request %d done in 5ms id=%08x", i, i*7919),
			Attrs:   []model.Attr{{Key: "status", Value: "200"}},
			Seq:     uint64(seq0 + i),
		})
	}
	return b
}

// count returns the number of lines in all candidates that pass fn.
func count(t testing.TB, s *Store, c *Cond, fn func(l *Lines, i int) bool) int {
	t.Helper()
	ctx := context.Background()
	refs, err := CollectCandidates(s.Candidates(ctx, model.TimeRange{Start: 0, End: 1 << 62}, c, false))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range refs {
		l, err := s.Load(ctx, r, true)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < l.Len(); i++ {
			if fn == nil || fn(l, i) {
				n++
			}
		}
	}
	return n
}

func TestAppendSealReopen(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 100
	o.Maintenance = 20 * time.Millisecond
	s := testOpen(t, dir, o)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	res, err := s.Append(context.Background(), testBatch("ag", 1000, 1, t0))
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 1000 || res.Duplicates != 0 || res.AckedSeq != 1000 {
		t.Fatalf("result %+v", res)
	}
	res, err = s.Append(context.Background(), testBatch("ag", 10, 995, t0))
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 4 || res.Duplicates != 6 || res.AckedSeq != 1004 {
		t.Fatalf("resend result %+v", res)
	}
	if n := count(t, s, nil, nil); n != 1004 {
		t.Fatalf("all lines: %d", n)
	}
	if n := count(t, s, Term(FieldHost, "web-1"), func(l *Lines, i int) bool { return l.Meta.Labels.Host == "web-1" }); n != 334 {
		t.Fatalf("host web-1: %d", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	defer s.Close()
	if n := count(t, s, nil, nil); n != 1004 {
		t.Fatalf("after reopen: %d", n)
	}
	// Word queries narrow through Bleve, id-like ones through the bloom filter.
	isErr := func(l *Lines, i int) bool { return l.Levels[i] == model.LevelError }
	if n := count(t, s, And(Term(FieldLevel, "error"), Term(FieldWord, "request")), isErr); n != 100 {
		t.Fatalf("errors: %d", n)
	}
	refs, err := CollectCandidates(s.Candidates(context.Background(), model.TimeRange{Start: 0, End: 1 << 62}, Term(FieldWord, fmt.Sprintf("%08x", 500*7919)), false))
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) == 0 || len(refs) > 3 {
		t.Fatalf("bloom candidates: %d", len(refs))
	}
	res, err = s.Append(context.Background(), testBatch("ag", 3, 1003, t0))
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 1 || res.Duplicates != 2 || res.AckedSeq != 1005 {
		t.Fatalf("after reopen, agent state lost: %+v", res)
	}
}

// TestReplayAfterCrash abandons a store without Close (as kill -9 would) and
// checks that a reopened store has every acked line exactly once, with its id.
func TestReplayAfterCrash(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 64
	s := testOpen(t, dir, o)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 10; i++ {
		if _, err := s.Append(context.Background(), testBatch("ag", 100, 1+i*100, t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	ids := map[model.ID]bool{}
	count(t, s, nil, func(l *Lines, i int) bool { ids[l.ID(i)] = true; return true })
	if len(ids) != 1000 {
		t.Fatalf("ids before crash: %d", len(ids))
	}
	crash(s)

	s2 := testOpen(t, dir, o)
	defer s2.Close()
	got := map[model.ID]int{}
	count(t, s2, nil, func(l *Lines, i int) bool { got[l.ID(i)]++; return true })
	if len(got) != 1000 {
		t.Fatalf("ids after crash: %d", len(got))
	}
	for id, n := range got {
		if n != 1 || !ids[id] {
			t.Fatalf("id %v seen %d times (known before: %v)", id, n, ids[id])
		}
	}
}
