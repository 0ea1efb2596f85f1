package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// TestSparseHeadColumns appends lines without trace, span or attributes,
// then some with, to one head: a head's snapshot taken before the columns
// were made still reads empty values, one taken after reads every line's
// own, and so do the sealed chunk and its reload after a restart.
func TestSparseHeadColumns(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 100
	s := testOpen(t, dir, o)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := func(i int) model.Record {
		r := model.Record{
			Time:    t0.Add(time.Duration(i) * time.Millisecond).UnixNano(),
			Labels:  model.Labels{Service: "api", Host: "h", BuildID: "b1"},
			Message: fmt.Sprintf("line %d", i),
		}
		if i >= 30 && i%2 == 0 {
			r.TraceID = fmt.Sprintf("trace-%d", i)
		}
		if i >= 40 && i%3 == 0 {
			r.SpanID = fmt.Sprintf("span-%d", i)
		}
		if i >= 50 && i%5 == 0 {
			r.Attrs = []model.Attr{{Key: "k", Value: fmt.Sprint(i)}}
		}
		return r
	}
	check := func(what string, l *Lines) {
		t.Helper()
		for i := 0; i < l.Len(); i++ {
			want := rec(i)
			if l.Traces[i] != want.TraceID || l.Spans[i] != want.SpanID || fmt.Sprint(l.Attrs[i]) != fmt.Sprint(want.Attrs) {
				t.Fatalf("%s: line %d: %q %q %v, want %q %q %v", what, i, l.Traces[i], l.Spans[i], l.Attrs[i], want.TraceID, want.SpanID, want.Attrs)
			}
		}
	}
	ctx := context.Background()
	snap := func() *Lines {
		s.mu.RLock()
		defer s.mu.RUnlock()
		for _, h := range s.heads {
			return h.snapshot()
		}
		t.Fatal("no open head")
		return nil
	}
	for i := range 99 {
		if _, err := s.Append(ctx, model.Batch{Records: []model.Record{rec(i)}}); err != nil {
			t.Fatal(err)
		}
		if i == 20 {
			early := snap()
			defer check("snapshot before any trace", early)
		}
	}
	late := snap()
	if late.Len() != 99 {
		t.Fatalf("head has %d lines", late.Len())
	}
	check("open head", late)
	if _, err := s.Append(ctx, model.Batch{Records: []model.Record{rec(99)}}); err != nil { // full: sealed
		t.Fatal(err)
	}
	waitSealed(t, s)
	lines := 0
	if count(t, s, nil, func(l *Lines, i int) bool { check("sealed", l); lines++; return true }) != 100 {
		t.Fatalf("%d lines stored", lines)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	defer s.Close()
	if count(t, s, nil, func(l *Lines, i int) bool { check("reopened", l); return true }) != 100 {
		t.Fatal("lines lost")
	}
}

// TestSparseHeadAccounting checks what a head's lines count against
// HeadsMaxBytes: a line without trace, span or attributes costs its text and
// lineOverhead; the first line with a trace id makes the trace column, whose
// empty entries for the lines before it count too.
func TestSparseHeadAccounting(t *testing.T) {
	s := testOpen(t, t.TempDir(), DefaultOptions())
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := func(i int, trace string) model.Record {
		return model.Record{Time: t0.Add(time.Duration(i)).UnixNano(), Labels: model.Labels{Service: "api"}, Message: "0123456789", TraceID: trace}
	}
	var b model.Batch
	for i := range 10 {
		b.Records = append(b.Records, rec(i, ""))
	}
	if _, err := s.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if _, bytes := s.openHeads(); bytes != 10*(10+lineOverhead) {
		t.Fatalf("10 plain lines count %d bytes, want %d", bytes, 10*(10+lineOverhead))
	}
	if _, err := s.Append(context.Background(), model.Batch{Records: []model.Record{rec(10, "t")}}); err != nil {
		t.Fatal(err)
	}
	want := 10*(10+lineOverhead) + 11 + lineOverhead + traceOverhead + 10*traceOverhead
	if _, bytes := s.openHeads(); bytes != int64(want) {
		t.Fatalf("with a trace id: %d bytes, want %d", bytes, want)
	}
}
