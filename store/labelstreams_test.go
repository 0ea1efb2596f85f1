package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// A build's (host's) chunks come from its streams, not from the day's index:
// the same chunks as a scan of every chunk's labels finds, after a restart
// too (nothing of it is on disk), and none of a build retention dropped.
func TestLabelCandidates(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 2 // 100 chunks a day: more of service api than maxLabelChunks
	o.ChunkMaxAge, o.Maintenance = time.Hour, time.Hour
	s := testOpen(t, dir, o)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for d := 0; d < 3; d++ {
		b := model.Batch{}
		for i := 0; i < 200; i++ {
			b.Records = append(b.Records, model.Record{
				Time:    t0.Add(time.Duration(d)*24*time.Hour + time.Duration(i)*time.Second).UnixNano(),
				Labels:  model.Labels{Service: "api", Host: fmt.Sprintf("h%d", i%4), BuildID: fmt.Sprintf("b%d", (i+d)%5), DeployID: "d1"},
				Message: fmt.Sprintf("request %d done", i),
			})
		}
		if _, err := s.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	defer s.Close()
	all := model.TimeRange{Start: 0, End: 1 << 62}
	conds := []*Cond{
		Term(FieldBuild, "b2"),
		And(Term(FieldService, "api"), Term(FieldHost, "h1"), Term(FieldLevel, "info")),
		And(Term(FieldBuild, "b3"), WordTerm("request", false)),
		Term(FieldBuild, "nosuchbuild"),
	}
	check := func(c *Cond) {
		t.Helper()
		refs, err := CollectCandidates(s.Candidates(context.Background(), all, c, true))
		if err != nil {
			t.Fatal(err)
		}
		var got, want []uint64
		for _, r := range refs {
			got = append(got, r.Meta.ID)
		}
		s.mu.RLock()
		for _, m := range s.chunks {
			if c.eval(m, nil) != triNo {
				want = append(want, m.ID)
			}
		}
		s.mu.RUnlock()
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%+v: chunks %v, want %v", c, got, want)
		}
	}
	for _, c := range conds {
		check(c)
	}
	if n := s.idx.searches.Load(); n != 0 {
		t.Fatalf("%d index searches for label queries", n)
	}
	// A word the label's chunks are too many to scan for: the index narrows.
	check(And(Term(FieldService, "api"), WordTerm("request", false)))
	if s.idx.searches.Load() == 0 {
		t.Fatal("no index search for a service's word")
	}
	day := model.Day(t0.UnixNano())
	if err := s.DropDaysBefore(day + 1); err != nil {
		t.Fatal(err)
	}
	// The dropped day's chunks are gone from every label.
	for _, c := range conds {
		check(c)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k, ids := range s.labelStreams {
		for _, id := range ids {
			if len(s.streams[id]) == 0 {
				t.Fatalf("label %v lists stream %x, which has no chunk", k, id)
			}
		}
	}
}
